// Idle memory per WebSocket connection of a running chatd, plain or TLS:
// opens --warm connections (so lazily allocated tables and library pages are
// in place), reads the server's RSS and RssAnon from /proc, opens --n more
// idle connections, waits, reads again, and prints the deltas per connection.
//
//   node bench/idle_mem.mjs --pid PID --url ws://127.0.0.1:8080/ws --n 2000
//   node bench/idle_mem.mjs --pid PID --url wss://127.0.0.1:8443/ws --ca ca.pem --n 2000
//   node bench/idle_mem.mjs --pid PID --url ws://127.0.0.1:8080/ws --deflate --n 2000
//
// --deflate offers permessage-deflate as the ws client does by default
// (client_max_window_bits); the result says whether the server took it.
//
// Uses the npm ws client of tests/integration (run npm ci there first).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const WebSocket = createRequire(path.join(here, '..', 'tests', 'integration', 'package.json'))('ws');

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .join(' ')
    .split('--')
    .filter(Boolean)
    .map((a) => a.trim().split(/\s+/)),
);
const pid = Number(args.pid);
const url = args.url;
const n = Number(args.n || 2000);
const warm = Number(args.warm || 100);
const ca = args.ca ? fs.readFileSync(args.ca) : undefined;
const deflate = 'deflate' in args;
let agreed = 0;
if (!pid || !url) {
  console.error('usage: node bench/idle_mem.mjs --pid PID --url ws[s]://HOST:PORT/ws [--ca ca.pem] [--n 2000] [--warm 100]');
  process.exit(2);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mem() {
  const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)[1]);
  return { rss: kb('VmRSS') * 1024, anon: kb('RssAnon') * 1024 };
}

function open() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca, perMessageDeflate: deflate });
    ws.once('message', () => {
      // the init message: the server is done with it
      if (/permessage-deflate/.test(ws.extensions)) agreed++;
      resolve(ws);
    });
    ws.once('error', reject);
  });
}

async function openMany(count) {
  const out = [];
  for (let i = 0; i < count; i += 50) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(50, count - i) }, open))));
  }
  return out;
}

const held = await openMany(warm);
await sleep(1000);
const before = mem();
held.push(...(await openMany(n)));
await sleep(2000);
const after = mem();
const per = (k) => Math.round((after[k] - before[k]) / n);
console.log(
  JSON.stringify({
    url,
    n,
    deflate_offered: deflate,
    deflate_agreed: agreed,
    rss_before: before.rss,
    rss_after: after.rss,
    rss_per_conn: per('rss'),
    anon_per_conn: per('anon'),
  }),
);
for (const ws of held) ws.terminate();
await sleep(200);
process.exit(0);
