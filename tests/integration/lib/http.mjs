// Raw HTTP over net (so malformed, pipelined and partial requests can be sent
// byte for byte), a response parser, and helpers for the JSON API.
// Under CHATD_TEST_TLS the same bytes go inside a TLS connection to a chatd
// the harness gave a certificate (see lib/tls.mjs).
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { HOST } from './server.mjs';
import { clientContext, tlsPort } from './tls.mjs';

/**
 * A TCP connection that buffers everything it receives and lets a test wait
 * until a parser finds what it wants in the buffer. To a port where the
 * harness started chatd with TLS (CHATD_TEST_TLS), a TLS connection trusting
 * the suite's CA, ready once the handshake is done; `socket` is then a
 * tls.TLSSocket and reads/writes are the decrypted bytes.
 */
export class RawConn {
  constructor(socket) {
    this.socket = socket;
    this.buf = Buffer.alloc(0);
    this.ended = false; // peer closed (FIN, RST or error)
    this.error = null;
    this.waiters = [];
    this.closedAt = null;
    this.store = null; // what this.buf is a view of, with room to append
    socket.on('data', (d) => {
      this._append(d);
      this._wake();
    });
    const onEnd = () => {
      if (!this.ended) {
        this.ended = true;
        this.closedAt = Date.now();
      }
      this._wake();
    };
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', (e) => {
      this.error = e;
      onEnd();
    });
  }

  static connect(port, host = HOST) {
    const t = tlsPort(port);
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ port, host });
      tcp.setNoDelay(true);
      // TLS on top of our own TCP socket, so reset() can still send an RST.
      const s = t ? tls.connect({ socket: tcp, host, secureContext: clientContext(t.ca) }) : tcp;
      const onErr = (e) => reject(e);
      s.once('error', onErr);
      s.once(t ? 'secureConnect' : 'connect', () => {
        s.off('error', onErr);
        const c = new RawConn(s);
        c.tcp = tcp;
        resolve(c);
      });
    });
  }

  /** Closes with an RST (on TLS too: the TCP socket under it is reset, no close_notify). */
  reset() {
    (this.tcp || this.socket).resetAndDestroy();
    if (this.tcp && this.tcp !== this.socket) this.socket.destroy();
  }

  /** True when this connection is TLS (CHATD_TEST_TLS). */
  get tls() {
    return this.socket instanceof tls.TLSSocket;
  }

  /**
   * Appends d to this.buf in amortised O(len): into the room behind buf in a
   * store that doubles when full (a TLS socket hands over one 16 KB record at a
   * time: concatenating each would copy a 15 MB download ~1,000 times and make
   * the test client, not chatd, the slow reader). Bytes already consumed stay
   * where they are, so values a parser returned as views keep their content.
   */
  _append(d) {
    const len = this.buf.length;
    if (len === 0 && !this.store) {
      this.buf = d;
      return;
    }
    const st = this.store;
    const start = st && this.buf.buffer === st.buffer ? this.buf.byteOffset - st.byteOffset : -1;
    if (start >= 0 && start + len + d.length <= st.length) {
      d.copy(st, start + len);
      this.buf = st.subarray(start, start + len + d.length);
      return;
    }
    const store = Buffer.allocUnsafe(Math.max(64 * 1024, 2 * (len + d.length)));
    this.buf.copy(store, 0);
    d.copy(store, len);
    this.store = store;
    this.buf = store.subarray(0, len + d.length);
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  write(data) {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve(false);
      this.socket.write(data, (err) => resolve(!err));
    });
  }

  /** Half-closes our side (sends FIN). */
  end() {
    this.socket.end();
  }

  destroy() {
    this.socket.destroy();
  }

  /**
   * Waits until parse(buf, ended) returns {value, consumed}; consumes those bytes.
   * parse returns null when more bytes are needed. Rejects on timeout, or when the
   * peer closed and parse still needs more.
   */
  read(parse, timeoutMs = 3000, what = 'data') {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        done = true;
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`));
      }, timeoutMs);
      let done = false;
      const attempt = () => {
        if (done) return;
        let r;
        try {
          r = parse(this.buf, this.ended);
        } catch (e) {
          done = true;
          clearTimeout(timer);
          return reject(e);
        }
        if (r) {
          done = true;
          clearTimeout(timer);
          this.buf = this.buf.subarray(r.consumed);
          return resolve(r.value);
        }
        if (this.ended) {
          done = true;
          clearTimeout(timer);
          const e = new Error(`connection closed while waiting for ${what}; buffered: ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
          e.code = 'CONN_CLOSED';
          return reject(e);
        }
        this.waiters.push(attempt);
      };
      attempt();
    });
  }

  /** Reads one HTTP response. head: the request was HEAD (no body). */
  readResponse({ head = false, timeoutMs = 3000 } = {}) {
    return this.read((buf, ended) => parseResponse(buf, { head, ended }), timeoutMs, 'an HTTP response');
  }

  /** Resolves true when the peer closes within timeoutMs, false otherwise. */
  waitClosed(timeoutMs = 3000) {
    return new Promise((resolve) => {
      if (this.ended) return resolve(true);
      const timer = setTimeout(() => resolve(false), timeoutMs);
      const check = () => {
        if (this.ended) {
          clearTimeout(timer);
          resolve(true);
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }
}

/**
 * Parses one HTTP/1.x response from the start of buf.
 * Returns {value: {status, reason, version, headers, rawHeaders, body}, consumed} or null.
 * headers: lower-case name -> value (repeated headers joined with ", ").
 */
export function parseResponse(buf, { head = false, ended = false } = {}) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const headText = buf.subarray(0, end).toString('latin1');
  const lines = headText.split('\r\n');
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
  if (!m) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
  const headers = {};
  const rawHeaders = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`bad header line: ${JSON.stringify(line)}`);
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    rawHeaders.push([name, value]);
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  const status = Number(m[2]);
  const bodyStart = end + 4;
  let bodyLen;
  if (head || status === 304 || status === 204 || (status >= 100 && status < 200)) bodyLen = 0;
  else if ('content-length' in headers) bodyLen = Number(headers['content-length']);
  else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parsed = parseChunked(buf.subarray(bodyStart));
    if (!parsed) return null;
    return {
      value: { status, reason: m[3] || '', version: m[1], headers, rawHeaders, body: parsed.body },
      consumed: bodyStart + parsed.consumed,
    };
  } else {
    // Body until close.
    if (!ended) return null;
    bodyLen = buf.length - bodyStart;
  }
  if (buf.length < bodyStart + bodyLen) return null;
  return {
    value: { status, reason: m[3] || '', version: m[1], headers, rawHeaders, body: buf.subarray(bodyStart, bodyStart + bodyLen) },
    consumed: bodyStart + bodyLen,
  };
}

function parseChunked(buf) {
  let pos = 0;
  const parts = [];
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return null;
    const size = parseInt(buf.subarray(pos, eol).toString('latin1'), 16);
    pos = eol + 2;
    if (size === 0) {
      const fin = buf.indexOf('\r\n', pos);
      if (fin < 0) return null;
      return { body: Buffer.concat(parts), consumed: fin + 2 };
    }
    if (buf.length < pos + size + 2) return null;
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/**
 * Opens a connection, writes each chunk (with an optional pause between), reads
 * responses until the server closes or `count` responses arrived.
 * Returns {responses, closed, conn}.
 */
export async function rawRequest(port, data, { count = 1, head = false, timeoutMs = 3000, waitClose = false, closeTimeoutMs = 1500 } = {}) {
  const conn = await RawConn.connect(port);
  await conn.write(data);
  const responses = [];
  for (let i = 0; i < count; i++) responses.push(await conn.readResponse({ head, timeoutMs }));
  let closed = conn.ended;
  if (waitClose) closed = await conn.waitClosed(closeTimeoutMs);
  conn.destroy();
  return { responses, closed, response: responses[0] };
}

/** Parses a response body as the JSON envelope. */
export function json(res) {
  const text = Buffer.isBuffer(res.body) ? res.body.toString('utf8') : res.body;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`response body is not JSON (status ${res.status}): ${JSON.stringify(String(text).slice(0, 300))}`);
  }
}

/**
 * Calls POST /gateway/<method> with fetch.
 * body: object (JSON-encoded) or string (sent as is). secret: null = no Authorization.
 * Returns {status, headers, text, body (parsed JSON or undefined)}.
 */
export async function api(srv, method, body = {}, { secret = srv.secret, headers = {}, timeoutMs = 5000 } = {}) {
  const h = { 'Content-Type': 'application/json', ...headers };
  if (secret !== null && secret !== undefined) h.Authorization = `Bearer ${secret}`;
  const r = await fetch(`${srv.url}/gateway/${method}`, {
    method: 'POST',
    headers: h,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: r.status, headers: r.headers, text, body: parsed };
}

/** Calls a gateway method that must succeed; returns its `data`. */
export async function call(srv, method, body = {}) {
  const r = await api(srv, method, body);
  if (r.status !== 200 || !r.body || r.body.status !== true) {
    throw new Error(`${method} ${JSON.stringify(body).slice(0, 200)} -> HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.body.data;
}

/** GET /healthz; returns its `data`. */
export async function healthz(srv) {
  const r = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(3000) });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`/healthz -> ${r.status}`);
  return body.data;
}

/**
 * One request to srv (http or https as it serves) with Node's client on a fresh connection:
 * {status, headers, body} with the body as received (a Buffer, still compressed).
 */
export function nodeRequest(srv, urlPath, { headers = {}, method = 'GET' } = {}) {
  const mod = srv.tls ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: srv.host, port: srv.port, path: urlPath, method, headers, agent: false, ca: srv.ca || undefined, timeout: 5000 },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}
