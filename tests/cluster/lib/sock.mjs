// A WebSocket device for the cluster tests, on the npm `ws` client (an
// independent RFC 6455 implementation): it keeps every JSON frame it received
// (so a test can count how often something arrived: exactly-once checks), and
// waits for frames matching a predicate.
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { gw, sleep, waitUntil } from './cluster.mjs';

export class Sock {
  constructor(ws, srv, name) {
    this.ws = ws;
    this.srv = srv;
    this.name = name;
    this.frames = []; // every JSON frame, in order
    this.texts = []; // every text frame as received
    this.closeInfo = null;
    this.waiters = new Set();
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString('utf8');
      this.texts.push(text);
      let m;
      try {
        m = JSON.parse(text);
      } catch {
        m = { type: '(not json)', text };
      }
      this.frames.push(m);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        this.wake();
        resolve(this.closeInfo);
      }),
    );
    ws.on('error', (e) => {
      this.error = e;
    });
  }

  wake() {
    for (const w of [...this.waiters]) w();
  }

  /** Opens srv's /ws and reads init (client_id, bind_nonce). */
  static open(srv, name = '', { timeoutMs = 5000 } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(srv.wsUrl('/ws'), { handshakeTimeout: timeoutMs });
      const s = new Sock(ws, srv, name);
      const t = setTimeout(() => {
        ws.terminate();
        reject(new Error(`ws open ${srv.url} (${name}): timeout`));
      }, timeoutMs);
      ws.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
      ws.once('unexpected-response', (req, res) => {
        clearTimeout(t);
        req.destroy();
        reject(new Error(`ws open ${srv.url} (${name}): HTTP ${res.statusCode}`));
      });
      s.waitFrame((m) => m.type === 'init', timeoutMs)
        .then((m) => {
          clearTimeout(t);
          s.clientId = m.client_id;
          s.bindNonce = m.bind_nonce;
          resolve(s);
        })
        .catch((e) => {
          clearTimeout(t);
          ws.terminate();
          reject(e);
        });
    });
  }

  /** Opens and binds with the user's token over the socket. */
  static async bound(srv, user, name = '') {
    const s = await Sock.open(srv, name);
    await s.bind(user);
    return s;
  }

  /**
   * A device bound on node that node `other` can reach: a push published before
   * node's subscription is active misses it (docs/CLUSTER.md, by design), so this
   * waits until a server-API push from `other` arrives. Adds the socket to socks.
   */
  static async reachable(node, other, user, name, socks) {
    const s = await Sock.bound(node, user, name);
    socks.push(s);
    const tag = `ready-${name}-${Date.now()}`;
    await waitUntil(
      async () => {
        if (s.countText(tag) === 0) await gw(other, 'send_to_uid', { uid: user.id, data: tag });
        await sleep(50);
        return s.countText(tag) > 0;
      },
      { timeoutMs: 5000, what: `${name} reachable from ${other.nodeId}` },
    );
    return s;
  }

  async bind(user) {
    const from = this.frames.length;
    this.send({ type: 'bind', token: user.token });
    const m = await this.waitFrame((f, i) => i >= from && (f.type === 'bind' || (f.type === 'error' && f.op === 'bind')), 5000);
    assert.deepEqual(m, { type: 'bind', status: true, uid: user.id }, `socket bind answer on ${this.name}`);
    this.user = user;
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /** Resolves with the first frame (index >= from) matching pred; rejects after timeoutMs or on close. */
  waitFrame(pred, timeoutMs = 5000, from = 0) {
    return new Promise((resolve, reject) => {
      let i = from;
      const check = () => {
        for (; i < this.frames.length; i++) {
          if (pred(this.frames[i], i)) {
            done();
            resolve(this.frames[i]);
            return true;
          }
        }
        if (this.closeInfo) {
          done();
          reject(new Error(`${this.name}: socket closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting; frames: ${JSON.stringify(this.frames.slice(-5)).slice(0, 600)}`));
          return true;
        }
        return false;
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no matching frame within ${timeoutMs} ms; last frames: ${JSON.stringify(this.frames.slice(-5)).slice(0, 600)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(check);
      };
      if (!check()) this.waiters.add(check);
    });
  }

  /** Number of frames matching pred. */
  count(pred) {
    return this.frames.filter(pred).length;
  }

  /** Text frames equal to s. */
  countText(s) {
    return this.texts.filter((t) => t === s).length;
  }

  /** Waits until `n` text frames equal s (within timeoutMs). */
  async waitText(s, n = 1, timeoutMs = 5000) {
    const deadline = Date.now() + timeoutMs;
    while (this.countText(s) < n) {
      if (Date.now() > deadline) throw new Error(`${this.name}: got ${this.countText(s)} of ${n} frames ${JSON.stringify(s)} within ${timeoutMs} ms`);
      if (this.closeInfo) throw new Error(`${this.name}: closed (${this.closeInfo.code}) waiting for ${JSON.stringify(s)}`);
      await sleep(10);
    }
  }

  /** Chat messages pushed to this socket ({type: 'message'}), the message objects. */
  pushed() {
    return this.frames.filter((f) => f.type === 'message').map((f) => f.message);
  }

  terminate() {
    this.ws.terminate();
  }

  async close() {
    if (!this.closeInfo) {
      try {
        this.ws.close(1000);
      } catch {
        /* closing */
      }
      const t = setTimeout(() => this.ws.terminate(), 2000);
      await this.closed;
      clearTimeout(t);
    }
  }
}

/** Waits `ms` for stragglers (cross-node pushes in flight), then returns. */
export const settle = (ms = 400) => sleep(ms);
