// WebSocket clients for the tests:
//  - RawWs: a tiny client over net that does the handshake itself and sends
//    hand-built frames (unmasked, reserved bits, bad opcodes, partial frames),
//    and parses the server's frames to read close codes;
//  - WsClient: a wrapper around the npm `ws` package, an independent and
//    strict RFC 6455 implementation, with a message queue.
// Under CHATD_TEST_TLS both speak TLS (wss) trusting the suite's CA (lib/tls.mjs).
import crypto from 'node:crypto';
import WebSocket from 'ws';
import { RawConn } from './http.mjs';
import { clientContext } from './tls.mjs';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export function acceptFor(key) {
  return crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
}

export function newKey() {
  return crypto.randomBytes(16).toString('base64');
}

/** A request string for a WebSocket handshake; headers set to null are left out. */
export function handshakeRequest({ path = '/ws', method = 'GET', headers = {}, body = '' } = {}) {
  const h = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': newKey(),
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  let s = `${method} ${path} HTTP/1.1\r\n`;
  for (const [k, v] of Object.entries(h)) if (v !== null && v !== undefined) s += `${k}: ${v}\r\n`;
  return `${s}\r\n${body}`;
}

function toBuf(p) {
  if (p === undefined || p === null) return Buffer.alloc(0);
  return Buffer.isBuffer(p) ? p : Buffer.from(p);
}

/**
 * Builds one client frame.
 * rsv: 3-bit value, RSV1 = 4, RSV2 = 2, RSV3 = 1. mask: false sends it unmasked.
 * len: override the encoded payload length (for frames cut short or lying).
 * lenBytes: force a 16-bit (2) or 64-bit (8) length encoding.
 */
export function buildFrame({ fin = true, rsv = 0, opcode, payload, mask = true, maskKey, len, lenBytes } = {}) {
  const data = toBuf(payload);
  const n = len === undefined ? data.length : len;
  const parts = [];
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const mbit = mask ? 0x80 : 0;
  let enc = lenBytes || (n < 126 ? 0 : n < 65536 ? 2 : 8);
  if (enc === 0) parts.push(Buffer.from([b0, mbit | n]));
  else if (enc === 2) {
    const h = Buffer.alloc(4);
    h[0] = b0;
    h[1] = mbit | 126;
    h.writeUInt16BE(n, 2);
    parts.push(h);
  } else {
    const h = Buffer.alloc(10);
    h[0] = b0;
    h[1] = mbit | 127;
    h.writeBigUInt64BE(BigInt(n), 2);
    parts.push(h);
  }
  if (mask) {
    const key = maskKey ? toBuf(maskKey) : crypto.randomBytes(4);
    parts.push(key);
    const masked = Buffer.alloc(data.length);
    for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
    parts.push(masked);
  } else parts.push(data);
  return Buffer.concat(parts);
}

/** A close frame payload: 2-byte code (if code is not null) + reason. */
export function closePayload(code, reason = '') {
  if (code === null || code === undefined) return Buffer.alloc(0);
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

/** Parses one server frame from buf: {value: frame, consumed} or null. */
export function parseServerFrame(buf) {
  if (buf.length < 2) return null;
  const fin = (buf[0] & 0x80) !== 0;
  const rsv = (buf[0] >> 4) & 7;
  const opcode = buf[0] & 0x0f;
  const masked = (buf[1] & 0x80) !== 0;
  let len = buf[1] & 0x7f;
  let pos = 2;
  if (len === 126) {
    if (buf.length < 4) return null;
    len = buf.readUInt16BE(2);
    pos = 4;
  } else if (len === 127) {
    if (buf.length < 10) return null;
    len = Number(buf.readBigUInt64BE(2));
    pos = 10;
  }
  let key = null;
  if (masked) {
    if (buf.length < pos + 4) return null;
    key = buf.subarray(pos, pos + 4);
    pos += 4;
  }
  if (buf.length < pos + len) return null;
  let payload = Buffer.from(buf.subarray(pos, pos + len));
  if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
  const frame = { fin, rsv, opcode, masked, payload };
  if (opcode === OP.CLOSE) {
    frame.code = payload.length >= 2 ? payload.readUInt16BE(0) : null;
    frame.reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
  }
  return { value: frame, consumed: pos + len };
}

/** A raw WebSocket client over net (over TLS to a port the harness started with TLS). */
export class RawWs {
  constructor(conn, response) {
    this.conn = conn;
    this.response = response;
  }

  /**
   * Connects and does the handshake. Throws unless the answer is 101 with the
   * right Sec-WebSocket-Accept (set expect101: false to get the response instead).
   */
  static async connect(port, { path = '/ws', headers = {}, expect101 = true, timeoutMs = 3000 } = {}) {
    const conn = await RawConn.connect(port);
    const key = headers['Sec-WebSocket-Key'] || newKey();
    await conn.write(handshakeRequest({ path, headers: { ...headers, 'Sec-WebSocket-Key': key } }));
    const res = await conn.readResponse({ timeoutMs });
    if (expect101) {
      if (res.status !== 101) {
        conn.destroy();
        throw new Error(`handshake on ${path}: expected 101, got ${res.status} ${res.body.toString()}`);
      }
      if (res.headers['sec-websocket-accept'] !== acceptFor(key)) {
        conn.destroy();
        throw new Error(`bad Sec-WebSocket-Accept: ${res.headers['sec-websocket-accept']}`);
      }
    }
    return new RawWs(conn, res);
  }

  /** Connects to the client endpoint and reads the init message. */
  static async connectClient(port, opts = {}) {
    const c = await RawWs.connect(port, { path: '/ws', ...opts });
    const f = await c.readFrame();
    if (f.opcode !== OP.TEXT) throw new Error(`expected init text frame, got opcode ${f.opcode}`);
    const init = JSON.parse(f.payload.toString('utf8'));
    if (init.type !== 'init') throw new Error(`expected init, got ${f.payload}`);
    c.clientId = init.client_id;
    c.bindNonce = init.bind_nonce;
    return c;
  }

  get ended() {
    return this.conn.ended;
  }

  sendRaw(buf) {
    return this.conn.write(buf);
  }

  send(frameOpts) {
    return this.conn.write(buildFrame(frameOpts));
  }

  sendText(text, opts = {}) {
    return this.send({ opcode: OP.TEXT, payload: text, ...opts });
  }

  sendBinary(data, opts = {}) {
    return this.send({ opcode: OP.BINARY, payload: data, ...opts });
  }

  ping(payload = '', opts = {}) {
    return this.send({ opcode: OP.PING, payload, ...opts });
  }

  sendClose(code, reason = '', opts = {}) {
    return this.send({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts });
  }

  /** Reads one server frame; asserts the server's frames are unmasked and RSV-free. */
  async readFrame(timeoutMs = 3000) {
    const f = await this.conn.read((buf) => parseServerFrame(buf), timeoutMs, 'a WebSocket frame');
    if (f.masked) throw new Error('server sent a masked frame (RFC 6455 5.1 forbids it)');
    if (f.rsv) throw new Error(`server sent a frame with RSV bits ${f.rsv}`);
    return f;
  }

  /** Reads one whole data message (joining fragments), failing on a control frame other than ping/pong. */
  async readMessage(timeoutMs = 3000) {
    const parts = [];
    let opcode = null;
    for (;;) {
      const f = await this.readFrame(timeoutMs);
      if (f.opcode === OP.PING || f.opcode === OP.PONG) continue;
      if (f.opcode === OP.CLOSE) throw new Error(`expected a message, got close ${f.code} ${f.reason}`);
      if (opcode === null) opcode = f.opcode;
      parts.push(f.payload);
      if (f.fin) break;
    }
    const data = Buffer.concat(parts);
    return { opcode, data, text: opcode === OP.TEXT ? data.toString('utf8') : undefined };
  }

  /**
   * Reads frames until a close frame arrives (skipping data and pings), answers
   * with a close (as a client must) and waits for the server to close TCP.
   * Returns {code, reason, tcpClosed, skipped}. code is null when the server
   * closed TCP without a close frame, or sent a close frame without a code.
   */
  async readClose(timeoutMs = 3000, { reply = true } = {}) {
    const skipped = [];
    let frame;
    for (;;) {
      try {
        frame = await this.readFrame(timeoutMs);
      } catch (e) {
        if (e.code === 'CONN_CLOSED') return { code: null, reason: null, noCloseFrame: true, tcpClosed: true, skipped };
        throw e;
      }
      if (frame.opcode === OP.CLOSE) break;
      skipped.push(frame);
    }
    if (reply && !this.conn.ended) {
      await this.conn.write(buildFrame({ opcode: OP.CLOSE, payload: frame.code ? closePayload(frame.code) : Buffer.alloc(0) }));
    }
    const tcpClosed = await this.conn.waitClosed(2000);
    return { code: frame.code, reason: frame.reason, tcpClosed, skipped, payload: frame.payload };
  }

  /** Round trip: a ping with a random payload must come back as a pong with it. */
  async pingPong(timeoutMs = 2000) {
    const p = crypto.randomBytes(8);
    await this.ping(p);
    for (;;) {
      const f = await this.readFrame(timeoutMs);
      if (f.opcode === OP.PONG && f.payload.equals(p)) return true;
      if (f.opcode === OP.CLOSE) throw new Error(`got close ${f.code} while waiting for pong`);
    }
  }

  destroy() {
    this.conn.destroy();
  }
}

/** A client built on the npm `ws` package, with a message queue. */
export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.pings = 0;
    this.closeInfo = null;
    ws.on('message', (data, isBinary) => {
      const m = isBinary ? { isBinary, data } : { isBinary, data, text: data.toString('utf8') };
      this.queue.push(m);
      this._wake();
    });
    ws.on('ping', () => {
      this.pings++;
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        this._wake();
        resolve(this.closeInfo);
      });
    });
    ws.on('error', (e) => {
      this.error = e;
    });
  }

  _wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Opens a connection with `ws`. init: read the init message first (sets clientId).
   */
  static open(srv, { path = '/ws', origin, headers = {}, init = path === '/ws', timeoutMs = 3000, wsOptions = {} } = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(srv.wsUrl(path), { origin, headers, handshakeTimeout: timeoutMs, ...wsTlsOptions(srv), ...wsOptions });
      const c = new WsClient(ws);
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`ws open ${path}: timeout`));
      }, timeoutMs);
      ws.once('unexpected-response', (req, res) => {
        clearTimeout(timer);
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          const e = new Error(`ws open ${path}: HTTP ${res.statusCode} ${body}`);
          e.status = res.statusCode;
          e.body = body;
          e.headers = res.headers;
          req.destroy();
          reject(e);
        });
        res.on('error', () => {});
        req.on('error', () => {});
      });
      ws.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      ws.once('open', async () => {
        clearTimeout(timer);
        if (!init) return resolve(c);
        try {
          const m = await c.nextJson(timeoutMs);
          if (m.type !== 'init') throw new Error(`first message is not init: ${JSON.stringify(m)}`);
          c.clientId = m.client_id;
          c.bindNonce = m.bind_nonce;
          resolve(c);
        } catch (e) {
          ws.terminate();
          reject(e);
        }
      });
    });
  }

  /** Next message: {isBinary, data, text}. Rejects on timeout or close. */
  next(timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
      let done = false;
      const timer = setTimeout(() => {
        done = true;
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      const attempt = () => {
        if (done) return;
        if (this.queue.length) {
          done = true;
          clearTimeout(timer);
          return resolve(this.queue.shift());
        }
        if (this.closeInfo) {
          done = true;
          clearTimeout(timer);
          return reject(new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for a message`));
        }
        this.waiters.push(attempt);
      };
      attempt();
    });
  }

  async nextText(timeoutMs) {
    const m = await this.next(timeoutMs);
    if (m.isBinary) throw new Error('expected a text message, got binary');
    return m.text;
  }

  async nextJson(timeoutMs) {
    const t = await this.nextText(timeoutMs);
    try {
      return JSON.parse(t);
    } catch {
      throw new Error(`message is not JSON: ${JSON.stringify(t.slice(0, 200))}`);
    }
  }

  /** Resolves with the messages that arrived within ms (should be none for a silence check). */
  async drain(ms = 200) {
    await new Promise((r) => setTimeout(r, ms));
    const q = this.queue;
    this.queue = [];
    return q;
  }

  sendJson(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  send(data, opts) {
    this.ws.send(data, opts);
  }

  /** Ping frame round trip: resolves when the matching pong arrives. */
  pingPong(timeoutMs = 2000) {
    return new Promise((resolve, reject) => {
      const p = crypto.randomBytes(8);
      const timer = setTimeout(() => {
        this.ws.off('pong', onPong);
        reject(new Error('no pong'));
      }, timeoutMs);
      const onPong = (data) => {
        if (Buffer.from(data).equals(p)) {
          clearTimeout(timer);
          this.ws.off('pong', onPong);
          resolve(true);
        }
      };
      this.ws.on('pong', onPong);
      this.ws.ping(p);
    });
  }

  /** Closes with code (default 1000) and waits for the close to finish. */
  async close(code = 1000, timeoutMs = 2000) {
    if (!this.closeInfo) {
      try {
        this.ws.close(code);
      } catch {
        /* already closing */
      }
    }
    const t = setTimeout(() => this.ws.terminate(), timeoutMs);
    const info = await this.closed;
    clearTimeout(t);
    return info;
  }

  terminate() {
    this.ws.terminate();
  }

  /** Resolves with {code, reason} when closed within timeoutMs, else rejects. */
  waitClose(timeoutMs = 3000) {
    let timer;
    return Promise.race([
      this.closed.finally(() => clearTimeout(timer)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  }
}

/**
 * Options for a `ws` (or https/tls) client to srv: under CHATD_TEST_TLS a
 * context trusting the suite's CA, else none. new WebSocket(srv.wsUrl(), {...wsTlsOptions(srv)})
 */
export function wsTlsOptions(srv) {
  return srv.ca ? { secureContext: clientContext(srv.ca) } : {};
}

/** Opens n client connections in parallel. */
export function openClients(srv, n, opts) {
  return Promise.all(Array.from({ length: n }, () => WsClient.open(srv, opts)));
}

export const CLIENT_ID_RE = /^[A-Za-z0-9_-]{24}$/;
