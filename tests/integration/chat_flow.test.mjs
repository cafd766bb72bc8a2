// The chat service end to end, as two users with several devices use it:
// register, login, /user/me, search, socket init -> bind (HTTP and socket
// form), sends over HTTP and the socket with acks and pushes to the right
// devices, chat list order and noreadnum, /chat/unread, history and sync;
// offline delivery through sync; idempotent retries by client_msg_id; read
// sync between devices and read receipts to the peer.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer } from './lib/server.mjs';
import {
  ChatSocket,
  TOKEN_RE,
  assertMessageShape,
  byKey,
  fails,
  must,
  ok,
  post,
  registerAll,
  send,
  syncAll,
  uname,
  dropPresence,
} from './lib/chat.mjs';

const srv = await startServer({ options: { 'login-rate': 1000 } });
after(() => srv.stop());

const me = (u) => must(srv, 'GET', '/user/me', { token: u.token });
const list = async (u) => dropPresence(await must(srv, 'GET', '/chat/list', { token: u.token }));
const unread = (u) => must(srv, 'GET', '/chat/unread', { token: u.token });
const history = (u, peer, q = '') => must(srv, 'GET', `/chat/history?userid=${peer.id}${q}`, { token: u.token });
const sortConvs = (u) => ({ ...u, conversations: byKey(u.conversations, 'userid') });

/** The chat-list entry a user should see for peer, given the conversation's newest message. */
function entry(peer, last, noreadnum) {
  return {
    chat_type: 'single',
    userid: peer.id,
    username: peer.username,
    userpic: peer.userpic,
    type: last.type,
    data: last.data,
    time: last.time,
    noreadnum,
    last_message_id: last.id,
    last_seq: last.seq,
    from_id: last.from_id,
  };
}

test('register, login, /user/me and search', async () => {
  // A tag of letters g-z only, so no other test's username (digits and hex) contains it.
  const tag = Array.from(crypto.randomBytes(6), (b) => String.fromCharCode(103 + (b % 20))).join('');
  const t0 = Date.now();
  const reg = ok(await post(srv, '/user/register', { username: `${tag}_alice`, password: 'alice-password', userpic: 'https://example.com/a.png' }), 'register');
  assert.match(reg.token, TOKEN_RE);
  assert.deepEqual(Object.keys(reg).sort(), ['token', 'user']);
  assert.deepEqual(Object.keys(reg.user).sort(), ['id', 'username', 'userpic'].sort(), 'no password hash or other field in the user');
  assert.ok(Number.isSafeInteger(reg.user.id) && reg.user.id > 0);
  assert.deepEqual(reg.user, { id: reg.user.id, username: `${tag}_alice`, userpic: 'https://example.com/a.png' });
  const alice = { ...reg.user, token: reg.token };
  const [bob, carol] = await registerAll(srv, [`${tag}_bob`, `a${tag}_carol`]);
  assert.equal(bob.userpic, '', 'userpic defaults to ""');
  assert.ok(new Set([alice.id, bob.id, carol.id]).size === 3, 'distinct ids');

  // Login gives a new token for the same user; both tokens work.
  const lg = ok(await post(srv, '/user/login', { username: `${tag}_alice`, password: 'alice-password' }), 'login');
  assert.match(lg.token, TOKEN_RE);
  assert.notEqual(lg.token, reg.token);
  assert.deepEqual(lg.user, reg.user);
  assert.deepEqual(await me(alice), reg.user);
  assert.deepEqual(await me({ token: lg.token }), reg.user);
  assert.ok(Date.now() - t0 < 10000);

  fails(await post(srv, '/user/login', { username: `${tag}_alice`, password: 'wrong-password' }), 401, 'bad_credentials');
  fails(await post(srv, '/user/login', { username: `${tag}_nobody`, password: 'whatever1' }), 401, 'bad_credentials');

  // Search: not yourself, prefixes only (an indexed range: docs/API.md), case-insensitive.
  const strip = (u) => ({ id: u.id, username: u.username, userpic: u.userpic });
  const s1 = dropPresence(await must(srv, 'GET', `/user/search?q=${tag}`, { token: alice.token }));
  assert.deepEqual(s1, [strip(bob)], 'the prefix match (bob); not the inner match (carol), nor alice herself');
  const s2 = dropPresence(await must(srv, 'GET', `/user/search?q=${tag.toUpperCase()}`, { token: carol.token }));
  assert.deepEqual(s2, [strip(alice), strip(bob)], 'case-insensitive; carol left out');
  assert.deepEqual(dropPresence(await must(srv, 'GET', `/user/search?q=${tag}_BOB`, { token: alice.token })), [strip(bob)]);
  assert.deepEqual(await must(srv, 'GET', `/user/search?q=${tag}_nobody`, { token: alice.token }), []);
});

test('two users, two devices: bind both ways, send over HTTP and the socket, pushes, list, unread, history, sync', async (t) => {
  const [alice, bob, carol] = await registerAll(srv, [uname('fa'), uname('fb'), uname('fc')]);

  // a1 is bound over HTTP (Bearer), a2 with the socket form, b1 over HTTP with the token: header.
  const a1 = await ChatSocket.open(srv, t);
  const rb = await post(srv, '/chat/bind', { type: 'bind', client_id: a1.clientId, bind_nonce: a1.bindNonce }, { token: alice.token });
  assert.equal(rb.status, 200, rb.text);
  assert.deepEqual(rb.body, { status: true, type: 'bind', msg: 'ok', data: { uid: alice.id, client_id: a1.clientId } });
  const a2 = await ChatSocket.bound(srv, alice, t);
  const b1 = await ChatSocket.open(srv, t);
  assert.deepEqual(
    ok(await post(srv, '/chat/bind', { type: 'bind', client_id: b1.clientId, bind_nonce: b1.bindNonce }, { token: bob.token, via: 'header' })),
    { uid: bob.id, client_id: b1.clientId },
  );
  const sent = [];

  // 1. HTTP send naming its own device a1: bob's device and alice's other device get it, a1 does not.
  const t0 = Date.now();
  const m1 = await send(srv, alice, bob, 'hello bob', { client_id: a1.clientId });
  assertMessageShape(m1);
  assert.deepEqual(m1, {
    id: m1.id,
    seq: 1,
    to_id: bob.id,
    from_id: alice.id,
    from_username: alice.username,
    from_userpic: alice.userpic,
    type: 'text',
    data: 'hello bob',
    time: m1.time,
    client_msg_id: null,
  });
  assert.ok(Math.abs(m1.time - t0) < 5000, `time ${m1.time} is now (ms since epoch)`);
  sent.push(m1);
  assert.deepEqual(await b1.next(), { type: 'message', message: m1 });
  assert.deepEqual(await a2.next(), { type: 'message', message: m1 });
  await a1.quiet('(a1 named itself as the sender)');
  await a2.quiet();
  await b1.quiet();

  // 2. HTTP send without client_id: every device of both users but none named, so a1 too.
  const m2 = await send(srv, alice, bob, 'second, with unicode: héllo ✓');
  assert.ok(m2.id > m1.id, 'ids grow');
  sent.push(m2);
  for (const s of [b1, a1, a2]) assert.deepEqual(await s.next(), { type: 'message', message: m2 });
  for (const s of [b1, a1, a2]) await s.quiet();

  // 3. Socket send from a2: a2 gets the ack (and no push of its own message), b1 and a1 the message.
  a2.sendMsg(bob, 'over the socket', { client_msg_id: 'a2-1' });
  const ack = await a2.next();
  assert.equal(ack.type, 'ack', JSON.stringify(ack));
  assert.deepEqual(Object.keys(ack).sort(), ['client_msg_id', 'message', 'type']);
  assert.equal(ack.client_msg_id, 'a2-1');
  const m3 = ack.message;
  assertMessageShape(m3);
  assert.equal(m3.client_msg_id, 'a2-1');
  assert.equal(m3.from_id, alice.id);
  assert.equal(m3.to_id, bob.id);
  assert.equal(m3.data, 'over the socket');
  assert.ok(m3.id > m2.id);
  sent.push(m3);
  assert.deepEqual(await b1.next(), { type: 'message', message: m3 });
  assert.deepEqual(await a1.next(), { type: 'message', message: m3 });
  await a2.quiet('(the sending socket does not get its own message pushed)');
  await a1.quiet();
  await b1.quiet();

  // 4. Bob answers over the socket: both of alice's devices get it.
  b1.sendMsg(alice, 'hi alice', { type: 'text', client_msg_id: 'b1-1' });
  const ackB = await b1.expect('ack');
  const m4 = ackB.message;
  assert.equal(m4.from_id, bob.id);
  assert.equal(m4.from_username, bob.username);
  sent.push(m4);
  assert.deepEqual(await a1.next(), { type: 'message', message: m4 });
  assert.deepEqual(await a2.next(), { type: 'message', message: m4 });
  await b1.quiet();

  // 5. Other types: an image URL over HTTP (from a1), an emoji over the socket (from b1).
  const m5 = await send(srv, alice, bob, 'https://example.com/cat.png', { type: 'image', client_id: a1.clientId });
  assert.equal(m5.type, 'image');
  sent.push(m5);
  assert.deepEqual(await b1.next(), { type: 'message', message: m5 });
  assert.deepEqual(await a2.next(), { type: 'message', message: m5 });
  b1.sendMsg(alice, '😀', { type: 'emoji' });
  const m6 = (await b1.expect('ack')).message;
  assert.equal(m6.type, 'emoji');
  assert.equal(m6.data, '😀');
  assert.equal(m6.client_msg_id, null);
  sent.push(m6);
  for (const s of [a1, a2]) assert.deepEqual(await s.next(), { type: 'message', message: m6 });
  for (const s of [a1, a2, b1]) await s.quiet();

  // History, newest first, the same from both sides and equal to what was pushed.
  const newestFirst = [...sent].reverse();
  assert.deepEqual(await history(alice, bob), newestFirst);
  assert.deepEqual(await history(bob, alice), newestFirst);

  // Chat lists: one conversation each; unread counts only what the peer sent.
  const toAlice = sent.filter((m) => m.to_id === alice.id).length;
  const toBob = sent.filter((m) => m.to_id === bob.id).length;
  assert.deepEqual(await list(alice), [entry(bob, m6, toAlice)]);
  assert.deepEqual(await list(bob), [entry(alice, m6, toBob)]);

  // Carol writes to alice: her conversation comes first in alice's list; alice writes bob: bob first again.
  const c1 = await send(srv, carol, alice, 'carol here');
  for (const s of [a1, a2]) assert.deepEqual(await s.next(), { type: 'message', message: c1 });
  await b1.quiet('(bob is not part of carol and alice)');
  assert.deepEqual(await list(alice), [entry(carol, c1, 1), entry(bob, m6, toAlice)]);
  assert.deepEqual(await list(carol), [entry(alice, c1, 0)]);
  const m7 = await send(srv, alice, bob, 'back to bob');
  sent.push(m7);
  assert.deepEqual(await list(alice), [entry(bob, m7, toAlice), entry(carol, c1, 1)]);
  assert.deepEqual(await list(bob), [entry(alice, m7, toBob + 1)]);

  // Unread totals.
  assert.deepEqual(sortConvs(await unread(alice)), sortConvs({ total: toAlice + 1, conversations: [{ userid: bob.id, noreadnum: toAlice }, { userid: carol.id, noreadnum: 1 }], groups: [] }));
  assert.deepEqual(await unread(bob), { total: toBob + 1, conversations: [{ userid: alice.id, noreadnum: toBob + 1 }], groups: [] });
  assert.deepEqual(await unread(carol), { total: 0, conversations: [], groups: [] });

  // Sync: everything to or from the user, oldest first; bob does not see carol's message.
  assert.deepEqual(await syncAll(srv, alice), byKey([...sent, c1], 'id'));
  assert.deepEqual(await syncAll(srv, bob), byKey(sent, 'id'));
  assert.deepEqual(await syncAll(srv, carol), [c1]);
  assert.deepEqual(await must(srv, 'GET', `/chat/sync?after=${m4.id}`, { token: bob.token }), sent.filter((m) => m.id > m4.id));
});

test('offline delivery: sent while the recipient has no socket, seen through sync, list and unread', async (t) => {
  const [dave, erin] = await registerAll(srv, [uname('od'), uname('oe')]);
  assert.deepEqual(await must(srv, 'GET', '/chat/sync?after=0', { token: erin.token }), []);
  assert.deepEqual(await list(erin), []);
  const d1 = await ChatSocket.bound(srv, dave, t);
  const m1 = await send(srv, dave, erin, 'are you there?');
  const m2 = await send(srv, dave, erin, 'https://example.com/p.png', { type: 'image' });
  // dave's socket is another device of the HTTP sender: it gets both.
  assert.deepEqual(await d1.next(), { type: 'message', message: m1 });
  assert.deepEqual(await d1.next(), { type: 'message', message: m2 });
  d1.sendMsg(erin, 'third, from the socket', { client_msg_id: 'off-3' });
  const m3 = (await d1.expect('ack')).message;
  await d1.quiet();
  // Erin comes online later.
  const e1 = await ChatSocket.bound(srv, erin, t);
  assert.deepEqual(await must(srv, 'GET', '/chat/sync?after=0', { token: erin.token }), [m1, m2, m3]);
  assert.deepEqual(await must(srv, 'GET', `/chat/sync?after=${m1.id}`, { token: erin.token }), [m2, m3]);
  assert.deepEqual(await list(erin), [entry(dave, m3, 3)]);
  assert.deepEqual(await unread(erin), { total: 3, conversations: [{ userid: dave.id, noreadnum: 3 }], groups: [] });
  assert.deepEqual(await unread(dave), { total: 0, conversations: [], groups: [] });

  // Now online: the next message is pushed, and sync after the last seen id has only it.
  const m4 = await send(srv, dave, erin, 'now you are online');
  const got = await e1.next();
  assert.deepEqual(got, { type: 'message', message: m4 });
  assert.deepEqual(await must(srv, 'GET', `/chat/sync?after=${m3.id}`, { token: erin.token }), [m4]);
  assert.deepEqual(await unread(erin), { total: 4, conversations: [{ userid: dave.id, noreadnum: 4 }], groups: [] });
});

// Storage is exactly once, pushes at least once: a retry is pushed again, because the first try
// may have been stored without being pushed (commit outcome unknown: 503 store_unavailable on
// PostgreSQL; or another node stored it and died), and clients merge pushes by id.
test('idempotent retries: the same client_msg_id from the same sender is stored once, pushed again on every retry', async (t) => {
  const [ann, ben] = await registerAll(srv, [uname('ia'), uname('ib')]);
  const a1 = await ChatSocket.bound(srv, ann, t);
  const a2 = await ChatSocket.bound(srv, ann, t);
  const b1 = await ChatSocket.bound(srv, ben, t);
  const b2 = await ChatSocket.bound(srv, ben, t);

  // HTTP, twice; the retry carries different data and still gets the stored message.
  const r1 = await send(srv, ann, ben, 'first try', { client_msg_id: 'h-1' });
  const r2 = await send(srv, ann, ben, 'changed on retry', { client_msg_id: 'h-1' });
  assert.deepEqual(r2, r1, 'the retry answers with the stored message (same id, time and data)');
  assert.equal(r1.client_msg_id, 'h-1');
  for (const s of [b1, b2, a1, a2]) {
    assert.deepEqual(await s.next(), { type: 'message', message: r1 });
    assert.deepEqual(await s.next(), { type: 'message', message: r1 }, 'the retry is pushed again, the stored message');
    await s.quiet('(one push per try)');
  }

  // Socket, twice back to back (both in flight at once).
  a1.sendMsg(ben, 'socket try', { client_msg_id: 's-1' });
  a1.sendMsg(ben, 'socket try', { client_msg_id: 's-1' });
  const k1 = await a1.expect('ack');
  const k2 = await a1.expect('ack');
  assert.equal(k1.client_msg_id, 's-1');
  assert.equal(k2.client_msg_id, 's-1');
  assert.deepEqual(k2.message, k1.message, 'both acks carry the same stored message');
  const s1 = k1.message;
  assert.notEqual(s1.id, r1.id);
  await a1.quiet('(no pushes to the sending socket)');
  for (const s of [b1, b2, a2]) {
    assert.deepEqual(await s.next(), { type: 'message', message: s1 });
    assert.deepEqual(await s.next(), { type: 'message', message: s1 });
    await s.quiet('(one push per send)');
  }

  // The same client_msg_id over HTTP after the socket: still the same message, pushed again.
  assert.deepEqual(await send(srv, ann, ben, 'socket try', { client_msg_id: 's-1' }), s1);
  for (const s of [b1, b2, a1, a2]) {
    assert.deepEqual(await s.next(), { type: 'message', message: s1 });
    await s.quiet();
  }

  // Many parallel HTTP retries of a new id: one message, pushed once per try.
  const par = await Promise.all(Array.from({ length: 6 }, () => send(srv, ann, ben, 'parallel', { client_msg_id: 'p-1' })));
  for (const p of par) assert.deepEqual(p, par[0]);
  for (const s of [b1, b2, a1, a2]) {
    for (let i = 0; i < 6; i++) assert.deepEqual(await s.next(), { type: 'message', message: par[0] });
    await s.quiet('(six pushes of one message for six parallel sends)');
  }

  // A sender that vanished before its ack retries from a new socket: the message is stored once.
  const gone = await ChatSocket.bound(srv, ann, t);
  gone.sendMsg(ben, 'sent, then the socket died', { client_msg_id: 'd-1' });
  gone.terminate();
  const pushed = await b1.next();
  assert.equal(pushed.type, 'message', JSON.stringify(pushed));
  assert.equal(pushed.message.client_msg_id, 'd-1');
  assert.deepEqual(await b2.next(), pushed);
  for (const s of [a1, a2]) assert.deepEqual(await s.next(), pushed, 'the sender\'s other devices got it');
  // A device of the recipient that comes online only now learns of it from the retry's push
  // (the case of a first try stored but never pushed).
  const b3 = await ChatSocket.bound(srv, ben, t);
  const again = await ChatSocket.bound(srv, ann, t);
  again.sendMsg(ben, 'sent, then the socket died', { client_msg_id: 'd-1' });
  assert.deepEqual(await again.expect('ack'), { type: 'ack', client_msg_id: 'd-1', message: pushed.message });
  for (const s of [b1, b2, b3, a1, a2]) {
    assert.deepEqual(await s.next(), pushed, 'the retry is pushed to every device online now');
    await s.quiet();
  }
  const d1 = pushed.message;

  // The same client_msg_id from another sender is another message.
  const other = await send(srv, ben, ann, 'ben uses h-1 too', { client_msg_id: 'h-1' });
  assert.notEqual(other.id, r1.id);
  assert.equal(other.from_id, ben.id);
  assert.equal(other.data, 'ben uses h-1 too');
  assert.equal(other.client_msg_id, 'h-1');

  // Stored once each.
  const want = [other, d1, par[0], s1, r1];
  assert.deepEqual(await history(ann, ben), want);
  assert.deepEqual(await unread(ben), { total: 4, conversations: [{ userid: ann.id, noreadnum: 4 }], groups: [] });
  assert.deepEqual(await unread(ann), { total: 1, conversations: [{ userid: ben.id, noreadnum: 1 }], groups: [] });
  assert.deepEqual(await syncAll(srv, ben), [r1, s1, par[0], d1, other]);
});

test('read: total, read sync to the other devices, receipt to the peer, counts reset for that conversation only', async (t) => {
  const [ra, rb, rc] = await registerAll(srv, [uname('ra'), uname('rb'), uname('rc')]);
  // Seed before anyone is online, so the sockets start empty.
  const b = [await send(srv, rb, ra, 'b1'), await send(srv, rb, ra, 'b2'), await send(srv, rb, ra, 'b3')];
  const mine = await send(srv, ra, rb, 'ra writes after b3');
  const c = [await send(srv, rc, ra, 'c1'), await send(srv, rc, ra, 'c2')];
  const ra1 = await ChatSocket.bound(srv, ra, t);
  const ra2 = await ChatSocket.bound(srv, ra, t);
  const rb1 = await ChatSocket.bound(srv, rb, t);
  const rc1 = await ChatSocket.bound(srv, rc, t);

  assert.deepEqual(sortConvs(await unread(ra)), sortConvs({ total: 5, conversations: [{ userid: rb.id, noreadnum: 3 }, { userid: rc.id, noreadnum: 2 }], groups: [] }));

  // ra reads rb's conversation on device ra1.
  const rd = await post(srv, '/chat/read', { userid: rb.id, client_id: ra1.clientId }, { token: ra.token });
  assert.deepEqual(ok(rd, 'read'), { total: 2 });
  assert.deepEqual(await ra2.next(), { type: 'read', userid: rb.id, total: 2 });
  await ra1.quiet('(the reading device named itself)');
  await ra2.quiet();
  assert.deepEqual(await rb1.next(), { type: 'receipt', userid: ra.id, last_read_id: b[2].id }, 'last_read_id is the newest message from rb to ra, not ra\'s own later one');
  await rb1.quiet();
  await rc1.quiet('(rc is not part of it)');
  assert.ok(mine.id > b[2].id);

  assert.deepEqual(await unread(ra), { total: 2, conversations: [{ userid: rc.id, noreadnum: 2 }], groups: [] });
  assert.deepEqual(await list(ra), [entry(rc, c[1], 2), entry(rb, mine, 0)]);
  assert.deepEqual(await unread(rb), { total: 1, conversations: [{ userid: ra.id, noreadnum: 1 }], groups: [] }, 'rb\'s own unread is untouched');

  // Read rc's conversation with the userid as a decimal string and no client_id: both devices get the read.
  assert.deepEqual(await must(srv, 'POST', '/chat/read', { token: ra.token, body: { userid: String(rc.id) } }), { total: 0 });
  for (const s of [ra1, ra2]) assert.deepEqual(await s.next(), { type: 'read', userid: rc.id, total: 0 });
  assert.deepEqual(await rc1.next(), { type: 'receipt', userid: ra.id, last_read_id: c[1].id });
  await rb1.quiet();
  assert.deepEqual(await unread(ra), { total: 0, conversations: [], groups: [] });
  assert.deepEqual(await list(ra), [entry(rc, c[1], 0), entry(rb, mine, 0)]);

  // Reading again reads nothing: nothing changes and nothing is pushed.
  assert.deepEqual(await must(srv, 'POST', '/chat/read', { token: ra.token, body: { userid: rb.id } }), { total: 0 });
  assert.deepEqual(await unread(ra), { total: 0, conversations: [], groups: [] });
  for (const s of [ra1, ra2, rb1]) await s.quiet('after a read that read nothing');

  // A new message counts again, in that conversation only.
  const b4 = await send(srv, rb, ra, 'b4');
  assert.deepEqual(await rb1.next(), { type: 'message', message: b4 });
  assert.deepEqual(await unread(ra), { total: 1, conversations: [{ userid: rb.id, noreadnum: 1 }], groups: [] });
  assert.deepEqual((await list(ra))[0], entry(rb, b4, 1));

  // Reading a conversation in which the peer never wrote reads nothing: no read, no receipt.
  const onlyMine = await send(srv, rc, rb, 'rc writes rb, rb never answers');
  for (const s of [rb1, rc1]) assert.deepEqual(await s.next(), { type: 'message', message: onlyMine });
  assert.deepEqual(await must(srv, 'POST', '/chat/read', { token: rc.token, body: { userid: rb.id } }), { total: 0 });
  await rc1.quiet('(rc read nothing)');
  await rb1.quiet('(no receipt for a read of nothing)');

  // Errors.
  fails(await post(srv, '/chat/read', { userid: 987654321 }, { token: ra.token }), 404, 'not_found', 'userid');
  fails(await post(srv, '/chat/read', {}, { token: ra.token }), 400, 'missing_field', 'userid');
  fails(await post(srv, '/chat/read', { userid: 'x' }, { token: ra.token }), 400, 'bad_field', 'userid');
  fails(await post(srv, '/chat/read', { userid: rb.id }), 401, 'unauthorized');
});
