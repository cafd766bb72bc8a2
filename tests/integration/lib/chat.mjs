// Helpers for the chat-service tests (/user/*, /chat/* and the chat messages on
// /ws): a JSON HTTP client with the token in either header, account set-up,
// a socket client that binds with a token and waits for typed messages, HS256
// JWT minting, and a restart of a killed chatd on the same port and data dir.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { CHATD_BIN, sleep } from './server.mjs';
import { WsClient } from './ws.mjs';

/** A token of the chat service: 256 bits, URL-safe base64 without padding. */
export const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

/**
 * One HTTP request to the chat service.
 * token: sent as `Authorization: Bearer` (via 'bearer', the default) or as a `token:` header (via 'header').
 * body: object (JSON-encoded), string (sent as is) or undefined (no body).
 * Returns {status, headers, text, body (parsed JSON or undefined)}.
 */
export async function req(srv, method, path, { token, via = 'bearer', body, headers = {}, timeoutMs = 5000, localAddress } = {}) {
  const h = { ...headers };
  if (token !== undefined && token !== null) {
    if (via === 'header') h.token = token;
    else h.Authorization = `Bearer ${token}`;
  }
  let payload;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    if (!('Content-Type' in h)) h['Content-Type'] = 'application/json';
  }
  if (localAddress) return reqFrom(srv, method, path, h, payload, timeoutMs, localAddress);
  const r = await fetch(`${srv.url}${path}`, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeoutMs) });
  const text = await r.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: r.status, headers: r.headers, text, body: parsed };
}

/** The same over node:http (node:https when srv speaks TLS) from a chosen local (source) address, still to 127.0.0.1. */
async function reqFrom(srv, method, path, headers, payload, timeoutMs, localAddress) {
  const http = await import(srv.tls ? 'node:https' : 'node:http');
  const tlsOpts = srv.ca ? { ca: srv.ca } : {};
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: srv.host, port: srv.port, method, path, headers, localAddress, agent: false, timeout: timeoutMs, ...tlsOpts },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, body: parsed });
        });
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${method} ${path}: timeout`)));
    r.on('error', reject);
    if (payload !== undefined) r.end(payload);
    else r.end();
  });
}

export const get = (srv, path, opts = {}) => req(srv, 'GET', path, opts);
export const post = (srv, path, body, opts = {}) => req(srv, 'POST', path, { ...opts, body });

/** Asserts a success envelope with HTTP 200 and returns its data. */
export function ok(r, what = '') {
  assert.equal(r.status, 200, `${what} HTTP status; body ${r.text.slice(0, 400)}`);
  assert.ok(r.body, `${what} JSON body`);
  assert.equal(r.body.status, true, `${what} envelope status`);
  assert.equal(r.body.msg, 'ok', `${what} envelope msg`);
  return r.body.data;
}

/** Asserts an error envelope: HTTP status, code, and (when given) a msg naming field. */
export function fails(r, status, code, field, what = '') {
  assert.equal(r.status, status, `${what} HTTP status; body ${r.text.slice(0, 400)}`);
  assert.ok(r.body, `${what} JSON body: ${r.text.slice(0, 200)}`);
  assert.equal(r.body.status, false, `${what} envelope status`);
  if (Array.isArray(code)) assert.ok(code.includes(r.body.code), `${what} code ${r.body.code} in ${code}`);
  else assert.equal(r.body.code, code, `${what} code; msg ${JSON.stringify(r.body.msg)}`);
  assert.equal(typeof r.body.msg, 'string', `${what} msg is a string`);
  if (field) assert.ok(r.body.msg.includes(field), `${what} msg ${JSON.stringify(r.body.msg)} names the field ${field}`);
  return r.body;
}

/** Calls an endpoint that must succeed; returns data. */
export async function must(srv, method, path, opts = {}) {
  const r = await req(srv, method, path, opts);
  if (r.status !== 200 || !r.body || r.body.status !== true) {
    throw new Error(`${method} ${path} ${JSON.stringify(opts.body ?? '').slice(0, 200)} -> HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.body.data;
}

let seq = 0;
/** A username unique within this process: prefix + counter + random tail, at most 32 bytes. */
export function uname(prefix) {
  return `${prefix}${++seq}${crypto.randomBytes(3).toString('hex')}`.slice(0, 32);
}

/** Registers a user; returns {id, username, userpic, token, user, password}. */
export async function register(srv, username, { password = 'pw-' + username, userpic } = {}) {
  const body = { username, password };
  if (userpic !== undefined) body.userpic = userpic;
  const data = await must(srv, 'POST', '/user/register', { body });
  return { ...data.user, user: data.user, token: data.token, password };
}

/** Registers several users in parallel (argon2id runs on the thread pool). */
export function registerAll(srv, names) {
  return Promise.all(names.map((n) => register(srv, n)));
}

export async function login(srv, username, password) {
  return must(srv, 'POST', '/user/login', { body: { username, password } });
}

/** POST /chat/send that must succeed; returns the message. */
export function send(srv, from, to, data, { type = 'text', client_msg_id, client_id } = {}) {
  const body = { to_id: typeof to === 'object' ? to.id : to, type, data };
  if (client_msg_id !== undefined) body.client_msg_id = client_msg_id;
  if (client_id !== undefined) body.client_id = client_id;
  return must(srv, 'POST', '/chat/send', { token: from.token, body });
}

/** Every message of /chat/sync after `after`, following pages of `limit`. */
export async function syncAll(srv, user, { after = 0, limit } = {}) {
  const out = [];
  for (let guard = 0; guard < 10000; guard++) {
    const q = limit ? `&limit=${limit}` : '';
    const page = await must(srv, 'GET', `/chat/sync?after=${after}${q}`, { token: user.token });
    if (!page.length) return out;
    out.push(...page);
    after = page[page.length - 1].id;
  }
  throw new Error('sync did not end');
}

/**
 * POST /chat/sync by seq cursors until no conversation says `more`.
 * cursors: {peerId: seq}, updated in place. Returns every message received,
 * in answer order, and the pages (the raw answers).
 */
export async function syncCursorsAll(srv, user, cursors = {}, { limit } = {}) {
  const messages = [];
  const pages = [];
  for (let guard = 0; guard < 10000; guard++) {
    const body = { cursors };
    if (limit !== undefined) body.limit = limit;
    const page = await must(srv, 'POST', '/chat/sync', { token: user.token, body });
    pages.push(page);
    let more = false;
    for (const c of page.conversations) {
      for (const m of c.messages) {
        messages.push(m);
        cursors[c.userid] = m.seq;
      }
      more ||= c.more;
    }
    if (!more) return { messages, pages };
  }
  throw new Error('cursor sync did not end');
}

/** Every message of a conversation, newest first, following /chat/history pages. */
export async function historyAll(srv, user, peerId, limit = 50) {
  const out = [];
  let before = 0;
  for (let guard = 0; guard < 10000; guard++) {
    const page = await must(srv, 'GET', `/chat/history?userid=${peerId}&before=${before}&limit=${limit}`, { token: user.token });
    if (!page.length) return out;
    out.push(...page);
    before = page[page.length - 1].id;
  }
  throw new Error('history did not end');
}

/** The message shape of the API: exact key set and types. */
export function assertMessageShape(m, what = 'message') {
  assert.deepEqual(
    Object.keys(m).sort(),
    ['client_msg_id', 'data', 'from_id', 'from_userpic', 'from_username', 'id', 'seq', 'time', 'to_id', 'type'].sort(),
    `${what} keys: ${JSON.stringify(m)}`,
  );
  assert.ok(Number.isSafeInteger(m.id) && m.id > 0, `${what} id is a positive integer`);
  assert.ok(Number.isSafeInteger(m.seq) && m.seq > 0, `${what} seq is a positive integer`);
  assert.ok(Number.isSafeInteger(m.to_id) && Number.isSafeInteger(m.from_id), `${what} to_id/from_id are integers`);
  assert.ok(Number.isSafeInteger(m.time), `${what} time is an integer`);
  assert.ok(m.client_msg_id === null || typeof m.client_msg_id === 'string', `${what} client_msg_id is a string or null`);
}

/**
 * A /ws client for the chat service: a WsClient with helpers to bind with a
 * token, send chat messages and wait for messages of a type.
 */
export class ChatSocket {
  constructor(ws) {
    this.ws = ws;
    this.clientId = ws.clientId;
    this.bindNonce = ws.bindNonce;
  }

  static async open(srv, t) {
    const ws = await WsClient.open(srv);
    const s = new ChatSocket(ws);
    if (t) t.after(() => ws.terminate());
    return s;
  }

  /** Opens a socket and binds it with {"type":"bind","token"}; asserts the answer. */
  static async bound(srv, user, t) {
    const s = await ChatSocket.open(srv, t);
    await s.bind(user);
    return s;
  }

  async bind(user) {
    this.ws.sendJson({ type: 'bind', token: user.token });
    const m = await this.next();
    assert.deepEqual(m, { type: 'bind', status: true, uid: user.id }, 'socket bind answer');
    this.user = user;
  }

  sendJson(obj) {
    this.ws.sendJson(obj);
  }

  /** Sends {"type":"send","message":{...}}. */
  sendMsg(to, data, { type = 'text', client_msg_id } = {}) {
    const message = { to_id: typeof to === 'object' ? to.id : to, type, data };
    if (client_msg_id !== undefined) message.client_msg_id = client_msg_id;
    this.ws.sendJson({ type: 'send', message });
  }

  /**
   * The next JSON message, whatever its type; presence pushes (a peer came
   * or went) are skipped unless the socket watches them (watchPresence).
   */
  async next(timeoutMs = 3000) {
    for (;;) {
      const m = await this.ws.nextJson(timeoutMs);
      if (m && m.type === 'presence' && !this.presence) continue;
      return m;
    }
  }

  /** From now on next() returns presence pushes too. */
  watchPresence() {
    this.presence = true;
    return this;
  }

  /** The next message, asserting its type. */
  async expect(type, timeoutMs = 3000) {
    const m = await this.next(timeoutMs);
    assert.equal(m.type, type, `expected a ${type} message, got ${JSON.stringify(m).slice(0, 400)}`);
    return m;
  }

  /**
   * Asserts that nothing else was queued for this socket: a {"type":"ping"}
   * is answered by the very next message. Call it after the HTTP answer or ack
   * of whatever could have pushed something (pushes are queued before those).
   */
  async quiet(what = '') {
    this.ws.sendJson({ type: 'ping' });
    const m = await this.next();
    assert.deepEqual(m, { type: 'pong' }, `nothing else arrived before the pong ${what}: got ${JSON.stringify(m).slice(0, 400)}`);
  }

  /** Everything queued for this socket so far: sends a ping and collects until the pong. */
  async collect() {
    this.ws.sendJson({ type: 'ping' });
    const got = [];
    for (;;) {
      const m = await this.next();
      if (m.type === 'pong') return got;
      got.push(m);
    }
  }

  terminate() {
    this.ws.terminate();
  }

  get closed() {
    return this.ws.closeInfo !== null;
  }
}

const b64url = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

/**
 * Mints a JWT. alg 'HS256' signs with secret; any other alg still signs with
 * HMAC-SHA256 unless signature is given ('' for none).
 */
export function mintJwt(claims, secret, { header = { alg: 'HS256', typ: 'JWT' }, signature } = {}) {
  const head = `${b64url(header)}.${b64url(claims)}`;
  const sig = signature !== undefined ? signature : crypto.createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

/**
 * Starts chatd again with the argv of srv (same --listen port, same
 * --data-dir), e.g. after srv was killed. The returned handle has url, port,
 * pid, signal(sig) and stop(); stop sends SIGTERM (SIGKILL after 5 s) by PID.
 * The data dir belongs to srv: stop srv last, its stop() removes it.
 */
export async function restartServer(srv, { waitMs = 10000 } = {}) {
  const env = {};
  // As the harness does: never let the caller's CHATD_* settings leak in.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
  const child = spawn(CHATD_BIN, srv.argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (stderr += d));
  child.on('error', () => {});
  let exitInfo = null;
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve((exitInfo = { code, signal }))));
  const kill = () => {
    if (!exitInfo) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  process.on('exit', kill);
  const h = {
    port: srv.port,
    host: srv.host,
    tls: srv.tls,
    ca: srv.ca,
    url: srv.url,
    wsUrl: srv.wsUrl,
    pid: child.pid,
    exited,
    stderr: () => stderr,
    get exitInfo() {
      return exitInfo;
    },
    signal(sig) {
      if (!exitInfo) process.kill(child.pid, sig);
    },
    async stop(graceMs = 5000) {
      if (!exitInfo) {
        try {
          process.kill(child.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
        const t = setTimeout(kill, graceMs);
        await exited;
        clearTimeout(t);
      }
      process.off('exit', kill);
      return exitInfo;
    },
  };
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (exitInfo) throw new Error(`restarted chatd exited (code ${exitInfo.code}, signal ${exitInfo.signal}); stderr:\n${stderr}`);
    try {
      const r = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) return h;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      kill();
      await exited;
      throw new Error(`restarted chatd did not answer /healthz within ${waitMs} ms; stderr:\n${stderr}`);
    }
    await sleep(25);
  }
}

/**
 * Users or chat list items without their presence fields (online, a
 * boolean; last_seen, null or ms), which are checked here: for tests of
 * other things that compare whole objects (presence.test.mjs tests them).
 */
export function dropPresence(items) {
  for (const u of items) {
    assert.equal(typeof u.online, 'boolean', `online of ${JSON.stringify(u)}`);
    assert.ok(u.last_seen === null || Number.isInteger(u.last_seen), `last_seen of ${JSON.stringify(u)}`);
    delete u.online;
    delete u.last_seen;
  }
  return items;
}

/** Sorts a copy by a numeric key. */
export const byKey = (arr, k) => [...arr].sort((a, b) => a[k] - b[k]);
