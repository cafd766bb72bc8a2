// The profile endpoints. POST /user/password: the old password is checked
// (401 bad_credentials, counted by the login limiter: 429 past --login-rate),
// the new one follows the sign-up rules; on success every other login token
// of the user is deleted (cached or not: 401 at once), the sockets they bound
// get {"type":"error","code":"password_changed"} and close 1008, while the
// caller's token and its sockets go on; the new password logs in, the old one
// does not; a JWT account has no password (400 no_password). POST
// /user/profile: the picture is set and removed, seen in /user/me (the token
// cache forgets the user), in search and in the peer's chat list, pushed to
// the user's other devices; unsafe URLs are refused. Runs on SQLite, and on
// PostgreSQL with CHATD_TEST_STORE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { ChatSocket, dropPresence, fails, get, login, mintJwt, must, ok, post, register, send, uname } from './lib/chat.mjs';

const JWT_SECRET = 'profile-jwt-' + crypto.randomBytes(8).toString('hex');
const srv = await startServer({ options: { 'jwt-secret': JWT_SECRET, 'login-rate': 1000 } });
after(() => srv.stop());

const me = (token, s = srv) => get(s, '/user/me', { token });
const setPassword = (token, body, s = srv) => post(s, '/user/password', body, { token });
const setPicture = (token, body) => post(srv, '/user/profile', body, { token });

/** Asserts the socket gets {"type":"error","code"} and then a close 1008. */
async function closedWith(sock, code) {
  const e = await sock.expect('error');
  assert.equal(e.code, code);
  assert.equal((await sock.ws.waitClose(3000)).code, 1008);
}

test('a password change signs out every other session and keeps the caller\'s', async (t) => {
  const alice = await register(srv, uname('pa'));
  const bob = await register(srv, uname('pb'));
  const second = { ...alice, token: (await login(srv, alice.username, alice.password)).token };
  const third = { ...alice, token: (await login(srv, alice.username, alice.password)).token };
  const mine = await ChatSocket.bound(srv, alice, t);
  const other1 = await ChatSocket.bound(srv, second, t);
  const other2 = await ChatSocket.bound(srv, second, t);
  const other3 = await ChatSocket.bound(srv, third, t);
  ok(await me(alice.token)); // cached now: the change must beat the cache
  ok(await me(second.token));

  const fresh = 'new-' + crypto.randomBytes(6).toString('hex');
  const d = ok(await setPassword(alice.token, { old_password: alice.password, new_password: fresh }));
  assert.deepEqual(d, { ok: true, tokens_deleted: 2, sockets_closed: 3, complete: true });
  for (const s of [other1, other2, other3]) await closedWith(s, 'password_changed');

  // the caller's token works at once, the others are dead (cached or not)
  ok(await me(alice.token), 'the caller right after');
  fails(await me(second.token), 401, 'unauthorized');
  fails(await me(third.token), 401, 'unauthorized');
  const late = await ChatSocket.open(srv, t);
  late.sendJson({ type: 'bind', token: second.token });
  assert.equal((await late.expect('error')).code, 'unauthorized');

  // the caller's socket is still bound and gets messages
  await send(srv, bob, alice, 'still here?');
  assert.equal((await mine.expect('message')).message.data, 'still here?');

  // the new password logs in, the old one does not
  fails(await post(srv, '/user/login', { username: alice.username, password: alice.password }), 401, 'bad_credentials');
  const relog = await login(srv, alice.username, fresh);
  ok(await me(relog.token));
  // and the old password no longer passes as old_password
  fails(await setPassword(alice.token, { old_password: alice.password, new_password: 'whatever1' }), 401, 'bad_credentials');
});

test('a wrong old password is 401 and changes nothing', async (t) => {
  const alice = await register(srv, uname('pw'));
  const second = { ...alice, token: (await login(srv, alice.username, alice.password)).token };
  const s2 = await ChatSocket.bound(srv, second, t);
  fails(await setPassword(alice.token, { old_password: 'not-the-password', new_password: 'something-new' }), 401, 'bad_credentials');
  ok(await me(second.token));
  await s2.quiet('no sign-out');
  await login(srv, alice.username, alice.password);
  fails(await post(srv, '/user/login', { username: alice.username, password: 'something-new' }), 401, 'bad_credentials');
});

test('wrong old passwords count against the login limiter', async () => {
  const limited = await startServer({ options: { 'login-rate': 3 } });
  try {
    const alice = await register(limited, uname('pl'));
    for (let i = 0; i < 3; i++)
      fails(await setPassword(alice.token, { old_password: `guess-${i}`, new_password: 'something-new' }, limited), 401, 'bad_credentials', undefined, `guess ${i}`);
    // the fourth attempt in the minute is refused before any check, right or wrong
    fails(await setPassword(alice.token, { old_password: 'guess-3', new_password: 'something-new' }, limited), 429, 'rate_limited');
    fails(await setPassword(alice.token, { old_password: alice.password, new_password: 'something-new' }, limited), 429, 'rate_limited');
    // the same limiter as logins: a login from this address is refused too
    fails(await post(limited, '/user/login', { username: alice.username, password: alice.password }), 429, 'rate_limited');
    ok(await me(alice.token, limited), 'the session itself is not touched');
  } finally {
    await limited.stop();
  }
});

test('password fields follow the sign-up rules', async () => {
  const alice = await register(srv, uname('pf'));
  const p = alice.password;
  fails(await setPassword(alice.token, { new_password: 'something-new' }), 400, 'missing_field', 'old_password');
  fails(await setPassword(alice.token, { old_password: p }), 400, 'missing_field', 'new_password');
  fails(await setPassword(alice.token, { old_password: p, new_password: '12345' }), 400, 'bad_field', 'new_password');
  fails(await setPassword(alice.token, { old_password: p, new_password: 'x'.repeat(129) }), 400, 'bad_field', 'new_password');
  fails(await setPassword(alice.token, { old_password: p, new_password: 123456 }), 400, 'bad_field', 'new_password');
  fails(await setPassword(alice.token, { old_password: '', new_password: 'something-new' }), 400, 'bad_field', 'old_password');
  fails(await setPassword(alice.token, { old_password: 'x'.repeat(129), new_password: 'something-new' }), 400, 'bad_field', 'old_password');
  fails(await post(srv, '/user/password', 'not json', { token: alice.token }), 400, 'bad_json');
  fails(await setPassword(undefined, { old_password: p, new_password: 'something-new' }), 401, 'unauthorized');
  fails(await get(srv, '/user/password', { token: alice.token }), 405, 'method_not_allowed');
  // the boundaries pass: 6 and 128 bytes
  ok(await setPassword(alice.token, { old_password: p, new_password: '123456' }));
  ok(await setPassword(alice.token, { old_password: '123456', new_password: 'y'.repeat(128) }));
  await login(srv, alice.username, 'y'.repeat(128));

  // an account made from a JWT has no password to change
  const jwt = mintJwt({ sub: `ext-${crypto.randomBytes(4).toString('hex')}`, username: uname('pj'), exp: Math.floor(Date.now() / 1000) + 600 }, JWT_SECRET);
  ok(await me(jwt));
  fails(await setPassword(jwt, { old_password: 'anything', new_password: 'something-new' }), 400, 'no_password');
});

test('the picture is set and removed, and others see it', async (t) => {
  const tag = uname('pp').slice(0, 20);
  const alice = await register(srv, `${tag}_a`);
  const bob = await register(srv, `${tag}_b`);
  await send(srv, alice, bob, 'hello');
  ok(await me(alice.token)); // cached: the change must show anyway
  const phone = await ChatSocket.bound(srv, alice, t);

  const pic = '/media/0123456789abcdef0123456789abcdef.png';
  const u = ok(await setPicture(alice.token, { userpic: pic }));
  assert.deepEqual(u, { id: alice.id, username: alice.username, userpic: pic });
  const push = await phone.expect('profile');
  assert.deepEqual(push.user, u, 'the other device is told');
  assert.deepEqual(ok(await me(alice.token)), u, '/user/me');
  const found = dropPresence(await must(srv, 'GET', `/user/search?q=${tag}_a`, { token: bob.token }));
  assert.equal(found.length, 1);
  assert.equal(found[0].userpic, pic, 'search');
  const item = (await must(srv, 'GET', '/chat/list', { token: bob.token })).find((i) => i.userid === alice.id);
  assert.equal(item.userpic, pic, "the peer's chat list");
  const m = await send(srv, alice, bob, 'with a picture');
  assert.equal(m.from_userpic, pic, 'a new message names it');

  const https = 'https://cdn.example.com/a.png?x=1';
  assert.equal(ok(await setPicture(alice.token, { userpic: https })).userpic, https);
  assert.equal(ok(await me(alice.token)).userpic, https);

  const cleared = ok(await setPicture(alice.token, { userpic: '' }));
  assert.deepEqual(cleared, { id: alice.id, username: alice.username, userpic: '' });
  assert.equal(ok(await me(alice.token)).userpic, '');
  const item2 = (await must(srv, 'GET', '/chat/list', { token: bob.token })).find((i) => i.userid === alice.id);
  assert.equal(item2.userpic, '', 'removed for the peer too');
});

test('unsafe or malformed pictures are refused', async () => {
  const alice = await register(srv, uname('pu'), { userpic: '/media/keep.png' });
  for (const bad of ['javascript:alert(1)', '//evil.example/x.png', '/\\evil.example/x.png', 'data:image/png;base64,AAAA', 'ftp://x/y.png', 'media/x.png', '/a\nb.png', 'https://x/\u0001.png']) {
    fails(await setPicture(alice.token, { userpic: bad }), 400, 'bad_field', 'userpic', JSON.stringify(bad));
  }
  fails(await setPicture(alice.token, { userpic: '/' + 'a'.repeat(512) }), 400, 'bad_field', 'userpic');
  fails(await setPicture(alice.token, { userpic: 5 }), 400, 'bad_field', 'userpic');
  fails(await setPicture(alice.token, {}), 400, 'missing_field', 'userpic');
  fails(await setPicture(undefined, { userpic: '/x.png' }), 401, 'unauthorized');
  assert.equal(ok(await me(alice.token)).userpic, '/media/keep.png', 'nothing changed');
});
