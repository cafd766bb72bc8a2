// Harness of the GatewayWorker compatibility tests: starts the real chatd with
// --gw-inner / --gw-register (through the integration harness), and drives the
// PHP scripts of ../php: cli.php (GatewayClient-like calls and raw byte
// exchanges, results as PHP serialize() strings so a test can assert exact
// PHP types) and worker.php (a BusinessWorker-like process that prints one
// JSON line per event).
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startServer, freePort, sleep, HOST } from '../../integration/lib/server.mjs';
import { RawConn } from '../../integration/lib/http.mjs';
import { WsClient } from '../../integration/lib/ws.mjs';

export { sleep, HOST, RawConn, WsClient, freePort };

const here = path.dirname(fileURLToPath(import.meta.url));
export const PHP_DIR = path.join(here, '..', 'php');
export const PHP = process.env.CHATD_PHP || 'php';
export const API_SECRET = 'gw-api-secret-0123';

/**
 * Starts chatd with the inner port and the Register on free ports.
 * secret: --gw-secret (none when undefined). Returns the integration harness's
 * server handle plus {inner, register (addresses), innerPort, registerPort, gwSecret, secret (API)}.
 */
export async function startGw({ secret, options = {}, args = [], register = true } = {}) {
  let lastErr;
  for (let attempt = 0; attempt < 4; attempt++) {
    const innerPort = await freePort();
    const registerPort = await freePort();
    const o = {
      'api-secret': API_SECRET,
      'log-level': 'info',
      'gw-inner': `${HOST}:${innerPort}`,
      ...(register ? { 'gw-register': `${HOST}:${registerPort}` } : {}),
      ...(secret !== undefined ? { 'gw-secret': secret } : {}),
      ...options,
    };
    try {
      const srv = await startServer({ options: o, args });
      Object.assign(srv, {
        innerPort,
        registerPort,
        inner: `${HOST}:${innerPort}`,
        register: `${HOST}:${registerPort}`,
        gwSecret: secret ?? '',
        secret: API_SECRET,
      });
      return srv;
    } catch (e) {
      lastErr = e;
      if (!/in use|EADDRINUSE/i.test(String(e.stderr || e.message))) break;
    }
  }
  throw lastErr;
}

/** Runs php with a script of ../php and a JSON request on stdin; resolves with the parsed stdout. */
export function runPhp(script, request, { timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(PHP, ['-d', 'display_errors=stderr', path.join(PHP_DIR, script)], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(t);
      if (code !== 0) return reject(new Error(`php ${script} exited ${code ?? signal}: ${err}\n${out}`));
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`php ${script} printed no JSON: ${out.slice(0, 500)} ${err}`));
      }
    });
    child.stdin.end(JSON.stringify(request));
  });
}

/**
 * Runs GwClient calls against srv's Register (or {register, secret, addresses}).
 * calls: [['bindUid', cid, '42'], ...]. Resolves with [{ser, json} | {error}].
 */
export async function php(target, calls, { secret, addresses, timeout = 5 } = {}) {
  const req = {
    register: target.register,
    secret: secret ?? target.gwSecret ?? '',
    timeout,
    calls,
  };
  if (addresses || target.addresses) req.addresses = addresses || target.addresses;
  const r = await runPhp('cli.php', req);
  return r.results;
}

/** One call that must not fail; resolves with {ser, json}. */
export async function php1(target, ...call) {
  const [r] = await php(target, [call]);
  if (r.error) throw new Error(`${call[0]}: ${r.error}`);
  return r;
}

/** Calls that must all succeed; resolves with their serialize() strings. */
export async function phpSer(target, calls, opts) {
  const rs = await php(target, calls, opts);
  rs.forEach((r, i) => {
    if (r.error) throw new Error(`${JSON.stringify(calls[i])}: ${r.error}`);
  });
  return rs.map((r) => r.ser);
}

/**
 * Raw exchanges through cli.php: items [{address, send: [{hex}|{text}|{frame}|{auth}], read, timeout}].
 * Resolves with [{hex, closed, timed_out}].
 */
export async function phpRaw(items) {
  const r = await runPhp('cli.php', { raw: items });
  return r.raw;
}

/**
 * PHP serialize() of a JS value, for expected replies. Numbers that are
 * integers are i:, strings s: (byte length). Arrays are lists. A Map keeps its
 * order (use it whenever a key is numeric: JS objects put integer-like keys
 * first); its keys, and a plain object's, become i: when PHP would store them
 * as integers (a decimal integer string, or a number).
 */
export function ser(v) {
  if (v === null || v === undefined) return 'N;';
  if (typeof v === 'boolean') return `b:${v ? 1 : 0};`;
  if (typeof v === 'number') return Number.isInteger(v) ? `i:${v};` : `d:${v};`;
  if (typeof v === 'string') return `s:${Buffer.byteLength(v)}:"${v}";`;
  const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : v instanceof Map ? [...v.entries()] : Object.entries(v);
  const key = (k) => (typeof k === 'number' || /^(0|-?[1-9][0-9]{0,17})$/.test(k) ? `i:${k};` : ser(String(k)));
  return `a:${entries.length}:{${entries.map(([k, x]) => key(k) + ser(x)).join('')}}`;
}

/** The connection id (integer) inside a 20-hex client_id. */
export const connId = (cid) => parseInt(cid.slice(12), 16);

/** A 20-hex client_id for address "ip:port" and a connection id. */
export function clientIdOf(address, id) {
  const [ip, port] = address.split(':');
  const b = Buffer.alloc(10);
  ip.split('.').forEach((x, i) => (b[i] = Number(x)));
  b.writeUInt16BE(Number(port), 4);
  b.writeUInt32BE(id >>> 0, 6);
  return b.toString('hex');
}

/** One inner-protocol frame (28-byte header, ext_data, body). body strings are sent with flag 0x01 unless flag is given. */
export function frame({ cmd, connectionId = 0, ext = '', body = '', flag = 0x01, localIp = 0, localPort = 0, clientIp = 0, clientPort = 0, gatewayPort = 0, packLen }) {
  const e = Buffer.isBuffer(ext) ? ext : Buffer.from(ext);
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const h = Buffer.alloc(28);
  h.writeUInt32BE(packLen ?? 28 + e.length + b.length, 0);
  h.writeUInt8(cmd, 4);
  h.writeUInt32BE(localIp >>> 0, 5);
  h.writeUInt16BE(localPort, 9);
  h.writeUInt32BE(clientIp >>> 0, 11);
  h.writeUInt16BE(clientPort, 15);
  h.writeUInt32BE(connectionId >>> 0, 17);
  h.writeUInt8(flag, 21);
  h.writeUInt16BE(gatewayPort, 22);
  h.writeUInt32BE(e.length, 24);
  return Buffer.concat([h, e, b]);
}

/** The 202 auth frame of a GatewayClient connection. */
export const authFrame = (secret) => frame({ cmd: 202, body: JSON.stringify({ secret_key: secret }) });

/** Opens n WebSocket clients on /ws (each has clientId from init). */
export async function openWs(srv, n = 1, opts = {}) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await WsClient.open(srv, opts));
  return out;
}

/** Reads messages of c until one satisfies pred (a parsed JSON message or the text); returns it. */
export async function nextMatching(c, pred, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  const seen = [];
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no matching message within ${timeoutMs} ms; saw ${JSON.stringify(seen).slice(0, 600)}`);
    const m = await c.next(left).catch((e) => {
      throw new Error(`${e.message}; saw ${JSON.stringify(seen).slice(0, 600)}`);
    });
    let j = null;
    try {
      j = JSON.parse(m.text);
    } catch {
      /* not JSON */
    }
    seen.push(m.text);
    if (pred(j, m.text)) return j ?? m.text;
  }
}

/** Messages c receives within ms (texts). */
export async function drainTexts(c, ms = 300) {
  return (await c.drain(ms)).map((m) => m.text);
}

/** Waits until srv's stderr has grown past `from` with a line matching re (default: any new line). */
export async function waitLog(srv, from, re = /\S/, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tail = srv.stderr().slice(from);
    if (re.test(tail)) return tail;
    if (Date.now() > deadline) throw new Error(`no log line matching ${re} within ${timeoutMs} ms; stderr since: ${JSON.stringify(tail.slice(-800))}`);
    await sleep(25);
  }
}

/** A BusinessWorker-like PHP process (../php/worker.php); its JSON lines in .lines. */
export class PhpWorker {
  constructor(cfg) {
    this.cfg = cfg;
    this.lines = [];
    this.waiters = new Set();
    this.stderr = '';
    this.child = spawn(PHP, ['-d', 'display_errors=stderr', path.join(PHP_DIR, 'worker.php'), JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr.setEncoding('utf8').on('data', (d) => (this.stderr += d));
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => {
      let j;
      try {
        j = JSON.parse(l);
      } catch {
        j = { ev: '(not json)', line: l };
      }
      this.lines.push(j);
      for (const w of [...this.waiters]) w();
    });
    this.exited = new Promise((r) => this.child.on('exit', (code, signal) => r({ code, signal })));
    PhpWorker.live.add(this);
    this.exited.then(() => PhpWorker.live.delete(this));
  }

  /** Starts a worker on srv's Register and waits until it is connected to every gateway the Register lists. */
  static async start(srv, { name = 'TestWorker', index = 0, secret, gateways = 1, register } = {}) {
    const w = new PhpWorker({ register: register ?? srv.register, secret: secret ?? srv.gwSecret ?? '', name, index });
    await w.waitFor((l, all) => all.filter((x) => x.ev === 'gateway_connected').length >= gateways, 5000, 'gateway_connected');
    // the 200 frame is written; give the server a moment to take it before clients connect
    await sleep(150);
    return w;
  }

  /** Resolves with the first line (index >= from) satisfying pred(line, allLines). */
  waitFor(pred, timeoutMs = 3000, what = 'a line', from = 0) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = from; i < this.lines.length; i++) {
          if (pred(this.lines[i], this.lines)) {
            done();
            resolve(this.lines[i]);
            return true;
          }
        }
        return false;
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`worker: no ${what} within ${timeoutMs} ms; lines: ${JSON.stringify(this.lines.slice(-8)).slice(0, 1500)}; stderr: ${this.stderr.slice(-500)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(check);
      };
      if (!check()) this.waiters.add(check);
    });
  }

  /** Events (ev) of one client, in order. */
  eventsOf(clientId) {
    return this.lines.filter((l) => l.client_id === clientId && ['connect', 'websocket_connect', 'message', 'close'].includes(l.ev));
  }

  async stop() {
    try {
      this.child.kill('SIGTERM');
    } catch {
      /* gone */
    }
    const t = setTimeout(() => {
      try {
        this.child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }, 2000);
    await this.exited;
    clearTimeout(t);
  }
}
PhpWorker.live = new Set();
process.on('exit', () => {
  for (const w of PhpWorker.live) {
    try {
      w.child.kill('SIGKILL');
    } catch {
      /* gone */
    }
  }
});

/**
 * A stand-in TCP server on a free 127.0.0.1 port (a fake gateway): keeps the
 * bytes of its first connection; firstData() waits for one whole inner frame.
 */
export function freeServer() {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const waiters = new Set();
    const socks = new Set();
    const server = net.createServer((s) => {
      socks.add(s);
      s.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (const w of [...waiters]) w();
      });
      s.on('error', () => {});
    });
    server.on('error', reject);
    server.listen(0, HOST, () => {
      resolve({
        port: server.address().port,
        firstData(timeoutMs = 3000) {
          return new Promise((res, rej) => {
            const check = () => {
              if (buf.length >= 28 && buf.length >= buf.readUInt32BE(0)) {
                waiters.delete(check);
                clearTimeout(t);
                res(buf.subarray(0, buf.readUInt32BE(0)));
                return true;
              }
              return false;
            };
            const t = setTimeout(() => {
              waiters.delete(check);
              rej(new Error(`fake gateway: no whole frame within ${timeoutMs} ms (${buf.length} bytes)`));
            }, timeoutMs);
            if (!check()) waiters.add(check);
          });
        },
        close() {
          for (const s of socks) s.destroy();
          server.close();
        },
      });
    });
  });
}

/** Stops every PhpWorker this process started (for a file's after hook). */
export async function stopWorkers() {
  await Promise.all([...PhpWorker.live].map((w) => w.stop()));
}

/** Polls fn until truthy; throws naming `what` after timeoutMs. */
export async function waitUntil(fn, { timeoutMs = 3000, intervalMs = 25, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}
