// Attack: presence churn (issue 11, "a user with 1,000 contacts reconnecting
// twice a second must not melt the server"). One user shares a 1:1
// conversation with 1,000 users, 50 of whom are online, and drops and
// reopens their socket twice a second for 10 s. A reconnect inside the grace
// (--presence-grace) changes nothing for anyone, so it costs no peer read and
// no push: each online peer is told "online" once, and "offline" once after
// the last socket closed and the grace passed. Bounded: the server's CPU time
// over the churn, a victim's ping latency, RSS growth, and the pushes.
//
// The same churn by a member of a group of 500 (issue 11: fellow group
// members are told of presence too) who shares no 1:1 conversation with
// anyone: the 50 members online are told "online" once and "offline" once,
// and the server's CPU and a victim's latency stay bounded.
//
// The 1,000 users come from HS256 JWTs (--jwt-secret: created on first sight,
// no argon2id per user), so the setup takes seconds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import { startServer } from '../integration/lib/server.mjs';
import { ChatSocket, mintJwt, must } from '../integration/lib/chat.mjs';
import { fmt, rssBytes, sleep, startVictim } from './lib/victim.mjs';

const PEERS = 1000;
const ONLINE = 50;
const CHURN_MS = 10000;
const RECONNECT_MS = 500; // twice a second
const GRACE = 1500;
const CPU_BOUND_S = 3; // of the 10 s: the reconnects themselves (20 binds) cost far less
const RSS_BOUND = 32 * 2 ** 20;

const SECRET = 'presence-churn-' + crypto.randomBytes(8).toString('hex');
let srv; // the scenario's server

const tag = crypto.randomBytes(3).toString('hex');
const nowS = () => Math.floor(Date.now() / 1000);
const jwtFor = (sub) => mintJwt({ sub, username: sub, exp: nowS() + 600, iat: nowS() }, SECRET);

/** A JWT user, created on first sight by GET /user/me. */
async function jwtUser(sub) {
  const token = jwtFor(sub);
  const me = await must(srv, 'GET', '/user/me', { token, timeoutMs: 15000 });
  return { ...me, token };
}

/** Runs fn over items, `width` at a time. */
async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i], i);
      }
    }),
  );
  return out;
}

/** utime + stime of pid in seconds, from /proc/<pid>/stat. */
async function cpuSeconds(pid) {
  const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return (Number(f[11]) + Number(f[12])) / 100; // fields 14 and 15, in clock ticks (USER_HZ 100)
}

const presenceOf = (frames, uid) => frames.filter((m) => m.type === 'presence' && m.uid === uid);

/** The user, their PEERS peers (1:1 conversations), ONLINE of them bound and watching presence. */
async function setup() {
  const t0 = Date.now();
  const user = await jwtUser(`churn-${tag}`);
  const peers = await pool(
    Array.from({ length: PEERS }, (_, i) => `p${i}-${tag}`),
    25,
    (sub) => jwtUser(sub),
  );
  await pool(peers, 25, (p) =>
    must(srv, 'POST', '/chat/send', { token: user.token, body: { to_id: p.id, type: 'text', data: 'hi' }, timeoutMs: 15000 }),
  );
  const list = await must(srv, 'GET', '/chat/list', { token: user.token });
  assert.equal(list.length, PEERS, `${PEERS} conversations`);
  const watchers = await pool(peers.slice(0, ONLINE), 10, async (p) => (await ChatSocket.bound(srv, p)).watchPresence());
  console.log(`# setup: ${PEERS} users, ${PEERS} conversations, ${ONLINE} peers online in ${Date.now() - t0} ms`);
  return { user, watchers };
}

const GROUP_MEMBERS = 500; // the default --max-group-members

/** The user and GROUP_MEMBERS - 1 others in one group it created (no 1:1 conversation), ONLINE of them bound and watching presence. */
async function setupGroup() {
  const t0 = Date.now();
  const user = await jwtUser(`gchurn-${tag}`);
  const members = await pool(
    Array.from({ length: GROUP_MEMBERS - 1 }, (_, i) => `gm${i}-${tag}`),
    25,
    (sub) => jwtUser(sub),
  );
  const g = await must(srv, 'POST', '/group/create', { token: user.token, body: { name: 'churn', members: members.map((m) => m.id) }, timeoutMs: 15000 });
  assert.equal(g.group.member_count, GROUP_MEMBERS);
  const list = await must(srv, 'GET', '/chat/list', { token: user.token });
  assert.deepEqual(list.map((c) => c.chat_type), ['group'], 'the group is the user\'s only conversation');
  const watchers = await pool(members.slice(0, ONLINE), 10, async (p) => (await ChatSocket.bound(srv, p)).watchPresence());
  console.log(`# setup: a group of ${GROUP_MEMBERS}, ${ONLINE} members online in ${Date.now() - t0} ms`);
  return { user, watchers };
}

/**
 * Reconnects the user every RECONNECT_MS for churnMs (each cycle drops the
 * socket and opens another, a reload; every other cycle the new one is
 * opened first, a second tab and then the first closes) beside a victim.
 * Returns the socket left open and the measures.
 */
async function churn(user, churnMs) {
  const victim = await startVictim(srv);
  await sleep(300);
  const calm = victim.snapshot();
  const rss0 = await rssBytes(srv.pid);
  let rssMax = rss0;
  const cpu0 = await cpuSeconds(srv.pid);

  let sock = await ChatSocket.bound(srv, user);
  let reconnects = 0;
  const end = Date.now() + churnMs;
  while (Date.now() < end) {
    const cycle = Date.now();
    if (reconnects % 2 === 0) {
      sock.terminate();
      sock = await ChatSocket.bound(srv, user);
    } else {
      const next = await ChatSocket.bound(srv, user);
      sock.terminate();
      sock = next;
    }
    reconnects++;
    rssMax = Math.max(rssMax, await rssBytes(srv.pid));
    await sleep(Math.max(0, RECONNECT_MS - (Date.now() - cycle)));
  }
  const cpu = (await cpuSeconds(srv.pid)) - cpu0;
  const during = await victim.stop();
  rssMax = Math.max(rssMax, await rssBytes(srv.pid));
  console.log(fmt('victim ping, calm', calm));
  console.log(fmt(`victim ping, during ${reconnects} reconnects`, during));
  console.log(`# server CPU ${cpu.toFixed(2)} s over ${churnMs / 1000} s; RSS ${(rss0 / 2 ** 20).toFixed(1)} MB -> at most ${(rssMax / 2 ** 20).toFixed(1)} MB`);
  assert.ok(reconnects >= (churnMs / RECONNECT_MS) * 0.8, `the churn ran (${reconnects} reconnects)`);
  assert.ok(cpu < CPU_BOUND_S * (churnMs / CHURN_MS), `server CPU ${cpu.toFixed(2)} s over the churn (bound ${CPU_BOUND_S * (churnMs / CHURN_MS)} s)`);
  assert.ok(during.n > 100, `the victim kept pinging (${during.n})`);
  assert.ok(during.p99 < Math.max(50, calm.p99 * 5), `victim ping p99 ${during.p99.toFixed(1)} ms (calm ${calm.p99.toFixed(1)} ms)`);
  assert.ok(rssMax - rss0 < RSS_BOUND, `RSS grew by ${((rssMax - rss0) / 2 ** 20).toFixed(1)} MB (bound ${RSS_BOUND / 2 ** 20} MB)`);
  return { sock, reconnects };
}

test(`a user with ${PEERS} peers (${ONLINE} online) reconnecting every ${RECONNECT_MS} ms for ${CHURN_MS / 1000} s: no pushes within the grace, CPU, latency and RSS bounded`, async (t) => {
  const t0 = Date.now();
  srv = await startServer({ options: { 'jwt-secret': SECRET, 'presence-grace': GRACE, 'bind-rate': 100000 } });
  t.after(() => srv.stop());
  const { user, watchers } = await setup();
  const { sock, reconnects } = await churn(user, CHURN_MS);

  // What the online peers were told during the churn: "online" once.
  const told = await Promise.all(watchers.map((w) => w.collect()));
  const counts = told.map((frames) => presenceOf(frames, user.id).length);
  console.log(`# presence pushes per online peer during the churn: min ${Math.min(...counts)}, max ${Math.max(...counts)}`);
  for (const [i, frames] of told.entries()) {
    assert.deepEqual(
      presenceOf(frames, user.id).map((m) => m.online),
      [true],
      `peer ${i}: told online once, nothing for ${reconnects} reconnects within the grace`,
    );
  }

  // The last socket closes: after the grace, one "offline" to each online peer.
  sock.terminate();
  await sleep(GRACE + 700);
  const later = await Promise.all(watchers.map((w) => w.collect()));
  for (const [i, frames] of later.entries()) {
    assert.deepEqual(
      presenceOf(frames, user.id).map((m) => m.online),
      [false],
      `peer ${i}: told offline once after the grace`,
    );
  }
  for (const w of watchers) w.terminate();
  console.log(`# whole test ${Date.now() - t0} ms`);
});

// The worst case: no grace, so every reconnect that closes first is two
// changes. Each costs one peer read and one push per online peer at most
// (changes in one loop pass are told once, stale reads dropped), and the
// last word each peer gets is the final state.
test(`--presence-grace 0: ${CHURN_MS / 2000} s of the same churn costs at most 2 pushes per reconnect per peer, bounded CPU and latency`, async (t) => {
  srv = await startServer({ options: { 'jwt-secret': SECRET, 'presence-grace': 0, 'bind-rate': 100000 } });
  t.after(() => srv.stop());
  const { user, watchers } = await setup();
  const { sock, reconnects } = await churn(user, CHURN_MS / 2);
  sock.terminate();
  await sleep(500);
  const told = await Promise.all(watchers.map((w) => w.collect()));
  const counts = told.map((frames) => presenceOf(frames, user.id).length);
  console.log(`# presence pushes per online peer for ${reconnects} reconnects and a close: min ${Math.min(...counts)}, max ${Math.max(...counts)}`);
  for (const [i, frames] of told.entries()) {
    const p = presenceOf(frames, user.id);
    assert.ok(p.length <= 2 * reconnects + 2, `peer ${i}: ${p.length} pushes for ${reconnects} reconnects`);
    assert.equal(p.at(-1).online, false, `peer ${i}: the last word is offline`);
  }
  for (const w of watchers) w.terminate();
});

test(`a member of a group of ${GROUP_MEMBERS} (${ONLINE} online, no 1:1 conversation) reconnecting every ${RECONNECT_MS} ms for ${CHURN_MS / 2000} s: one online and one offline per member, CPU and latency bounded`, async (t) => {
  srv = await startServer({ options: { 'jwt-secret': SECRET, 'presence-grace': GRACE, 'bind-rate': 100000 } });
  t.after(() => srv.stop());
  const { user, watchers } = await setupGroup();
  await Promise.all(watchers.map((w) => w.collect())); // the members' own comings
  const { sock, reconnects } = await churn(user, CHURN_MS / 2);
  const told = await Promise.all(watchers.map((w) => w.collect()));
  const counts = told.map((frames) => presenceOf(frames, user.id).length);
  console.log(`# presence pushes per online member during the churn: min ${Math.min(...counts)}, max ${Math.max(...counts)}`);
  for (const [i, frames] of told.entries()) {
    assert.deepEqual(presenceOf(frames, user.id).map((m) => m.online), [true], `member ${i}: told online once, nothing for ${reconnects} reconnects within the grace`);
  }
  sock.terminate();
  await sleep(GRACE + 700);
  const later = await Promise.all(watchers.map((w) => w.collect()));
  for (const [i, frames] of later.entries()) {
    assert.deepEqual(presenceOf(frames, user.id).map((m) => m.online), [false], `member ${i}: told offline once after the grace`);
  }
  for (const w of watchers) w.terminate();
});
