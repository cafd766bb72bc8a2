// Harness: spawns the real build/chatd on a free 127.0.0.1 port with a temp
// --data-dir and a temp --web-root holding fixture files, waits for /healthz,
// captures stderr, and stops it by PID. It builds nothing.
//
// The store: CHATD_TEST_STORE=sqlite (default) keeps chatd's SQLite store in
// the temp --data-dir; CHATD_TEST_STORE=<postgres URI> gives every started
// chatd a fresh database (lib/pg.mjs: CREATE DATABASE chatd_t_<random>) as
// --store, dropped when the server stops. One set of tests runs on both.
//
// TLS: CHATD_TEST_TLS=1 starts every chatd with --tls-cert/--tls-key from a
// throw-away CA made once per test process (lib/tls.mjs suiteTls()), unless the
// test sets its own (a tls-cert option or `tls`); srv.url and srv.wsUrl() are
// then https:// and wss://, srv.ca is the CA, and every client of lib/ (and the
// global fetch) speaks TLS to it trusting that CA. One set of tests runs on both.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ON_PG, createDb, dropDb, dropDbSync } from './pg.mjs';
import { TEST_TLS, setTlsPort, suiteTls, useCaForFetch } from './tls.mjs';

export { ON_PG, TEST_STORE, pgOnly, sqliteOnly } from './pg.mjs';
export { TEST_TLS } from './tls.mjs';

// The global fetch trusts the suite's CA (lib/tls.mjs useCaForFetch explains how).
if (TEST_TLS) await useCaForFetch(suiteTls().ca);

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const CHATD_BIN = process.env.CHATD_BIN || path.join(REPO_ROOT, 'build', 'chatd');
export const HOST = '127.0.0.1';

// Every server this process started, so none outlives a crashed test file,
// and every test database not dropped yet.
const live = new Set();
const liveDbs = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  for (const db of liveDbs) dropDbSync(db);
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** SIGTERM to pid, SIGKILL after graceMs; resolves with `exited` (the exit promise). */
export async function terminate(pid, exited, graceMs = 5000) {
  const signal = (sig) => {
    try {
      process.kill(pid, sig);
    } catch {
      /* gone */
    }
  };
  signal('SIGTERM');
  const t = setTimeout(() => signal('SIGKILL'), graceMs);
  try {
    return await exited;
  } finally {
    clearTimeout(t);
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// A valid 1x1 RGBA PNG (a white, fully transparent pixel): IHDR, a 13-byte
// IDAT (zlib of the filter byte and 4 bytes of pixel), IEND, each CRC right.
export const PNG_1x1 = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478da63f8ffff3f030008fc02fe78c4b2b0' +
    '0000000049454e44ae426082',
  'hex',
);

/** Fixture files of the temp web root, relative path -> content. */
export const WEB_FIXTURES = {
  'index.html': '<!doctype html><title>chatd test index</title><p>root index</p>\n',
  'style.css': 'body { color: #123456; }\n',
  'app.js': 'console.log("chatd test app");\n',
  'data.json': '{"fixture":true}\n',
  'a.txt': 'file a: alpha\n',
  'b.txt': 'file b: bravo\n',
  'c.txt': 'file c: charlie\n',
  'hello world.txt': 'a name with a space\n',
  'image.png': PNG_1x1,
  'sub/index.html': '<!doctype html><title>sub</title><p>sub index</p>\n',
  'sub/inner.txt': 'inner file\n',
  'big.bin': Buffer.from(Uint8Array.from({ length: 300000 }, (_, i) => (i * 31 + 7) & 255)),
};
/** Content of a file just outside the web root: must never be served. */
export const SECRET_CONTENT = 'TOP-SECRET-OUTSIDE-WEB-ROOT\n';

async function makeWebRoot(base) {
  const root = path.join(base, 'web');
  for (const [rel, content] of Object.entries(WEB_FIXTURES)) {
    const p = path.join(root, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
  }
  // A secret beside the web root, and symlinks inside the root that point out of it.
  await fsp.writeFile(path.join(base, 'secret.txt'), SECRET_CONTENT);
  await fsp.mkdir(path.join(base, 'outside-dir'));
  await fsp.writeFile(path.join(base, 'outside-dir', 'secret.txt'), SECRET_CONTENT);
  await fsp.symlink(path.join(base, 'secret.txt'), path.join(root, 'link-out.txt'));
  await fsp.symlink(path.join(base, 'outside-dir'), path.join(root, 'link-dir'));
  return root;
}

/** The I/O backend (--io) of every chatd the harness starts; unset = chatd's default. */
export const TEST_IO = process.env.CHATD_TEST_IO || '';

function childEnv(extra) {
  const env = {};
  // The server reads CHATD_* from the environment: never let the caller's leak in.
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Starts build/chatd.
 * @param {object} [o]
 * @param {object} [o.options] option name (without --) -> value, e.g. {'api-secret': 's'}
 * @param {object} [o.env] extra environment variables (CHATD_* from the caller's env are removed)
 * @param {string[]} [o.args] extra raw arguments
 * @param {boolean} [o.defaults] pass the harness defaults (--data-dir, --web-root, --log-level,
 *   and on PostgreSQL --store with a fresh database unless options.store is given)
 * @param {boolean} [o.tls] the server speaks TLS (implied by a tls-cert option; needed when a
 *   --config file sets it). Given (true or false), or with a tls-cert option, the test decides
 *   and CHATD_TEST_TLS adds nothing; left out, CHATD_TEST_TLS adds the suite's certificate.
 */
export async function startServer({ options = {}, env = {}, args = [], defaults = true, tls } = {}) {
  // CHATD_TEST_TLS: the suite's certificate (the test's options still win).
  let suiteCa = null;
  if (TEST_TLS && tls === undefined && !('tls-cert' in options) && !args.includes('--tls-cert')) {
    const st = suiteTls();
    options = { 'tls-cert': st.cert, 'tls-key': st.key, ...options };
    suiteCa = st.ca;
    tls = true;
  }
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-it-'));
  const dataDir = path.join(base, 'data');
  await fsp.mkdir(dataDir);
  const webRoot = await makeWebRoot(base);
  let db = null;
  if (ON_PG && defaults && !('store' in options)) {
    try {
      db = await createDb();
    } catch (e) {
      await fsp.rm(base, { recursive: true, force: true });
      throw e;
    }
    liveDbs.add(db.name);
  }

  let lastErr;
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freePort();
    const opts = {};
    if (defaults) {
      opts['data-dir'] = dataDir;
      opts['web-root'] = webRoot;
      // Tests sign up many users and send bursts from one address; the tests
      // of these limits set them explicitly.
      opts['register-rate'] = 1000000;
      opts['send-rate'] = 0;
      if (db) opts.store = db.uri;
      // CHATD_TEST_IO=epoll|uring: every chatd of the run on that I/O backend
      if (TEST_IO) opts.io = TEST_IO;
    }
    Object.assign(opts, options);
    const argv = ['--listen', `${HOST}:${port}`];
    for (const [k, v] of Object.entries(opts)) {
      if (v === undefined || v === null) continue;
      argv.push(`--${k}`, String(v));
    }
    argv.push(...args);
    try {
      const srv = await launch({ port, argv, env: childEnv(env), base, dataDir, webRoot, db, tls: !!tls, ca: suiteCa });
      // RawConn and friends connect by port: they look the CA up there.
      if (suiteCa) setTlsPort(port, suiteCa);
      return srv;
    } catch (e) {
      lastErr = e;
      // Retry only when the port was taken between freePort() and bind().
      if (!/in use|EADDRINUSE/i.test(String(e.stderr || e.message))) break;
    }
  }
  await fsp.rm(base, { recursive: true, force: true });
  if (db) await forgetDb(db);
  throw lastErr;
}

async function forgetDb(db) {
  await dropDb(db.name).catch((e) => console.error(`# could not drop test database ${db.name}: ${e.message}`));
  liveDbs.delete(db.name);
}

/**
 * GET /healthz: with fetch, or over https when the server was given --tls-cert
 * (the certificate is the test's own, so it is not verified here: this only
 * asks whether the server is up). Resolves with the status, or rejects.
 */
function probeHealthz(srv, timeoutMs) {
  if (!srv.tls) {
    return fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(timeoutMs) }).then((r) =>
      r.arrayBuffer().then(() => r.status),
    );
  }
  return new Promise((resolve, reject) => {
    const req = https.get(`${srv.url}/healthz`, { rejectUnauthorized: false, timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function launch({ port, argv, env, base, dataDir, webRoot, db, tls: tlsWanted, ca }) {
  if (!fs.existsSync(CHATD_BIN)) {
    throw new Error(`chatd binary not found at ${CHATD_BIN} (build it: cmake -S . -B build && cmake --build build)`);
  }
  const child = spawn(CHATD_BIN, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let stderr = '';
  let stdout = '';
  child.stderr.setEncoding('utf8');
  child.stdout.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.CHATD_TEST_VERBOSE) process.stderr.write(`[chatd:${port}] ${d}`);
  });
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  let exitInfo = null;
  exited.then((x) => {
    exitInfo = x;
  });
  child.on('error', () => {});

  const tls = tlsWanted || argv.includes('--tls-cert');
  const srv = {
    port,
    host: HOST,
    tls,
    /** The CA that signed the server's certificate when the harness gave it one (CHATD_TEST_TLS), else null. */
    ca,
    argv,
    base,
    dataDir,
    webRoot,
    /** 'sqlite', or the PostgreSQL URI of this server's own database (see lib/pg.mjs). */
    store: db ? db.uri : 'sqlite',
    db,
    pid: child.pid,
    child,
    url: `${tls ? 'https' : 'http'}://${HOST}:${port}`,
    wsUrl: (p = '/ws') => `${tls ? 'wss' : 'ws'}://${HOST}:${port}${p}`,
    stderr: () => stderr,
    stdout: () => stdout,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    /** Sends a signal to the server's PID (an exit after it is expected). */
    signal(sig) {
      srv.exitExpected = true;
      if (!exitInfo) process.kill(child.pid, sig);
    },
    exitExpected: false,
    /** Stops the server: SIGTERM, then SIGKILL after graceMs. Returns {code, signal}. */
    async stop(graceMs = 5000) {
      // Died before we asked it to stop? The exit event may lag behind the
      // connection resets a crash causes, so probe it first.
      if (!exitInfo && !srv.exitExpected) {
        const alive = await probeHealthz(srv, 500)
          .then(() => true)
          .catch(() => false);
        if (!alive) await Promise.race([exited, sleep(1000)]);
      }
      const crashed = CRASH_RE.test(stderr);
      let diedEarly = exitInfo && !srv.exitExpected ? exitInfo : null;
      if (!exitInfo) {
        await terminate(child.pid, exited, graceMs);
      }
      if (ca) setTlsPort(port, null);
      if (crashed && !srv.exitExpected) diedEarly = exitInfo;
      await fsp.rm(base, { recursive: true, force: true }).catch(() => {});
      if (db) await forgetDb(db);
      checkSanitizers(stderr, port);
      if (diedEarly) {
        console.error(`# chatd on port ${port} died during the tests (exit code ${diedEarly.code}, signal ${diedEarly.signal}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
        throw new Error(
          `chatd on port ${port} died during the tests (exit code ${diedEarly.code}, signal ${diedEarly.signal}); ` +
            `args: ${argv.join(' ')}\nstderr tail:\n${stderr.slice(-2000)}`,
        );
      }
      return exitInfo;
    },
  };

  // Wait for /healthz.
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exitInfo) {
      const e = new Error(
        `chatd exited during start-up (code ${exitInfo.code}, signal ${exitInfo.signal}); args: ${argv.join(' ')}\nstderr:\n${stderr}`,
      );
      e.stderr = stderr;
      throw e;
    }
    try {
      if ((await probeHealthz(srv, 1000)) === 200) return srv;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await exited;
      const e = new Error(`chatd did not answer GET /healthz with 200 within 10 s; args: ${argv.join(' ')}\nstderr:\n${stderr}`);
      e.stderr = stderr;
      throw e;
    }
    await sleep(25);
  }
}

const CRASH_RE = /Assertion .* failed|Segmentation fault|ERROR: AddressSanitizer|runtime error:/;

/** Throws when the server's stderr shows a sanitizer report (ASan/UBSan builds). */
export function checkSanitizers(stderr, port) {
  const m = /(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:)[^\n]*/.exec(stderr);
  if (m) throw new Error(`chatd on port ${port} reported a sanitizer error: ${m[0]}\n${stderr.slice(-4000)}`);
}

/**
 * Starts a server for the current test file (or suite) and stops it after.
 * Usage: const srv = await withServer(after, {options: {...}}).
 */
export async function withServer(afterHook, cfg) {
  const srv = await startServer(cfg);
  afterHook(async () => {
    await srv.stop();
  });
  return srv;
}

/**
 * Runs fn(i) for i < n, starting each spacingMs after the previous one, and
 * resolves with all results. Timeouts measured on connections started at
 * different phases of a second catch a server whose timers fire early.
 */
export function staggered(n, spacingMs, fn) {
  return Promise.all(Array.from({ length: n }, (_, i) => sleep(i * spacingMs).then(() => fn(i))));
}

/** Polls fn until it returns a truthy value or timeoutMs passes; returns the last value. */
export async function waitFor(fn, { timeoutMs = 3000, intervalMs = 25 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let v;
  for (;;) {
    v = await fn();
    if (v) return v;
    if (Date.now() > deadline) return v;
    await sleep(intervalMs);
  }
}
