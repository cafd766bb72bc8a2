// Presence (issue 11): a user is online while a socket is bound to them
// through the chat service; offline once the last one closed and the grace
// (--presence-grace) passed, with last_seen stored. Their 1:1 peers get a
// {"type":"presence"} push on each change, nobody else does; the chat list
// and /user/search carry online and last_seen; POST /user/settings hides
// last_seen from others. Runs on SQLite, and on PostgreSQL with
// CHATD_TEST_STORE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, must, post, registerAll, restartServer, send, uname } from './lib/chat.mjs';

const GRACE = 400;
const srv = await startServer({ options: { 'presence-grace': GRACE } });
after(() => srv.stop());

/** Two users who share a conversation (a wrote to b). */
async function pair(prefix) {
  const [a, b] = await registerAll(srv, [uname(prefix + 'a'), uname(prefix + 'b')]);
  await send(srv, a, b, 'hi');
  return [a, b];
}

/** b's socket, with the message of the pair's conversation read off it. */
async function watcher(b, t) {
  return (await ChatSocket.bound(srv, b, t)).watchPresence();
}

const listItem = async (user, peer) => (await must(srv, 'GET', '/chat/list', { token: user.token })).find((c) => c.userid === peer.id);
const searchOf = async (user, peer) => (await must(srv, 'GET', `/user/search?q=${encodeURIComponent(peer.username)}`, { token: user.token })).find((u) => u.id === peer.id);

test('a peer sees online on bind and offline after the last socket closed and the grace passed', async (t) => {
  const [a, b] = await pair('p1');
  const [stranger] = await registerAll(srv, [uname('p1s')]);
  const sb = await watcher(b, t);
  const ss = (await ChatSocket.bound(srv, stranger, t)).watchPresence();
  const sa1 = await ChatSocket.bound(srv, a, t);
  assert.deepEqual(await sb.next(), { type: 'presence', uid: a.id, online: true, last_seen: null });
  const sa2 = await ChatSocket.bound(srv, a, t);
  await sleep(50);
  await sb.quiet('(a second device is no change)');
  sa1.terminate();
  await sleep(GRACE + 200);
  await sb.quiet('(one device is still bound)');
  const before = Date.now();
  sa2.terminate();
  await sleep(GRACE / 2);
  await sb.quiet('(within the grace)');
  const off = await sb.next(GRACE + 2000);
  assert.equal(off.type, 'presence');
  assert.equal(off.uid, a.id);
  assert.equal(off.online, false);
  assert.ok(off.last_seen >= before - 50 && off.last_seen <= Date.now(), `last_seen ${off.last_seen} is when the last socket closed`);
  await sb.quiet();
  await ss.quiet('(a non-peer gets nothing)');
  // a's own socket (none now) and b's other state are untouched; a sees b's presence
  const item = await listItem(b, a);
  assert.equal(item.online, false);
  assert.equal(item.last_seen, off.last_seen);
});

test('a reload within the grace does not flap', async (t) => {
  const [a, b] = await pair('p2');
  const sb = await watcher(b, t);
  const sa = await ChatSocket.bound(srv, a, t);
  assert.equal((await sb.next()).online, true);
  for (let i = 0; i < 3; i++) {
    sa.terminate();
    await sleep(GRACE / 4);
    const again = await ChatSocket.bound(srv, a, t);
    await sleep(GRACE / 4);
    if (i < 2) again.terminate();
  }
  await sleep(GRACE + 200);
  await sb.quiet('(reloads within the grace change nothing)');
  assert.equal((await listItem(b, a)).online, true);
});

test('the chat list and /user/search carry online and last_seen', async (t) => {
  const [a, b] = await pair('p3');
  let item = await listItem(b, a);
  assert.equal(item.online, false);
  assert.equal(item.last_seen, null, 'never seen offline');
  let found = await searchOf(b, a);
  assert.deepEqual([found.online, found.last_seen], [false, null]);
  const sa = await ChatSocket.bound(srv, a, t);
  await sleep(50);
  item = await listItem(b, a);
  assert.equal(item.online, true);
  found = await searchOf(b, a);
  assert.equal(found.online, true);
  // search finds users who are no peers: they carry presence too
  const [c] = await registerAll(srv, [uname('p3c')]);
  const sc = await ChatSocket.bound(srv, c, t);
  await sleep(50);
  assert.equal((await searchOf(b, c)).online, true);
  sa.terminate();
  sc.terminate();
  await sleep(GRACE + 300);
  item = await listItem(b, a);
  assert.equal(item.online, false);
  assert.equal(typeof item.last_seen, 'number');
  found = await searchOf(b, a);
  assert.deepEqual([found.online, found.last_seen], [false, item.last_seen]);
});

test('hide_last_seen: others get last_seen null, online still shown', async (t) => {
  const [a, b] = await pair('p4');
  fails(await post(srv, '/user/settings', {}, { token: a.token }), 400, 'missing_field');
  fails(await post(srv, '/user/settings', { hide_last_seen: 'yes' }, { token: a.token }), 400, 'bad_field');
  fails(await post(srv, '/user/settings', { hide_last_seen: true }), 401, 'unauthorized');
  assert.deepEqual(await must(srv, 'POST', '/user/settings', { token: a.token, body: { hide_last_seen: true } }), { hide_last_seen: true });
  const sb = await watcher(b, t);
  const sa = await ChatSocket.bound(srv, a, t);
  assert.deepEqual(await sb.next(), { type: 'presence', uid: a.id, online: true, last_seen: null });
  sa.terminate();
  assert.deepEqual(await sb.next(GRACE + 2000), { type: 'presence', uid: a.id, online: false, last_seen: null });
  const item = await listItem(b, a);
  assert.deepEqual([item.online, item.last_seen], [false, null]);
  assert.equal((await searchOf(b, a)).last_seen, null);
  // shown again: the stored time comes back
  assert.deepEqual(await must(srv, 'POST', '/user/settings', { token: a.token, body: { hide_last_seen: false } }), { hide_last_seen: false });
  assert.equal(typeof (await listItem(b, a)).last_seen, 'number');
});

test('last_seen survives a restart', async (t) => {
  const own = await startServer({ options: { 'presence-grace': 100 } });
  let again = null;
  t.after(async () => {
    if (again) await again.stop();
    await own.stop();
  });
  const [a, b] = await registerAll(own, [uname('p5a'), uname('p5b')]);
  await send(own, a, b, 'hi');
  const sa = await ChatSocket.bound(own, a, t);
  sa.terminate();
  await sleep(400);
  const seen = (await must(own, 'GET', '/chat/list', { token: b.token }))[0].last_seen;
  assert.equal(typeof seen, 'number');
  own.signal('SIGTERM');
  await own.exited;
  again = await restartServer(own);
  const item = (await must(again, 'GET', '/chat/list', { token: b.token }))[0];
  assert.deepEqual([item.userid, item.online, item.last_seen], [a.id, false, seen]);
  const u = (await must(again, 'GET', `/user/search?q=${encodeURIComponent(a.username)}`, { token: b.token }))[0];
  assert.deepEqual([u.online, u.last_seen], [false, seen]);
});
