// TLS helpers for the tests: a throw-away CA and server certificates made with
// the openssl CLI, and https/wss clients that trust only that CA.
//
// The suite over TLS (CHATD_TEST_TLS=1): the harness (lib/server.mjs) gives
// every chatd it starts --tls-cert/--tls-key from one CA made once per test
// process (suiteTls()), records the port here (tlsPort()), and every client of
// lib/ speaks TLS to such a port trusting that CA: RawConn/RawWs/rawRequest
// (lib/http.mjs, lib/ws.mjs), WsClient (wss), req() (lib/chat.mjs), and the
// global fetch (useCaForFetch() below).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import WebSocket from 'ws';

function openssl(args, cwd) {
  return execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

/** makeCA() without waiting: every step is a synchronous openssl run. */
export function makeCASync() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-tls-'));
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=chatd test CA'], dir);
  const ca = fs.readFileSync(path.join(dir, 'ca.pem'));
  const issue = (name, serial) => {
    fs.writeFileSync(path.join(dir, `${name}.ext`), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n');
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=chatd test ${name}`], dir);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${serial}`, '-days', '1', '-extfile', `${name}.ext`, '-out', `${name}.leaf`], dir);
    const leaf = fs.readFileSync(path.join(dir, `${name}.leaf`));
    fs.writeFileSync(path.join(dir, `${name}.crt`), Buffer.concat([leaf, ca]));
    return { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`), serial: serial.toUpperCase() };
  };
  return { dir, ca, issue, cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/**
 * A temp dir with a CA (ca.pem) and a way to issue server certificates for
 * 127.0.0.1 signed by it. issue(name, serial) writes <name>.crt (leaf then CA:
 * a chain) and <name>.key, and returns their paths and the serial as hex.
 */
export async function makeCA() {
  return makeCASync();
}

/** CHATD_TEST_TLS=1 (or true/yes/on): the harness starts every chatd with TLS. */
export const TEST_TLS = /^(1|true|yes|on)$/i.test(process.env.CHATD_TEST_TLS || '');

let suite = null;
/**
 * The suite's CA and the one server certificate every harness-started chatd
 * gets under CHATD_TEST_TLS: {ca (PEM), cert, key (paths)}. Made on first use,
 * once per process (four openssl runs, ~50 ms), removed when the process exits.
 */
export function suiteTls() {
  if (!suite) {
    const c = makeCASync();
    const leaf = c.issue('suite', '5e17e');
    suite = { ca: c.ca, cert: leaf.cert, key: leaf.key, dir: c.dir };
    process.on('exit', () => fs.rmSync(c.dir, { recursive: true, force: true }));
  }
  return suite;
}

// Ports of running chatd that speak TLS with a CA the harness knows: port -> {ca}.
const tlsPorts = new Map();
/** Records (ca given) or forgets (ca null) that the chatd on port speaks TLS signed by ca. */
export function setTlsPort(port, ca) {
  if (ca) tlsPorts.set(port, { ca });
  else tlsPorts.delete(port);
}
/** {ca} when the harness's chatd on port speaks TLS, else undefined (plain TCP). */
export function tlsPort(port) {
  return tlsPorts.get(port);
}

/**
 * Makes the global fetch trust `ca` (besides the usual roots) for the rest of
 * the process. Node 20's fetch is its bundled undici, which reads its
 * dispatcher from globalThis[Symbol.for('undici.globalDispatcher.1')] (what
 * undici's setGlobalDispatcher() sets); an Agent of that same bundled undici
 * with connect: {secureContext} trusting the CA is used by every TLS connection
 * fetch opens (only the CA: the tests talk to loopback only). The
 * alternative, NODE_EXTRA_CA_CERTS, is read only when the process starts, so
 * it could not take a CA the process makes itself; and the npm undici package
 * is not a dependency here (and its Agent need not match the bundled fetch).
 */
export async function useCaForFetch(ca) {
  const key = Symbol.for('undici.globalDispatcher.1');
  // The bundled undici loads, and sets its default dispatcher, on the first fetch.
  if (!globalThis[key]) await (await fetch('data:,')).arrayBuffer();
  const Agent = globalThis[key] && Object.getPrototypeOf(globalThis[key]).constructor;
  if (typeof Agent !== 'function') throw new Error('cannot find the undici Agent of the global fetch (set NODE_EXTRA_CA_CERTS instead)');
  globalThis[key] = new Agent({ connect: { secureContext: clientContext(ca) } });
}

const contexts = new Map();
/**
 * A client SecureContext trusting only ca, made once per CA: passed to
 * tls.connect (and through fetch's and ws's options) instead of `ca`, so a
 * connection does not build and parse a context of its own.
 */
export function clientContext(ca) {
  let c = contexts.get(ca);
  if (!c) contexts.set(ca, (c = tls.createSecureContext({ ca })));
  return c;
}

/** GET/POST over https trusting only `ca`; resolves {status, headers, text, body, socket info}. */
export function httpsRequest(srv, ca, method, urlPath, { body, headers = {}, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const h = { ...headers };
    if (data !== undefined) {
      h['Content-Type'] = h['Content-Type'] || 'application/json';
      h['Content-Length'] = Buffer.byteLength(data);
    }
    const req = https.request(
      { host: srv.host, port: srv.port, method, path: urlPath, ca, headers: h, agent: false, timeout: timeoutMs, ALPNProtocols: ['http/1.1'] },
      (res) => {
        const chunks = [];
        const s = res.socket;
        const info = { alpn: s.alpnProtocol, protocol: s.getProtocol(), cipher: s.getCipher().name, serial: s.getPeerCertificate().serialNumber };
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, body: parsed, ...info });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('https request timed out')));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

/** A raw TLS connection; resolves with the socket once the handshake is done, rejects on failure. */
export function tlsConnect(srv, opts = {}) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: srv.host, port: srv.port, servername: 'localhost', ...opts });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('TLS handshake timed out'));
    }, opts.timeoutMs || 5000);
    s.once('secureConnect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/**
 * A wss client (npm ws) trusting only `ca`; resolves {ws, init, serial, next()}
 * once the init message arrived. next() resolves with the next text message.
 */
export function wssClient(srv, ca, urlPath = '/ws') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(srv.wsUrl(urlPath), { ca });
    const queue = [];
    const waiters = [];
    ws.on('message', (d) => {
      const text = d.toString('utf8');
      if (waiters.length) waiters.shift()(text);
      else queue.push(text);
    });
    const next = (timeoutMs = 3000) =>
      new Promise((res, rej) => {
        if (queue.length) return res(queue.shift());
        const t = setTimeout(() => rej(new Error('no message in time')), timeoutMs);
        waiters.push((m) => {
          clearTimeout(t);
          res(m);
        });
      });
    ws.once('error', reject);
    ws.once('open', async () => {
      try {
        const init = JSON.parse(await next());
        resolve({ ws, init, serial: ws._socket.getPeerCertificate().serialNumber, next });
      } catch (e) {
        reject(e);
      }
    });
  });
}
