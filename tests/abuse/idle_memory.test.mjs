// Guard: an idle WebSocket costs chatd at most IDLE_BOUND bytes of user-space
// memory (issue #14: <= 300 B), with either I/O backend (--io). Opens WARM
// connections (so lazily grown tables, library pages and io_uring's fixed
// pool of 256 receive buffers, whose first pages the kernel fills in turn,
// are in place), reads chatd's RssAnon, opens N more idle WebSockets, waits,
// reads again: the delta over N is the cost of one. Measured 202-213 B
// per connection; the libuv-handle core before issue 14 measured 407 B and
// fails this bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { startServer, HOST, REPO_ROOT, sleep } from '../integration/lib/server.mjs';

// the integration tests' ws client (this directory has no packages of its own)
const WebSocket = createRequire(`${REPO_ROOT}/tests/integration/package.json`)('ws');

const WARM = 1200;
const N = 5000;
const IDLE_BOUND = 300;


function rssAnon(pid) {
  const m = /RssAnon:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

/** Opens n WebSockets, at most 200 handshakes at once. */
async function openMany(srv, n, into) {
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

for (const io of ['uring', 'epoll']) {
  test(`--io ${io}: an idle WebSocket costs at most ${IDLE_BOUND} bytes of chatd's memory (${N} connections)`, async () => {
    const srv = await startServer({ options: { 'max-conns-per-ip': 0, io } });
    const socks = [];
    try {
      const h0 = await (await fetch(`http://${HOST}:${srv.port}/healthz`)).json();
      assert.equal(h0.data.io, io === 'uring' ? 'io_uring' : 'epoll', 'the backend asked for');
      await openMany(srv, WARM, socks);
      await sleep(500);
      const before = rssAnon(srv.pid);
      await openMany(srv, N, socks);
      await sleep(1000);
      const h = await (await fetch(`http://${HOST}:${srv.port}/healthz`)).json();
      // + this request's connection, and the first request's if fetch kept it
      const open = h.data.connections - WARM - N;
      assert.ok(open >= 1 && open <= 2, `every socket is open on chatd (${h.data.connections})`);
      const per = (rssAnon(srv.pid) - before) / N;
      console.log(`--io ${io}: an idle WebSocket costs ${per.toFixed(0)} B of RssAnon (over ${N})`);
      assert.ok(per <= IDLE_BOUND, `${per.toFixed(0)} B per idle connection > ${IDLE_BOUND}`);
    } finally {
      for (const ws of socks) ws.terminate();
      await srv.stop();
    }
  });
}
