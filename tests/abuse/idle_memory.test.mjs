// Guard: an idle WebSocket costs chatd at most IDLE_BOUND bytes of user-space
// memory (issue #14: <= 300 B). Opens WARM connections (so lazily grown tables
// and library pages are in place), reads chatd's RssAnon, opens N more idle
// WebSockets, waits, reads again: the delta over N is the cost of one.
// Measured on the epoll core: 197 B anon per connection at 19,000
// (chatd-bench conns), about 200 here; the libuv-handle core it replaced
// measured 422 B and fails this bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { startServer, HOST, REPO_ROOT, sleep } from '../integration/lib/server.mjs';

// the integration tests' ws client (this directory has no packages of its own)
const WebSocket = createRequire(`${REPO_ROOT}/tests/integration/package.json`)('ws');

const WARM = 200;
const N = 5000;
const IDLE_BOUND = 300;

const srv = await startServer({ options: { 'max-conns-per-ip': 0 } });
after(() => srv.stop());

function rssAnon(pid) {
  const m = /RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

/** Opens n WebSockets, at most 200 handshakes at once. */
async function openMany(n, into) {
  let next = 0;
  const one = () =>
    new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${HOST}:${srv.port}/ws`, { perMessageDeflate: false });
      ws.on('message', () => {}); // the greeting: read, then idle
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  const worker = async () => {
    while (next < n) {
      next++;
      into.push(await one());
    }
  };
  await Promise.all(Array.from({ length: 200 }, worker));
}

test(`an idle WebSocket costs at most ${IDLE_BOUND} bytes of chatd's memory (${N} connections)`, async () => {
  const socks = [];
  try {
    await openMany(WARM, socks);
    await sleep(500);
    const before = rssAnon(srv.pid);
    await openMany(N, socks);
    await sleep(1000);
    const h = await (await fetch(`http://${HOST}:${srv.port}/healthz`)).json();
    assert.equal(h.data.connections, WARM + N + 1, 'every socket is open on chatd (+1: this request)');
    const per = (rssAnon(srv.pid) - before) / N;
    console.log(`idle WebSocket: ${per.toFixed(0)} B of RssAnon each over ${N} (io ${h.data.io})`);
    assert.ok(per <= IDLE_BOUND, `${per.toFixed(0)} B per idle connection > ${IDLE_BOUND}`);
  } finally {
    for (const ws of socks) ws.terminate();
  }
});
