// PostgreSQL stopped for 5 s in the middle of a steady send load (issue 8),
// on a PostgreSQL instance of this test's own (scripts/postgres.sh with its
// own CHATD_PG_DIR), so stopping it disturbs no other test. Four users send
// all the time, two over sockets and two over HTTP; after 1.5 s the server is
// stopped (pg_ctl stop -m fast), 5 s later started again. Asserts: every send
// was answered, either acknowledged or refused with store_unavailable (HTTP
// 503, socket error frame with the client_msg_id); /healthz stayed 200 and
// said "store":"unavailable" meanwhile and "ok" before and after; every
// channel (the same sockets: chatd was not restarted) gets acknowledgements
// again after the restart; every acknowledged message is in the database
// exactly once, as acknowledged; and a retry of each refused send with its
// client_msg_id stores it exactly once (a COMMIT whose answer was lost may
// have stored it already: the retry then answers with that message).
//
// Needs CHATD_TEST_STORE=<postgres URI> (the PostgreSQL stages of
// scripts/test.sh); skipped on SQLite.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { ON_PG, REPO_ROOT, pgOnly, sleep, startServer, waitFor } from './lib/server.mjs';
import { registerAll, uname } from './lib/chat.mjs';
import { Channel, assertGapless, syncToEnd } from './lib/multinode.mjs';
import { rows } from './lib/pg.mjs';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';
const BEFORE_MS = 1500;
const DOWN_MS = 5000;
const AFTER_MS = 2000;

const pgDir = path.join(os.tmpdir(), `chatd-pg-outage-${crypto.randomBytes(4).toString('hex')}`);
const asOwner = (cmd, args) => (process.getuid() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]);
const pgctl = (...args) => run(...asOwner(`${PG_BIN}/pg_ctl`, ['-D', path.join(pgDir, 'data'), ...args]), { timeout: 60000 });
const postgresSh = (cmd) => run(path.join(REPO_ROOT, 'scripts', 'postgres.sh'), [cmd], { env: { ...process.env, CHATD_PG_DIR: pgDir }, timeout: 180000 });

let srv = null;
let uri = null;
async function cleanUp() {
  if (srv) await srv.stop();
  srv = null;
  if (ON_PG && fs.existsSync(pgDir)) await postgresSh('stop').catch((e) => console.error(`# postgres.sh stop: ${e.message}`));
}
// Whatever happens to this file (a failed start, a crash), its cluster is stopped.
process.on('exit', () => {
  if (ON_PG && fs.existsSync(pgDir)) spawnSync(path.join(REPO_ROOT, 'scripts', 'postgres.sh'), ['stop'], { env: { ...process.env, CHATD_PG_DIR: pgDir }, stdio: 'ignore', timeout: 60000 });
});
after(cleanUp);
if (ON_PG) {
  try {
    uri = (await postgresSh('start')).stdout.trim().split('\n').pop();
    srv = await startServer({ options: { store: uri, 'login-rate': 1000, 'page-limit': 1000 } });
  } catch (e) {
    await cleanUp();
    throw e;
  }
}

test('PostgreSQL stopped for 5 s under a steady send load: acks exactly once, refusals are 503 store_unavailable, load resumes', pgOnly(), async (t) => {
  const users = await registerAll(srv, [uname('oa'), uname('ob'), uname('oc'), uname('od')]);
  const chans = await Promise.all(users.map((u, i) => Channel.open(i < 2 ? 'ws' : 'http', srv, u, t)));
  const outcomes = [];
  let stopping = false;
  const pumps = chans.map(async (ch, i) => {
    const from = users[i];
    for (let n = 0; !stopping; n++) {
      const to = users[(i + 1 + (n % 3)) % users.length];
      const message = { to_id: to.id, type: 'text', data: `load ${n} from ${from.username}`, client_msg_id: `o${i}-${n}` };
      const r = await ch.send(message);
      outcomes.push({ i, from, message, ...r, channel: ch.name });
      if (!r.ok) await sleep(50); // refused fast while PostgreSQL is down: do not spin
    }
  });

  // /healthz every 100 ms: always 200, its store field tells the store's state.
  const health = [];
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const at = performance.now();
      try {
        const r = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(2000) });
        const body = await r.json().catch(() => null);
        health.push({ at, status: r.status, store: body?.data?.store });
      } catch (e) {
        health.push({ at, status: 0, error: String(e) });
      }
      await sleep(100);
    }
  })();

  await sleep(BEFORE_MS);
  const stopAt = performance.now();
  await pgctl('-m', 'fast', '-w', 'stop');
  const stoppedAt = performance.now();
  await sleep(DOWN_MS);
  const startAt = performance.now();
  await pgctl('-l', path.join(pgDir, 'log'), '-w', '-t', '60', 'start');
  const startedAt = performance.now();
  // chatd reconnects by itself (backoff up to about 2 s): every channel acks again.
  const resumed = await waitFor(() => chans.every((ch) => outcomes.some((o) => o.channel === ch.name && o.ok && o.sentAt > startedAt)), { timeoutMs: 15000, intervalMs: 50 });
  const resumedAt = performance.now();
  await sleep(AFTER_MS);
  stopping = true;
  await Promise.all(pumps);
  polling = false;
  await poller;

  const acked = outcomes.filter((o) => o.ok);
  const refused = outcomes.filter((o) => !o.ok);
  t.diagnostic(
    `${outcomes.length} sends: ${acked.length} acked, ${refused.length} refused; pg_ctl stop took ${Math.round(stoppedAt - stopAt)} ms, ` +
      `start ${Math.round(startedAt - startAt)} ms; all channels acked again ${Math.round(resumedAt - startedAt)} ms after the start`,
  );
  assert.equal(srv.exitInfo, null, 'chatd kept running');
  assert.ok(resumed, 'every channel (the same sockets and HTTP client) got acknowledgements again after PostgreSQL came back');
  assert.ok(acked.filter((o) => o.answeredAt < stopAt).length >= 20, 'a steady load before the stop');
  assert.ok(refused.length > 0, 'sends during the outage were refused');

  // Every refusal is the documented one, for the send it answers.
  for (const o of refused) {
    const what = `${o.channel} ${o.message.client_msg_id}: ${JSON.stringify({ status: o.status, code: o.code, text: o.text, frame: o.frame })}`;
    assert.equal(o.code, 'store_unavailable', `refused as store_unavailable: ${what}`);
    if (o.status !== undefined) assert.equal(o.status, 503, `HTTP 503: ${what}`);
    if (o.frame) assert.equal(o.frame.client_msg_id, o.message.client_msg_id, `the error frame names the send: ${what}`);
  }
  // Refusals come from the outage: none before the stop, none once every channel was acked again.
  for (const o of refused) assert.ok(o.answeredAt > stopAt && o.sentAt < resumedAt, `${o.channel} ${o.message.client_msg_id} refused ${Math.round(o.answeredAt - stopAt)} ms after the stop (PostgreSQL back after ${Math.round(startedAt - stopAt)} ms, load resumed after ${Math.round(resumedAt - stopAt)} ms)`);

  // /healthz: 200 throughout; ok before, unavailable during, ok at the end.
  assert.ok(health.length > 50, `/healthz polled (${health.length} times)`);
  assert.deepEqual(health.filter((h) => h.status !== 200), [], '/healthz answers 200 throughout (it is liveness)');
  assert.ok(health.filter((h) => h.at < stopAt).every((h) => h.store === 'ok'), `store ok before the stop: ${JSON.stringify(health.slice(0, 3))}`);
  const during = health.filter((h) => h.at > stoppedAt + 500 && h.at < startAt);
  assert.ok(during.length > 0 && during.some((h) => h.store === 'unavailable'), `/healthz says unavailable while PostgreSQL is down: ${JSON.stringify(during.map((h) => h.store))}`);
  assert.equal(health[health.length - 1].store, 'ok', '/healthz says ok again at the end');

  // Every acknowledged message is stored once, as acknowledged (through the API).
  const stored = new Map();
  for (const u of users) {
    const state = {};
    await syncToEnd(srv, u, state, { limit: 1000 });
    for (const [, msgs] of state.got) {
      assertGapless(msgs, `${u.username}'s conversation`);
      for (const m of msgs) {
        const key = `${m.from_id}/${m.client_msg_id}`;
        if (stored.has(key)) assert.deepEqual(m, stored.get(key), `${key} seen the same from both sides`);
        stored.set(key, m);
      }
    }
  }
  for (const o of acked) assert.deepEqual(stored.get(`${o.from.id}/${o.message.client_msg_id}`), o.message, `acknowledged ${o.message.client_msg_id} stored as acknowledged`);
  const sentKeys = new Set(outcomes.map((o) => `${o.from.id}/${o.message.client_msg_id}`));
  for (const key of stored.keys()) assert.ok(sentKeys.has(key), `stored ${key} was sent`);
  const refusedStored = refused.filter((o) => stored.has(`${o.from.id}/${o.message.client_msg_id}`));
  t.diagnostic(`${stored.size} stored; ${refusedStored.length} refused sends had committed (answer lost with the connection)`);

  // And in the database itself: one row per (sender, client_msg_id), no more rows than that.
  const [[total, distinct]] = await rows(uri, 'SELECT count(*), count(DISTINCT (from_id, client_msg_id)) FROM messages;');
  assert.equal(Number(total), stored.size, 'rows in messages = messages synced');
  assert.equal(Number(distinct), stored.size, 'no (from_id, client_msg_id) twice in messages');

  // The client's retry of each refused send stores it exactly once.
  for (const o of refused) {
    const r = await chans[o.i].send(o.message);
    assert.ok(r.ok, `retry of ${o.message.client_msg_id}: ${JSON.stringify(r).slice(0, 300)}`);
    const before = stored.get(`${o.from.id}/${o.message.client_msg_id}`);
    if (before) assert.deepEqual(r.message, before, `retry of the committed ${o.message.client_msg_id} answers with the stored message`);
  }
  const [[total2, distinct2]] = await rows(uri, 'SELECT count(*), count(DISTINCT (from_id, client_msg_id)) FROM messages;');
  assert.equal(Number(total2), sentKeys.size, 'after the retries every sent message is stored');
  assert.equal(Number(distinct2), sentKeys.size, 'exactly once');
});
