// Starts the real build/chatd for the browser tests: a free 127.0.0.1 port, a
// temp --data-dir, the repo's web/ as --web-root and its SDK (clients/js/src, which the
// page imports from /sdk/) as --sdk-root. Stops it by PID. restart()
// stops it (SIGTERM) and starts it again on the same port and data dir.
// With CHATD_TEST_STORE=<postgres URI> (as in the integration harness) each
// chatd gets a fresh database of its own as --store, dropped at stop().
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ON_PG, createDb, dropDb, dropDbSync } from '../../integration/lib/pg.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
export const CHATD_BIN = process.env.CHATD_BIN || path.join(REPO_ROOT, 'build', 'chatd');
export const WEB_ROOT = path.join(REPO_ROOT, 'web');
export const SDK_ROOT = path.join(REPO_ROOT, 'clients', 'js', 'src');
export const HOST = '127.0.0.1';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const live = new Set();
const liveDbs = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  for (const db of liveDbs) dropDbSync(db);
});

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

function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CHATD_')) env[k] = v;
  return env;
}

async function spawnChatd(port, dataDir, extraArgs) {
  if (!fs.existsSync(CHATD_BIN)) throw new Error(`chatd not found at ${CHATD_BIN}: build it first (scripts/build.sh)`);
  // --send-rate 0: tests seed conversations over HTTP faster than anyone types.
  const argv = ['--listen', `${HOST}:${port}`, '--data-dir', dataDir, '--web-root', WEB_ROOT, '--sdk-root', SDK_ROOT, '--log-level', 'warn', '--send-rate', '0', ...extraArgs];
  const child = spawn(CHATD_BIN, argv, { env: childEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
    if (process.env.CHATD_TEST_VERBOSE) process.stderr.write(`[chatd:${port}] ${d}`);
  });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      live.delete(child);
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  child.on('error', () => {});
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exitInfo) {
      const e = new Error(`chatd exited at start-up (${JSON.stringify(exitInfo)}): ${argv.join(' ')}\n${stderr}`);
      e.stderr = stderr;
      throw e;
    }
    try {
      const r = await fetch(`http://${HOST}:${port}/healthz`, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      throw new Error(`chatd did not answer /healthz within 10 s: ${argv.join(' ')}\n${stderr}`);
    }
    await sleep(25);
  }
  return { child, exited, stderr: () => stderr, get exitInfo() { return exitInfo; } };
}

async function stopChild(proc, graceMs = 5000) {
  if (!proc || proc.exitInfo) return proc && proc.exitInfo;
  try {
    process.kill(proc.child.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  const t = setTimeout(() => {
    try {
      process.kill(proc.child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  const info = await proc.exited;
  clearTimeout(t);
  return info;
}

/**
 * Starts chatd. Returns {url, port, dataDir, api(), stop(), restart(), kill(), start()}.
 * @param {string[]} [extraArgs]
 */
export async function startChatd(extraArgs = []) {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'chatd-browser-'));
  const dataDir = path.join(base, 'data');
  await fsp.mkdir(dataDir);
  let db = null;
  if (ON_PG) {
    db = await createDb();
    liveDbs.add(db.name);
    extraArgs = ['--store', db.uri, ...extraArgs];
  }
  const dropOwnDb = async () => {
    if (!db) return;
    await dropDb(db.name).catch((e) => console.error(`# could not drop test database ${db.name}: ${e.message}`));
    liveDbs.delete(db.name);
    db = null;
  };
  let proc = null;
  let port = 0;
  let lastErr;
  for (let attempt = 0; attempt < 4 && !proc; attempt++) {
    port = await freePort();
    try {
      proc = await spawnChatd(port, dataDir, extraArgs);
    } catch (e) {
      lastErr = e;
      if (!/in use|EADDRINUSE/i.test(String(e.stderr || e.message))) break;
    }
  }
  if (!proc) {
    await fsp.rm(base, { recursive: true, force: true });
    await dropOwnDb();
    throw lastErr;
  }
  let stderrLog = '';
  const srv = {
    port,
    dataDir,
    url: `http://${HOST}:${port}`,
    get pid() {
      return proc ? proc.child.pid : 0;
    },
    stderr: () => stderrLog + (proc ? proc.stderr() : ''),
    /** SIGTERM (SIGKILL after 5 s) and wait for the exit; the data dir stays. */
    async halt() {
      const info = await stopChild(proc);
      if (proc) stderrLog += proc.stderr();
      proc = null;
      return info;
    },
    /** Starts again on the same port and data dir. */
    async start() {
      if (proc) return;
      let err;
      for (let i = 0; i < 20; i++) {
        try {
          proc = await spawnChatd(port, dataDir, extraArgs);
          return;
        } catch (e) {
          err = e;
          if (!/in use|EADDRINUSE/i.test(String(e.stderr || e.message))) break;
          await sleep(100);
        }
      }
      throw err;
    },
    async restart() {
      await srv.halt();
      await srv.start();
    },
    async stop() {
      await srv.halt();
      await fsp.rm(base, { recursive: true, force: true }).catch(() => {});
      await dropOwnDb();
    },
  };
  return srv;
}

/** A tiny client of the chat service for test set-up and checks. */
export function apiClient(baseUrl, token = null) {
  const call = async (method, p, body) => {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(baseUrl + p, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const json = await r.json();
    if (!json.status) {
      const e = new Error(`${method} ${p}: ${r.status} ${json.msg}`);
      e.status = r.status;
      throw e;
    }
    return json.data;
  };
  return {
    get: (p) => call('GET', p),
    post: (p, body = {}) => call('POST', p, body),
    async register(username, password = 'password1') {
      const d = await call('POST', '/user/register', { username, password });
      return { ...d, api: apiClient(baseUrl, d.token) };
    },
    async login(username, password = 'password1') {
      const d = await call('POST', '/user/login', { username, password });
      return { ...d, api: apiClient(baseUrl, d.token) };
    },
  };
}
