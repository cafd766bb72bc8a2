// Harness of the cluster tests: a throw-away Redis (scripts/redis.sh, in a
// directory of this test file, so it can be stopped and started again on the
// same port), a fresh PostgreSQL database on CHATD_TEST_STORE (or on a
// PostgreSQL started here with scripts/postgres.sh when that is not set), N
// real chatd nodes on free 127.0.0.1 ports with --redis, --store and
// --node-id, and Debian's haproxy in front of them (round robin, no
// stickiness) on one more free port. Everything is stopped by PID at the end
// (and killed on any exit of the test process).
//
// A node, and the load balancer, look like the integration harness's server
// handle ({host, port, url, wsUrl(path)}), so tests/integration/lib helpers
// (req, must, register, ...) work on either.
import { execFile, spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHATD_BIN, REPO_ROOT, HOST, checkSanitizers, freePort, sleep, terminate } from '../../integration/lib/server.mjs';
import { req } from '../../integration/lib/chat.mjs';
import { createDb, dropDb, dropDbSync } from '../../integration/lib/pg.mjs';

export { CHATD_BIN, REPO_ROOT, HOST, freePort, sleep };

const SCRIPTS = path.join(REPO_ROOT, 'scripts');
export const HAPROXY = process.env.CHATD_HAPROXY || 'haproxy';

// Every process this test file started, killed on exit whatever happens.
const live = new Map(); // pid -> what
const cleanups = [];
process.on('exit', () => {
  for (const pid of live.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const f of cleanups.splice(0)) {
    try {
      f();
    } catch {
      /* best effort */
    }
  }
});

function childEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
  return { ...env, ...extra };
}

/* ---------------------------------------------------------------- PostgreSQL */

let pgBase = null;
/** The PostgreSQL base URI: CHATD_TEST_STORE, or one started here (stopped on exit). */
export async function pgBaseUri() {
  if (pgBase) return pgBase;
  const env = process.env.CHATD_TEST_STORE;
  if (env && /^postgres(ql)?:\/\//.test(env)) {
    pgBase = env;
    return pgBase;
  }
  const dir = path.join(os.tmpdir(), `chatd-cluster-pg-${process.pid}`);
  const r = spawnSync(path.join(SCRIPTS, 'postgres.sh'), ['start'], { env: { ...process.env, CHATD_PG_DIR: dir }, encoding: 'utf8', timeout: 120000 });
  if (r.status !== 0) throw new Error(`scripts/postgres.sh start failed (${r.status}): ${r.stderr}`);
  pgBase = r.stdout.trim().split('\n').pop();
  cleanups.push(() => spawnSync(path.join(SCRIPTS, 'postgres.sh'), ['stop'], { env: { ...process.env, CHATD_PG_DIR: dir }, timeout: 30000 }));
  return pgBase;
}

/* --------------------------------------------------------------------- Redis */

/** A Redis of scripts/redis.sh in its own directory. */
export class Redis {
  constructor(dir) {
    this.dir = dir;
    this.url = null;
  }

  /** Runs scripts/redis.sh (asynchronously: a test's load keeps running meanwhile). */
  run(...args) {
    return new Promise((resolve, reject) => {
      execFile(path.join(SCRIPTS, 'redis.sh'), args, { env: { ...process.env, CHATD_REDIS_DIR: this.dir }, encoding: 'utf8', timeout: 30000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`scripts/redis.sh ${args.join(' ')} failed (${err.code ?? err.signal}): ${stderr}`));
        else resolve(stdout.trim());
      });
    });
  }

  static async start(dir) {
    const r = new Redis(dir);
    cleanups.push(() => spawnSync(path.join(SCRIPTS, 'redis.sh'), ['stop'], { env: { ...process.env, CHATD_REDIS_DIR: dir }, timeout: 10000 }));
    r.url = (await r.run('start')).split('\n').pop();
    r.port = Number(new URL(r.url).port);
    return r;
  }

  /** Stops the server, keeping its port (startAgain() brings it back on the same address). */
  stopKeep() {
    return this.run('stop', '--keep');
  }

  /** Starts it again on the same port (empty: no persistence). */
  async startAgain() {
    const url = (await this.run('start')).split('\n').pop();
    assert.equal(url, this.url, 'Redis came back on the same address');
  }

  stop() {
    return this.run('stop');
  }

  /** One command over a raw RESP connection; resolves with the first reply line. */
  command(args, { timeoutMs = 5000 } = {}) {
    return respCommand(this.port, args, timeoutMs);
  }

  publish(channel, message) {
    return this.command(['PUBLISH', channel, message]);
  }
}

/** Encodes a RESP array of bulk strings (strings or Buffers). */
export function respEncode(args) {
  const parts = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** Sends one command over a fresh TCP connection, resolves with the first reply line (e.g. ":2", "+OK"). */
export function respCommand(port, args, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST);
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`redis ${args[0]}: no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    s.on('connect', () => s.write(respEncode(args)));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        clearTimeout(t);
        s.destroy();
        resolve(buf.slice(0, i));
      }
    });
  });
}

/* --------------------------------------------------------------------- chatd */

const CRASH_RE = /Assertion .* failed|Segmentation fault|ERROR: AddressSanitizer|runtime error:/;

/**
 * Starts one chatd. options: name (without --) -> value; `listen` defaults to a
 * free port. Resolves once GET /healthz answers 200.
 */
export async function startNode({ options = {}, args = [], port, label = 'chatd', waitMs = 15000 } = {}) {
  if (!fs.existsSync(CHATD_BIN)) throw new Error(`chatd binary not found at ${CHATD_BIN} (build it: scripts/build.sh)`);
  let lastErr;
  for (let attempt = 0; attempt < 4; attempt++) {
    const p = port ?? (await freePort());
    const argv = ['--listen', `${HOST}:${p}`];
    for (const [k, v] of Object.entries(options)) {
      if (v === undefined || v === null || v === false) continue;
      if (v === true) argv.push(`--${k}`);
      else argv.push(`--${k}`, String(v));
    }
    argv.push(...args);
    try {
      return await launchNode(p, argv, label, waitMs);
    } catch (e) {
      lastErr = e;
      if (port !== undefined || !/in use|EADDRINUSE/i.test(String(e.stderr || e.message))) break;
    }
  }
  throw lastErr;
}

async function launchNode(port, argv, label, waitMs) {
  const child = spawn(CHATD_BIN, argv, { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  live.set(child.pid, label);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
    if (process.env.CHATD_TEST_VERBOSE) process.stderr.write(`[${label}:${port}] ${d}`);
  });
  child.stdout.resume();
  child.on('error', () => {});
  let exitInfo = null;
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      live.delete(child.pid);
      exitInfo = { code, signal };
      resolve(exitInfo);
    }),
  );
  const node = {
    label,
    host: HOST,
    port,
    argv,
    pid: child.pid,
    url: `http://${HOST}:${port}`,
    wsUrl: (p = '/ws') => `ws://${HOST}:${port}${p}`,
    stderr: () => stderr,
    exited,
    get exitInfo() {
      return exitInfo;
    },
    exitExpected: false,
    /** SIGKILL (an expected death). */
    async kill() {
      node.exitExpected = true;
      if (!exitInfo) process.kill(child.pid, 'SIGKILL');
      await exited;
    },
    /** SIGTERM, SIGKILL after graceMs; throws if it died on its own or reported a sanitizer error. */
    async stop(graceMs = 5000) {
      const diedEarly = exitInfo && !node.exitExpected ? exitInfo : null;
      if (!exitInfo) {
        await terminate(child.pid, exited, graceMs);
      }
      checkSanitizers(stderr, port);
      if (diedEarly || (CRASH_RE.test(stderr) && !node.exitExpected)) {
        throw new Error(`${label} on port ${port} died during the test (code ${exitInfo.code}, signal ${exitInfo.signal}); args ${argv.join(' ')}\nstderr tail:\n${stderr.slice(-3000)}`);
      }
      return exitInfo;
    },
  };
  // With --node-id, up means this process answered (X-Chatd-Node): on a port
  // shared with --reuseport another process may answer the probe. Each probe
  // is a new connection, so the kernel picks again.
  const want = argv.includes('--node-id') ? argv[argv.indexOf('--node-id') + 1] : null;
  const deadline = Date.now() + waitMs;
  for (;;) {
    if (exitInfo) {
      const e = new Error(`${label} exited during start-up (code ${exitInfo.code}, signal ${exitInfo.signal}); args: ${argv.join(' ')}\nstderr:\n${stderr}`);
      e.stderr = stderr;
      throw e;
    }
    const r = await probe(port, '/healthz').catch(() => null);
    if (r && r.status === 200 && (!want || r.node === want)) return node;
    if (Date.now() > deadline) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await exited;
      const e = new Error(`${label} did not answer GET /healthz within ${waitMs} ms; args: ${argv.join(' ')}\nstderr:\n${stderr}`);
      e.stderr = stderr;
      throw e;
    }
    await sleep(25);
  }
}

/** GET on a new TCP connection (no keep-alive): {status, node (X-Chatd-Node), text}. */
export function probe(port, p, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const r = httpRequest({ host: HOST, port, path: p, agent: false, headers: { Connection: 'close' }, timeout: timeoutMs }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, node: res.headers['x-chatd-node'], text }));
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error('timeout')));
    r.on('error', reject);
    r.end();
  });
}

/* ------------------------------------------------------------------- haproxy */

/** haproxy in front of `nodes` (round robin, no stickiness) on a free port. */
export async function startHaproxy(nodes, dir) {
  let lastErr;
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freePort();
    const cfg = path.join(dir, 'haproxy.cfg');
    await fsp.writeFile(
      cfg,
      [
        'global',
        '    log stderr format raw local0 info',
        'defaults',
        '    mode http',
        '    log global',
        '    option httplog',
        '    option dontlognull',
        '    option redispatch',
        '    retries 2',
        '    timeout connect 2s',
        '    timeout client 75s',
        '    timeout server 75s',
        '    timeout http-request 10s',
        '    timeout http-keep-alive 10s',
        '    timeout client-fin 5s',
        '    timeout server-fin 5s',
        '    timeout tunnel 1h',
        'frontend public',
        `    bind ${HOST}:${port}`,
        '    default_backend chatd',
        'backend chatd',
        '    balance roundrobin',
        '    option httpchk GET /healthz',
        '    http-check expect status 200',
        '    default-server check inter 1s fastinter 300ms downinter 1s fall 2 rise 1',
        ...nodes.map((n, i) => `    server ${n.nodeId || `n${i + 1}`} ${HOST}:${n.port}`),
        '',
      ].join('\n'),
    );
    const child = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    live.set(child.pid, 'haproxy');
    let log = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (log += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (log += d));
    child.on('error', (e) => (log += `spawn: ${e.message}`));
    let exitInfo = null;
    const exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        live.delete(child.pid);
        exitInfo = { code, signal };
        resolve(exitInfo);
      }),
    );
    const lb = {
      label: 'haproxy',
      host: HOST,
      port,
      pid: child.pid,
      url: `http://${HOST}:${port}`,
      wsUrl: (p = '/ws') => `ws://${HOST}:${port}${p}`,
      log: () => log,
      async stop() {
        if (!exitInfo) {
          await terminate(child.pid, exited, 3000);
        }
      },
    };
    const deadline = Date.now() + 10000;
    let up = false;
    while (Date.now() < deadline && !exitInfo) {
      try {
        const r = await fetch(`${lb.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        await r.arrayBuffer();
        if (r.status === 200) {
          up = true;
          break;
        }
      } catch {
        /* not up yet */
      }
      await sleep(25);
    }
    if (up) return lb;
    await lb.stop();
    lastErr = new Error(`haproxy did not come up on port ${port}: ${log}`);
    if (!/cannot bind|Address already in use/i.test(log)) break;
  }
  throw lastErr;
}

/* ------------------------------------------------------------------- cluster */

export const SECRET = 'cluster-test-secret';

/** Options every node gets (tests sign up many users and send bursts from one address). */
export const NODE_DEFAULTS = {
  'register-rate': 1000000,
  'login-rate': 100000,
  'send-rate': 0,
  'event-rate': 0,
  'bind-rate': 100000,
  'api-secret': SECRET,
  'page-limit': 500,
  'log-level': 'info',
};

/**
 * Starts Redis, a fresh database, `n` nodes (node1..nodeN) and haproxy.
 * Registers its stop with afterHook (node:test's after). Returns
 * {redis, db, nodes, lb, stop(), ...}.
 */
export async function startCluster(afterHook, { n = 3, nodeOptions = {}, haproxy = true, perNode = () => ({}) } = {}) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-cl-'));
  const base = await pgBaseUri();
  const c = { dir, nodes: [], lb: null, redis: null, db: null, stopped: false };
  c.stop = async () => {
    if (c.stopped) return;
    c.stopped = true;
    const errors = [];
    if (c.lb) await c.lb.stop();
    for (const node of c.nodes) {
      try {
        await node.stop();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const extra of c.extraNodes ?? []) {
      try {
        await extra.stop();
      } catch (e) {
        errors.push(e);
      }
    }
    // anything else this file started (a node a test forgot): killed, so the file can end
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (c.redis) await c.redis.stop().catch((e) => errors.push(e));
    if (c.db) await dropDb(c.db.name, base).catch((e) => errors.push(e));
    await fsp.rm(dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
  };
  afterHook(() => c.stop());
  // A setup that fails (a broken build, a port race) stops what it started
  // before the error goes up: the file's after hooks never run when its
  // top-level await throws, and nodes left running would slow every later test.
  try {
    c.redis = await Redis.start(path.join(dir, 'redis'));
    c.db = await createDb(base);
    cleanups.push(() => dropDbSync(c.db.name, base));
    c.options = (i) => ({
      ...NODE_DEFAULTS,
      'web-root': path.join(REPO_ROOT, 'web'),
      'sdk-root': path.join(REPO_ROOT, 'clients', 'js', 'src'),
      'data-dir': path.join(dir, `node${i + 1}`),
      store: c.db.uri,
      redis: c.redis.url,
      'node-id': `node${i + 1}`,
      ...nodeOptions,
      ...perNode(i),
    });
    for (let i = 0; i < n; i++) {
      await fsp.mkdir(path.join(dir, `node${i + 1}`), { recursive: true });
      const node = await startNode({ options: c.options(i), label: `node${i + 1}` });
      node.nodeId = `node${i + 1}`;
      c.nodes.push(node);
    }
    // Every node sees the others before a test starts.
    await waitUntil(async () => {
      const hs = await Promise.all(c.nodes.map((x) => healthz(x)));
      return hs.every((h) => h.cluster && h.cluster.redis === 'up' && h.cluster.nodes === n);
    }, { timeoutMs: 10000, what: `all ${n} nodes see ${n} live nodes and redis up` });
    for (const node of c.nodes) node.tag = (await healthz(node)).cluster.tag;
    if (haproxy) c.lb = await startHaproxy(c.nodes, dir);
  } catch (e) {
    await c.stop().catch(() => {});
    throw e;
  }
  c.byTag = (tag) => c.nodes.find((x) => x.tag === tag);
  c.nodeOf = (clientId) => c.byTag(String(clientId).slice(0, 2));
  return c;
}

/** GET /healthz data (throws on anything but 200). */
export async function healthz(node, timeoutMs = 3000) {
  const r = await fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`${node.url}/healthz -> ${r.status} ${JSON.stringify(body)}`);
  return body.data;
}

/** Polls fn until it returns a truthy value; throws (naming `what` and the last value) after timeoutMs. */
export async function waitUntil(fn, { timeoutMs = 5000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value ${JSON.stringify(last)}${lastErr ? `; last error ${lastErr.message}` : ''}`);
    await sleep(intervalMs);
  }
}

/* ------------------------------------------------------------ HTTP, gateway */

/** One HTTP request (the integration harness's req); returns {status, node (X-Chatd-Node), headers, body, text}. */
export async function http(srv, method, p, { token, body, headers = {}, timeoutMs = 10000 } = {}) {
  const r = await req(srv, method, p, { token, body, headers, timeoutMs });
  return { ...r, node: r.headers.get('x-chatd-node') };
}

/** A call that must succeed (200, status true); returns data. */
export async function must(srv, method, p, opts = {}) {
  const r = await http(srv, method, p, opts);
  if (r.status !== 200 || !r.body || r.body.status !== true) {
    throw new Error(`${method} ${srv.label ?? srv.url}${p} ${JSON.stringify(opts.body ?? '').slice(0, 300)} -> HTTP ${r.status} ${r.text.slice(0, 300)}`);
  }
  return r.body.data;
}

/** POST /gateway/<method> on node that must succeed; returns data. */
export function gw(node, method, body = {}) {
  return must(node, 'POST', `/gateway/${method}`, { token: SECRET, body });
}

let seq = 0;
export function uname(prefix) {
  return `${prefix}${++seq}${crypto.randomBytes(3).toString('hex')}`.slice(0, 32);
}

export async function register(srv, username) {
  const password = `pw-${username}`;
  const d = await must(srv, 'POST', '/user/register', { body: { username, password } });
  return { ...d.user, token: d.token, password };
}

export async function login(srv, user) {
  const d = await must(srv, 'POST', '/user/login', { body: { username: user.username, password: user.password } });
  return d.token;
}
