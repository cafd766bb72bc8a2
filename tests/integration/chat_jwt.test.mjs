// Accounts from HS256 JWTs (--jwt-secret): the user is created on first sight
// from sub/username/userpic (or name/picture), keeps its id, binds a socket and
// chats with a password user; expired, missing exp, bad signature, tampered,
// alg none and other algs are all 401; nbf in the future is 401; a huge exp is
// accepted (no overflow: the ASan+UBSan build reports any); logout revokes a
// JWT until its exp (also across a restart) and closes the sockets it bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, mintJwt, must, ok, post, register, restartServer, send, uname , dropPresence } from './lib/chat.mjs';

const SECRET = 'jwt-test-secret-' + crypto.randomBytes(8).toString('hex');
const srv = await startServer({ options: { 'jwt-secret': SECRET, 'login-rate': 1000 } });
after(() => srv.stop());

const nowS = () => Math.floor(Date.now() / 1000);
const subOf = () => `ext-${crypto.randomBytes(6).toString('hex')}`;
const jwt = (claims, opts) => mintJwt({ exp: nowS() + 600, ...claims }, SECRET, opts);
const me = (token) => get(srv, '/user/me', { token });

test('a JWT user is created on first sight, keeps its id, and its claims fill the profile', async () => {
  const sub = subOf();
  const name = uname('jw');
  const token = jwt({ sub, username: name, userpic: 'https://example.com/j.png' });
  const u = ok(await me(token), 'first sight');
  assert.deepEqual(u, { id: u.id, username: name, userpic: 'https://example.com/j.png' });
  assert.ok(Number.isSafeInteger(u.id) && u.id > 0);
  // Another token for the same sub is the same user.
  const again = ok(await me(jwt({ sub, username: name, userpic: 'https://example.com/j.png', iat: nowS() })));
  assert.deepEqual(again, u);
  // The token: header works for JWTs too.
  assert.deepEqual(ok(await get(srv, '/user/me', { token, via: 'header' })), u);
  // A later token with new claims refreshes the profile, same id.
  const renamed = uname('jr');
  assert.deepEqual(ok(await me(jwt({ sub, username: renamed, userpic: '/p/new.png' }))), { id: u.id, username: renamed, userpic: '/p/new.png' });

  // name/picture claims, and an integer sub.
  const intSub = 100000 + Math.floor(Math.random() * 1e6);
  const alt = uname('jn');
  const u2 = ok(await me(jwt({ sub: intSub, name: alt, picture: 'https://example.com/n.png' })));
  assert.deepEqual(u2, { id: u2.id, username: alt, userpic: 'https://example.com/n.png' });
  assert.notEqual(u2.id, u.id);
  assert.equal(ok(await me(jwt({ sub: String(intSub), name: alt, picture: 'https://example.com/n.png' }))).id, u2.id, 'sub 123 and "123" are the same user');

  // A JWT account has no password: login with any password is refused.
  fails(await post(srv, '/user/login', { username: renamed, password: 'anything-at-all' }), 401, 'bad_credentials');
});

test('a JWT user binds both ways and chats with a password user', async (t) => {
  const bob = await register(srv, uname('pw'));
  const jane = { token: jwt({ sub: subOf(), username: uname('jane'), userpic: 'https://example.com/jane.png' }) };
  Object.assign(jane, ok(await me(jane.token)));
  assert.notEqual(jane.id, bob.id);

  const j1 = await ChatSocket.bound(srv, jane, t); // socket form with the JWT
  const j2 = await ChatSocket.open(srv, t);
  assert.deepEqual(ok(await post(srv, '/chat/bind', { type: 'bind', client_id: j2.clientId, bind_nonce: j2.bindNonce }, { token: jane.token })), { uid: jane.id, client_id: j2.clientId });
  const b1 = await ChatSocket.bound(srv, bob, t);

  // Bob finds her by name.
  const found = dropPresence(await must(srv, 'GET', `/user/search?q=${encodeURIComponent(jane.username)}`, { token: bob.token }));
  assert.deepEqual(found, [{ id: jane.id, username: jane.username, userpic: jane.userpic }]);

  j1.sendMsg(bob, 'hi from a JWT account', { client_msg_id: 'j-1' });
  const m1 = (await j1.expect('ack')).message;
  assert.equal(m1.from_id, jane.id);
  assert.equal(m1.from_username, jane.username);
  assert.equal(m1.from_userpic, 'https://example.com/jane.png');
  assert.deepEqual(await b1.next(), { type: 'message', message: m1 });
  assert.deepEqual(await j2.next(), { type: 'message', message: m1 });
  await j1.quiet();

  const m2 = await send(srv, bob, jane, 'hello jane');
  for (const s of [j1, j2, b1]) assert.deepEqual(await s.next(), { type: 'message', message: m2 });
  assert.deepEqual(await must(srv, 'GET', `/chat/history?userid=${bob.id}`, { token: jane.token }), [m2, m1]);
  assert.deepEqual(await must(srv, 'GET', '/chat/unread', { token: jane.token }), { total: 1, conversations: [{ userid: bob.id, noreadnum: 1 }], groups: [] });
  assert.deepEqual(await must(srv, 'POST', '/chat/read', { token: jane.token, body: { userid: bob.id, client_id: j1.clientId } }), { total: 0 });
  assert.deepEqual(await j2.next(), { type: 'read', userid: bob.id, total: 0 });
  assert.deepEqual(await b1.next(), { type: 'receipt', userid: jane.id, last_read_id: m2.id });
  const list = dropPresence(await must(srv, 'GET', '/chat/list', { token: bob.token }));
  assert.deepEqual(list.map((e) => [e.userid, e.username, e.userpic, e.noreadnum, e.last_message_id]), [[jane.id, jane.username, jane.userpic, 1, m2.id]]);
});

test('a JWT whose username is taken by another user gets a distinct account', async () => {
  const bob = await register(srv, uname('tk'));
  const token = jwt({ sub: subOf(), username: bob.username });
  const u = ok(await me(token));
  assert.notEqual(u.id, bob.id);
  assert.notEqual(u.username.toLowerCase(), bob.username.toLowerCase(), 'usernames stay unique');
  assert.deepEqual(ok(await me(bob.token)).id, bob.id, 'bob is untouched');
});

test('refused JWTs: expired, no exp, bad signature, tampered, alg none, other algs, malformed -> 401', async (t) => {
  const sub = subOf();
  const claims = { sub, username: uname('jx'), exp: nowS() + 600 };
  const good = mintJwt(claims, SECRET);
  const [h, p] = good.split('.');
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const hmac = (s) => crypto.createHmac('sha256', SECRET).update(s).digest('base64url');
  const cases = [
    ['expired', mintJwt({ ...claims, exp: nowS() - 10 }, SECRET)],
    ['exp now', mintJwt({ ...claims, exp: nowS() }, SECRET)],
    ['no exp', mintJwt({ sub, username: claims.username }, SECRET)],
    ['exp not a number', mintJwt({ ...claims, exp: 'tomorrow' }, SECRET)],
    ['no sub', mintJwt({ username: claims.username, exp: claims.exp }, SECRET)],
    ['signed with another secret', mintJwt(claims, SECRET + 'x')],
    ['payload changed after signing', `${h}.${b64({ ...claims, sub: 'someone-else' })}.${good.split('.')[2]}`],
    ['signature cut short', good.slice(0, -2)],
    ['no signature', `${h}.${p}.`],
    ['alg none, empty signature', mintJwt(claims, SECRET, { header: { alg: 'none', typ: 'JWT' }, signature: '' })],
    ['alg none, correctly HMACed', (() => { const s = `${b64({ alg: 'none', typ: 'JWT' })}.${p}`; return `${s}.${hmac(s)}`; })()],
    ['alg HS512 header, HS256 signature', (() => { const s = `${b64({ alg: 'HS512', typ: 'JWT' })}.${p}`; return `${s}.${hmac(s)}`; })()],
    ['alg RS256 header', (() => { const s = `${b64({ alg: 'RS256', typ: 'JWT' })}.${p}`; return `${s}.${hmac(s)}`; })()],
    ['two parts', `${h}.${p}`],
    ['four parts', `${good}.x`],
    ['header not JSON', (() => { const s = `${Buffer.from('nope').toString('base64url')}.${p}`; return `${s}.${hmac(s)}`; })()],
  ];
  for (const [name, token] of cases) {
    fails(await me(token), 401, 'unauthorized', undefined, name);
  }
  // None of them created the user; the good one does (and only now).
  assert.equal(ok(await me(good)).username, claims.username);

  // The socket form refuses them as well (one socket each: a socket is closed after 3 failed binds).
  let s;
  for (const [name, token] of cases.slice(0, 2).concat(cases.slice(9, 11))) {
    s = await ChatSocket.open(srv, t);
    s.sendJson({ type: 'bind', token });
    const e = await s.expect('error');
    assert.equal(e.code, 'unauthorized', name);
    assert.equal(e.op, 'bind', name);
  }
  s.sendMsg(1, 'not bound');
  assert.equal((await s.expect('error')).code, 'not_bound');
});

test('search: at most 20 results, prefixes only, no wildcard characters', async () => {
  // JWT accounts cost no password hashing, so make many.
  const tag = `q${crypto.randomBytes(4).toString('hex')}`;
  const names = Array.from({ length: 24 }, (_, i) => `${tag}${String(i).padStart(2, '0')}`);
  names.push(`${tag}_under`, `${tag}Xunder`, `${tag}%pct`, `z${tag}inner`);
  const users = [];
  for (const n of names) users.push({ ...ok(await me(jwt({ sub: `s-${n}`, username: n }))), name: n });
  const asker = { token: jwt({ sub: `s-asker-${tag}`, username: `asker-${tag}` }) };
  const r = dropPresence(await must(srv, 'GET', `/user/search?q=${tag}`, { token: asker.token }));
  assert.equal(r.length, 20, 'at most 20 results');
  assert.ok(r.every((u) => u.username.startsWith(tag)), 'prefix matches only (not z<tag>inner)');
  assert.deepEqual((await must(srv, 'GET', `/user/search?q=${tag}inner`, { token: asker.token })), [], 'no substring match');
  // '_' and '%' are plain characters, not LIKE wildcards.
  assert.deepEqual((await must(srv, 'GET', `/user/search?q=${tag}_`, { token: asker.token })).map((u) => u.username), [`${tag}_under`]);
  assert.deepEqual((await must(srv, 'GET', `/user/search?q=${encodeURIComponent(`${tag}%`)}`, { token: asker.token })).map((u) => u.username), [`${tag}%pct`]);
});

test('a JWT userpic that is not an http(s) URL or a /path is not stored as the profile picture', async () => {
  const u = ok(await me(jwt({ sub: subOf(), username: uname('jp'), userpic: 'javascript:alert(1)' })));
  assert.ok(!/^\s*javascript:/i.test(u.userpic), `userpic ${JSON.stringify(u.userpic)} must not be a javascript: URL (field rule: http(s) URL or /path)`);
});

test('a JWT stops working when it expires, even after it was accepted', async () => {
  const exp = nowS() + 2;
  const token = mintJwt({ sub: subOf(), username: uname('je'), exp }, SECRET);
  ok(await me(token), 'valid before exp');
  ok(await get(srv, '/chat/list', { token }), 'valid before exp');
  const wait = exp * 1000 - Date.now() + 100;
  if (wait > 0) await sleep(wait);
  fails(await me(token), 401, 'unauthorized', undefined, 'after exp');
  fails(await get(srv, '/chat/list', { token }), 401, 'unauthorized', undefined, 'after exp');
});

test('nbf: a JWT not valid yet is refused (HTTP and socket); one valid since the past is accepted', async (t) => {
  const sub = subOf();
  const name = uname('nb');
  fails(await me(jwt({ sub, username: name, nbf: nowS() + 600 })), 401, 'unauthorized', undefined, 'nbf in 10 minutes');
  fails(await me(jwt({ sub, username: name, nbf: 1e300 })), 401, 'unauthorized', undefined, 'nbf 1e300');
  fails(await me(jwt({ sub, username: name, nbf: 'now' })), 401, 'unauthorized', undefined, 'nbf not a number');
  const s = await ChatSocket.open(srv, t);
  s.sendJson({ type: 'bind', token: jwt({ sub, username: name, nbf: nowS() + 600 }) });
  assert.equal((await s.expect('error')).code, 'unauthorized');
  assert.equal(ok(await me(jwt({ sub, username: name, nbf: nowS() - 5 }))).username, name);
});

test('a huge exp (1e300, 2^63-1, 2^53) is a far-future JWT, not an overflow', async (t) => {
  for (const exp of ['1e300', '9223372036854775807', '9007199254740992', '9.3e18']) {
    const name = uname('hx');
    const claims = JSON.stringify({ sub: subOf(), username: name }).slice(0, -1) + `,"exp":${exp}}`;
    const b64 = (x) => Buffer.from(x).toString('base64url');
    const head = `${b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64(claims)}`;
    const token = `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
    assert.equal(ok(await me(token), `exp ${exp}`).username, name);
    assert.equal(ok(await me(token), `exp ${exp}, from the cache`).username, name);
    const s = await ChatSocket.open(srv, t);
    s.sendJson({ type: 'bind', token });
    assert.equal((await s.expect('bind')).status, true);
  }
});

test('logout revokes a JWT: refused at once (also from the cache and on sockets), other JWTs of the user still work', async (t) => {
  const sub = subOf();
  const name = uname('lo');
  const token = jwt({ sub, username: name });
  const u = ok(await me(token)); // now in the token cache
  const sock = await ChatSocket.open(srv, t);
  sock.sendJson({ type: 'bind', token });
  assert.equal((await sock.expect('bind')).uid, u.id);
  assert.equal(ok(await post(srv, '/user/logout', undefined, { token })), true);
  fails(await me(token), 401, 'unauthorized', undefined, 'the logged-out JWT');
  fails(await get(srv, '/chat/list', { token }), 401, 'unauthorized', undefined, 'the logged-out JWT');
  fails(await post(srv, '/user/logout', undefined, { token }), 401, 'unauthorized', undefined, 'a second logout');
  // The socket it bound was told and closed.
  const e = await sock.expect('error');
  assert.equal(e.code, 'logged_out');
  const closed = await sock.ws.waitClose(3000);
  assert.equal(closed.code, 1008);
  // A new socket cannot bind with it.
  const s2 = await ChatSocket.open(srv, t);
  s2.sendJson({ type: 'bind', token });
  assert.equal((await s2.expect('error')).code, 'unauthorized');
  // The user is not logged out everywhere: another JWT (another iat) works.
  assert.equal(ok(await me(jwt({ sub, username: name, iat: nowS() - 1 }))).id, u.id);
});

test('a logged-out JWT stays refused after a restart', async () => {
  const own = await startServer({ options: { 'jwt-secret': SECRET } });
  let again;
  try {
    const token = jwt({ sub: subOf(), username: uname('lr') });
    ok(await get(own, '/user/me', { token }));
    ok(await post(own, '/user/logout', undefined, { token }));
    own.signal('SIGTERM');
    await own.exited;
    again = await restartServer(own);
    fails(await get(own, '/user/me', { token }), 401, 'unauthorized', undefined, 'after the restart');
    ok(await get(own, '/user/me', { token: jwt({ sub: subOf(), username: uname('lr') }) }), 'other JWTs work after the restart');
  } finally {
    if (again) await again.stop();
    await own.stop();
  }
});

// Claims follow the sign-up rules (docs/API.md): a name that breaks them is
// replaced by "user<sub>", one too long is cut on a character boundary, a
// picture that does not fit is dropped; never a 500 (a name cut in the middle
// of a character used to give its user a 500 on every request).
test('JWT claims: U+202E, zero-width, control and mixed-script names are replaced by user<sub>, never a 500', async () => {
  for (const bad of ['evil\u202egpj.exe', 'al\u200bice', 'bob\u0007', 'p\u0430ypal', 'x#y']) {
    const sub = subOf();
    const u = ok(await me(jwt({ sub, username: bad })), JSON.stringify(bad));
    assert.equal(u.username, `user${sub}`, JSON.stringify(bad));
    ok(await get(srv, '/chat/list', { token: jwt({ sub, username: bad }) }), 'keeps working');
  }
  assert.match(srv.stderr(), /JWT name claim refused/);
});

test('JWT claims: a long name is cut on a character boundary, a long picture dropped; the user works', async () => {
  const sub = subOf();
  // 65 ü are 130 bytes: the old 130-byte buffer cut the last one in half
  const token = jwt({ sub, name: 'ü'.repeat(65), picture: 'https://example.com/' + 'é'.repeat(300) + '.png' });
  const u = ok(await me(token));
  assert.equal(u.username, 'ü'.repeat(16), '32 bytes, whole characters');
  assert.equal(u.userpic, '');
  const peer = await register(srv, uname('jc'));
  const m = ok(await post(srv, '/chat/send', { to_id: peer.id, type: 'text', data: 'hi' }, { token }));
  assert.equal(m.from_username, 'ü'.repeat(16));
  ok(await get(srv, '/chat/list', { token: peer.token }));
  // NFD in, NFC out
  assert.equal(ok(await me(jwt({ sub: subOf(), name: `Zoe\u0308${sub.slice(-6)}` }))).username, `Zoë${sub.slice(-6)}`);
});

test('JWT claims: a name that looks like a password user\'s gets "#<sub>", and every spelling of the password user still logs in', async () => {
  const tail = String(Math.floor(Math.random() * 1e9));
  const pw = await register(srv, `Jürgen${tail}`);
  const sub = subOf();
  const u = ok(await me(jwt({ sub, username: `JU\u0308RGEN${tail}` })));
  assert.equal(u.username, `JÜRGEN${tail}#${sub}`);
  assert.notEqual(u.id, pw.id);
  assert.equal(ok(await post(srv, '/user/login', { username: `JÜRGEN${tail}`, password: pw.password })).user.id, pw.id);
});
