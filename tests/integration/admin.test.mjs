// The admin methods of the server API (POST /admin/users/{revoke,disable,
// enable}, bearer --api-secret like /gateway/*): revoke closes every socket of
// the user (an error frame, then 1008) and its old tokens get 401 (cached or
// not), a new login works; disable refuses login with 403 account_disabled and
// kills the tokens and sockets; enable lets login work again, old tokens stay
// dead; a JWT user is covered by the same revoke (JWTs issued before it are
// refused, newer ones work); the methods refuse without the secret, and with
// the API off. Runs on SQLite, and on PostgreSQL with CHATD_TEST_STORE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, login, mintJwt, ok, post, register, send, uname } from './lib/chat.mjs';

const SECRET = 'admin-secret-' + crypto.randomBytes(8).toString('hex');
const JWT_SECRET = 'admin-jwt-' + crypto.randomBytes(8).toString('hex');
const srv = await startServer({ options: { 'api-secret': SECRET, 'jwt-secret': JWT_SECRET, 'login-rate': 1000 } });
after(() => srv.stop());

const admin = (action, body, { secret = SECRET, method = 'POST', s = srv } = {}) =>
  fetch(`${s.url}/admin/users/${action}`, {
    method,
    headers: { 'Content-Type': 'application/json', ...(secret === null ? {} : { Authorization: `Bearer ${secret}` }) },
    body: method === 'GET' ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  }).then(async (r) => {
    const text = await r.text();
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {}
    return { status: r.status, headers: r.headers, text, body: parsed };
  });

const me = (token) => get(srv, '/user/me', { token });
const nowS = () => Math.floor(Date.now() / 1000);

/** Asserts the socket gets {"type":"error","code"} and then a close 1008. */
async function closedWith(sock, code) {
  const e = await sock.expect('error');
  assert.equal(e.code, code);
  assert.equal((await sock.ws.waitClose(3000)).code, 1008);
}

test('revoke closes the user\'s sockets and refuses the old tokens; a new login works', async (t) => {
  const alice = await register(srv, uname('alice'));
  const second = await login(srv, alice.username, alice.password); // another session
  const bob = await register(srv, uname('bob'));
  const a1 = await ChatSocket.bound(srv, alice, t);
  const a2 = await ChatSocket.bound(srv, { ...alice, token: second.token }, t);
  const b1 = await ChatSocket.bound(srv, bob, t);
  ok(await me(alice.token)); // cached now: the revoke must beat the cache
  ok(await me(second.token));

  const d = ok(await admin('revoke', { uid: alice.id }));
  assert.equal(d.uid, alice.id);
  assert.equal(d.tokens_deleted, 2);
  assert.equal(d.sockets_closed, 2);
  assert.equal(d.disabled, false);
  assert.equal(d.complete, true);
  assert.ok(Number.isSafeInteger(d.jwt_not_before) && Math.abs(d.jwt_not_before - nowS()) <= 2);
  for (const s of [a1, a2]) await closedWith(s, 'revoked');

  for (const tok of [alice.token, second.token]) fails(await me(tok), 401, 'unauthorized');
  const again = await ChatSocket.open(srv, t);
  again.sendJson({ type: 'bind', token: alice.token });
  assert.equal((await again.expect('error')).code, 'unauthorized');

  // Bob is untouched.
  ok(await me(bob.token));
  await b1.quiet();
  // A new login works and chats.
  const fresh = await login(srv, alice.username, alice.password);
  assert.equal(ok(await me(fresh.token)).id, alice.id);
  const a3 = await ChatSocket.bound(srv, { ...alice, token: fresh.token }, t);
  const m = await send(srv, bob, alice, 'after the revoke');
  assert.deepEqual(await a3.next(), { type: 'message', message: m });

  // Revoking again: nothing left to delete or close, still fine.
  const d2 = ok(await admin('revoke', { uid: alice.id }));
  assert.equal(d2.tokens_deleted, 1); // the fresh login's token
  assert.equal(d2.sockets_closed, 1);
  await closedWith(a3, 'revoked');
  const d3 = ok(await admin('revoke', { uid: alice.id }));
  assert.equal(d3.tokens_deleted, 0);
  assert.equal(d3.sockets_closed, 0);
});

test('disable refuses login with account_disabled and kills tokens and sockets; enable lets login work again', async (t) => {
  const carol = await register(srv, uname('carol'));
  const bob = await register(srv, uname('bob'));
  const c1 = await ChatSocket.bound(srv, carol, t);
  const c2 = await ChatSocket.open(srv, t);
  ok(await post(srv, '/chat/bind', { client_id: c2.clientId, bind_nonce: c2.bindNonce }, { token: carol.token }));
  ok(await me(carol.token));

  const d = ok(await admin('disable', { uid: String(carol.id) })); // a decimal string is fine too
  assert.equal(d.disabled, true);
  assert.equal(d.tokens_deleted, 1);
  assert.equal(d.sockets_closed, 2);
  for (const s of [c1, c2]) await closedWith(s, 'account_disabled');
  fails(await me(carol.token), 401, 'unauthorized');

  // Login: the right password is told the account is disabled, a wrong one
  // learns nothing more than for any account.
  fails(await post(srv, '/user/login', { username: carol.username, password: carol.password }), 403, 'account_disabled');
  fails(await post(srv, '/user/login', { username: carol.username, password: 'wrong-password' }), 401, 'bad_credentials');
  // Disabled users are not found by search; messages to them still store.
  assert.deepEqual(ok(await get(srv, `/user/search?q=${encodeURIComponent(carol.username)}`, { token: bob.token })), []);

  const e = ok(await admin('enable', { uid: carol.id }));
  assert.deepEqual(e, { uid: carol.id, disabled: false, tokens_deleted: 0 });
  fails(await me(carol.token), 401, 'unauthorized'); // old tokens do not come back
  const fresh = await login(srv, carol.username, carol.password);
  assert.equal(ok(await me(fresh.token)).id, carol.id);
  assert.deepEqual(ok(await get(srv, `/user/search?q=${encodeURIComponent(carol.username)}`, { token: bob.token })).map((u) => u.id), [carol.id]);
  await ChatSocket.bound(srv, { ...carol, token: fresh.token }, t);
});

test('a JWT user is covered by the same revoke: older JWTs refused, newer ones work', async (t) => {
  const sub = `ext-${crypto.randomBytes(6).toString('hex')}`;
  const name = uname('jw');
  const old = mintJwt({ sub, username: name, exp: nowS() + 600, iat: nowS() - 5 }, JWT_SECRET);
  const noIat = mintJwt({ sub, username: name, exp: nowS() + 601 }, JWT_SECRET);
  const u = ok(await me(old));
  ok(await me(noIat));
  const s1 = await ChatSocket.bound(srv, { ...u, token: old }, t);
  const s2 = await ChatSocket.bound(srv, { ...u, token: noIat }, t);

  const d = ok(await admin('revoke', { uid: u.id }));
  assert.equal(d.sockets_closed, 2);
  assert.equal(d.tokens_deleted, 0);
  for (const s of [s1, s2]) await closedWith(s, 'revoked');
  fails(await me(old), 401, 'unauthorized');
  fails(await me(noIat), 401, 'unauthorized'); // no iat: cannot be newer
  // A JWT issued from jwt_not_before on works.
  const fresh = mintJwt({ sub, username: name, exp: nowS() + 600, iat: d.jwt_not_before }, JWT_SECRET);
  assert.equal(ok(await me(fresh)).id, u.id);
  await ChatSocket.bound(srv, { ...u, token: fresh }, t);

  // Disable refuses even a new JWT; enable lets it in again.
  ok(await admin('disable', { uid: u.id }));
  const newer = mintJwt({ sub, username: name, exp: nowS() + 700, iat: d.jwt_not_before + 1 }, JWT_SECRET);
  fails(await me(newer), 401, 'unauthorized');
  fails(await me(fresh), 401, 'unauthorized');
  ok(await admin('enable', { uid: u.id }));
  assert.equal(ok(await me(newer)).id, u.id);
  fails(await me(old), 401, 'unauthorized');
});

test('the methods refuse without the API secret, and check their input', async () => {
  const u = await register(srv, uname('dave'));
  for (const action of ['revoke', 'disable', 'enable']) {
    fails(await admin(action, { uid: u.id }, { secret: null }), 401, 'unauthorized');
    fails(await admin(action, { uid: u.id }, { secret: SECRET + 'x' }), 401, 'unauthorized');
    fails(await admin(action, { uid: u.id }, { secret: u.token }), 401, 'unauthorized'); // a user token is not the secret
  }
  ok(await me(u.token)); // nothing happened
  fails(await admin('revoke', { uid: u.id }, { method: 'GET' }), 405, 'method_not_allowed');
  fails(await admin('delete', { uid: u.id }), 404, 'not_found');
  fails(await admin('revoke', 'not json'), 400, 'bad_json');
  fails(await admin('revoke', {}), 400, 'missing_field');
  for (const uid of [0, -3, 'x7', 1.5, null, '']) fails(await admin('revoke', { uid }), 400, 'bad_field');
  fails(await admin('revoke', { uid: 2 ** 52 }), 404, 'not_found');
  fails(await admin('enable', { uid: 2 ** 52 }), 404, 'not_found');
  ok(await me(u.token));
});

test('with no --api-secret the admin API is off (403 api_disabled)', async () => {
  const plain = await startServer();
  try {
    const u = await register(plain, uname('erin'));
    fails(await admin('revoke', { uid: u.id }, { s: plain }), 403, 'api_disabled');
    fails(await admin('revoke', { uid: u.id }, { s: plain, secret: null }), 403, 'api_disabled');
    ok(await get(plain, '/user/me', { token: u.token }));
  } finally {
    await plain.stop();
  }
});
