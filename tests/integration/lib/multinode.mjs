// Helpers of the PostgreSQL / multi-node tests (pg_*.test.mjs): the cursor
// sync (POST /chat/sync with per-conversation cursors) followed to the end,
// and send channels (a bound socket or plain HTTP, on any node) that record
// when each send left and when its answer came, so a test can check commit
// order and exactly-once storage of what was acknowledged.
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { ChatSocket, req } from './chat.mjs';

/** One POST /chat/sync with cursors ({peer id: seq}); returns its data. */
export async function syncCursors(srv, user, cursors = {}, limit) {
  const body = { cursors };
  if (limit !== undefined) body.limit = limit;
  const r = await req(srv, 'POST', '/chat/sync', { token: user.token, body });
  if (r.status !== 200 || !r.body || r.body.status !== true) {
    throw new Error(`POST /chat/sync on ${srv.url} -> HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.body.data;
}

/**
 * Follows the cursor sync until an answer holds no conversation, advancing
 * `state.cursors` (peer id string -> last seq held) and appending to
 * `state.got` (peer id string -> messages in the order received). Checks each
 * answer: every message above its cursor, seq consecutive from the cursor
 * (no hole, no repeat), oldest first. Returns the number of messages received.
 * `nodes` is one server or a list to alternate between (any node serves any user).
 */
export async function syncToEnd(nodes, user, state, { limit } = {}) {
  const list = Array.isArray(nodes) ? nodes : [nodes];
  state.cursors ??= {};
  state.got ??= new Map();
  state.rounds ??= 0;
  let n = 0;
  for (let guard = 0; guard < 10000; guard++) {
    const srv = list[state.rounds++ % list.length];
    const data = await syncCursors(srv, user, state.cursors, limit);
    assert.ok(Array.isArray(data.conversations), `sync answer has conversations: ${JSON.stringify(data).slice(0, 300)}`);
    if (data.conversations.length === 0) return n;
    for (const c of data.conversations) {
      const peer = String(c.userid);
      const have = state.cursors[peer] ?? 0;
      assert.ok(c.messages.length > 0 || c.more, `conversation ${peer} listed with nothing new: ${JSON.stringify(c).slice(0, 300)}`);
      let expect = have + 1;
      for (const m of c.messages) {
        assert.ok(m.from_id === user.id || m.to_id === user.id, `sync of ${user.id} holds only their messages: ${JSON.stringify(m)}`);
        assert.equal(m.seq, expect, `conversation with ${peer}: seq after ${expect - 1} is ${m.seq} (cursor was ${have}): a hole or a repeat`);
        expect++;
      }
      if (c.messages.length) state.cursors[peer] = c.messages[c.messages.length - 1].seq;
      if (!state.got.has(peer)) state.got.set(peer, []);
      state.got.get(peer).push(...c.messages);
      n += c.messages.length;
    }
  }
  throw new Error('cursor sync did not end');
}

/**
 * A send channel: kind 'ws' (a socket bound on srv) or 'http' (POST
 * /chat/send to srv). send(message) resolves with {ok: true, message, sentAt,
 * answeredAt} or {ok: false, status, code, sentAt, answeredAt} (a refused or
 * failed send), or {ok: false, code: 'lost'} when the socket closed first.
 * Several sends may be in flight on a socket: answers are matched by client_msg_id.
 */
export class Channel {
  static async open(kind, srv, user, t) {
    const ch = new Channel(kind, srv, user);
    if (kind === 'ws') {
      ch.sock = await ChatSocket.bound(srv, user, t);
      ch.sock.ws.ws.on('message', (raw) => ch.onFrame(JSON.parse(raw.toString())));
      ch.sock.ws.ws.on('close', () => {
        for (const [, w] of ch.waiting) w({ ok: false, code: 'lost', answeredAt: performance.now() });
        ch.waiting.clear();
      });
    }
    return ch;
  }

  constructor(kind, srv, user) {
    this.kind = kind;
    this.srv = srv;
    this.user = user;
    this.waiting = new Map();
    this.name = `${kind}@${srv.port}`;
  }

  onFrame(m) {
    if ((m.type === 'ack' || m.type === 'error') && m.client_msg_id != null) {
      const w = this.waiting.get(m.client_msg_id);
      if (!w) return;
      this.waiting.delete(m.client_msg_id);
      const answeredAt = performance.now();
      w(m.type === 'ack' ? { ok: true, message: m.message, answeredAt } : { ok: false, code: m.code, frame: m, answeredAt });
    }
  }

  async send(message, { timeoutMs = 15000 } = {}) {
    const sentAt = performance.now();
    if (this.kind === 'http') {
      let r;
      try {
        r = await req(this.srv, 'POST', '/chat/send', { token: this.user.token, body: message, timeoutMs });
      } catch (e) {
        return { ok: false, code: 'lost', error: String(e), sentAt, answeredAt: performance.now() };
      }
      const answeredAt = performance.now();
      if (r.status === 200 && r.body?.status === true) return { ok: true, message: r.body.data, sentAt, answeredAt };
      return { ok: false, status: r.status, code: r.body?.code, text: r.text.slice(0, 300), sentAt, answeredAt };
    }
    assert.ok(message.client_msg_id, 'socket sends carry a client_msg_id to match answers');
    const p = new Promise((resolve) => {
      this.waiting.set(message.client_msg_id, resolve);
    });
    const t = setTimeout(() => {
      const w = this.waiting.get(message.client_msg_id);
      if (w) {
        this.waiting.delete(message.client_msg_id);
        w({ ok: false, code: 'timeout', answeredAt: performance.now() });
      }
    }, timeoutMs);
    this.sock.sendJson({ type: 'send', message });
    const got = await p;
    clearTimeout(t);
    return { ...got, sentAt };
  }
}

/** Messages of one conversation: asserts seq 1..n with no hole and seq order = id order. */
export function assertGapless(msgs, what) {
  msgs.forEach((m, i) => assert.equal(m.seq, i + 1, `${what}: message ${i} has seq ${m.seq}`));
  for (let i = 1; i < msgs.length; i++) assert.ok(msgs[i].id > msgs[i - 1].id, `${what}: seq ${msgs[i].seq} has id ${msgs[i].id} <= ${msgs[i - 1].id} of seq ${msgs[i - 1].seq}`);
}
