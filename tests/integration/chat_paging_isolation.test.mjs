// History and sync paging at the edges (before= exclusive, limit=1, limit
// above --page-limit, before=0, empty conversations, sync after the last id),
// and isolation: one user never sees another pair's messages, bind refuses a
// client_id bound to someone else (403) or unknown (404), the token works in
// both headers, logout revokes it, wrong or missing tokens get 401.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { ChatSocket, byKey, fails, get, mintJwt, ok, post, registerAll, send, syncAll, uname, historyAll } from './lib/chat.mjs';

const PAGE = 5;
const API_SECRET = 'iso-api-secret';
const srv = await startServer({ options: { 'page-limit': PAGE, 'login-rate': 1000, 'api-secret': API_SECRET } });
after(() => srv.stop());

const history = (u, q) => get(srv, `/chat/history?${q}`, { token: u.token });
const sync = (u, q) => get(srv, `/chat/sync?${q}`, { token: u.token });

describe('paging', () => {
  let alice, bob, carol, dave;
  let ab; // alice <-> bob, oldest first
  let ac; // alice <-> carol, oldest first
  before(async () => {
    [alice, bob, carol, dave] = await registerAll(srv, [uname('pa'), uname('pb'), uname('pc'), uname('pd')]);
    ab = [];
    ac = [];
    // Interleave two conversations so sync has to merge them: 7 with bob, 4 with carol.
    for (let i = 0; i < 7; i++) {
      ab.push(await send(srv, i % 2 ? bob : alice, i % 2 ? alice : bob, `ab ${i}`));
      if (i < 4) ac.push(await send(srv, i % 2 ? alice : carol, i % 2 ? carol : alice, `ac ${i}`));
    }
  });
  const rev = (a) => [...a].reverse();

  test('history: newest first, limit=1, before= exclusive, before=0 is the newest, the oldest page ends empty', async () => {
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&limit=1`)), [ab[6]]);
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&limit=${PAGE}`)), rev(ab).slice(0, PAGE));
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&before=0&limit=3`)), [ab[6], ab[5], ab[4]], 'before=0 = from the newest');
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&before=${ab[6].id}&limit=${PAGE}`)), [ab[5], ab[4], ab[3], ab[2], ab[1]], 'before is exclusive');
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&before=${ab[1].id}&limit=${PAGE}`)), [ab[0]]);
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&before=${ab[0].id}&limit=${PAGE}`)), [], 'nothing before the first message');
    assert.deepEqual(ok(await history(bob, `userid=${alice.id}&before=${ab[4].id}&limit=2`)), [ab[3], ab[2]], 'the same from the other side');
    // A before= id from another conversation still only pages this one.
    assert.deepEqual(ok(await history(alice, `userid=${bob.id}&before=${ac[3].id}&limit=${PAGE}`)), rev(ab.filter((m) => m.id < ac[3].id)).slice(0, PAGE));
    // Walking pages of 2 gives every message once, newest first.
    assert.deepEqual(await historyAll(srv, alice, bob.id, 2), rev(ab));
    assert.deepEqual(await historyAll(srv, carol, alice.id, 3), rev(ac));
  });

  test('history: a conversation without messages is an empty list; so is one with an unknown user', async () => {
    assert.deepEqual(ok(await history(carol, `userid=${dave.id}`)), []);
    assert.deepEqual(ok(await history(dave, `userid=${alice.id}&limit=1`)), []);
    assert.deepEqual(ok(await history(dave, `userid=987654321`)), []);
    assert.deepEqual(ok(await get(srv, '/chat/list', { token: dave.token })), []);
    assert.deepEqual(ok(await get(srv, '/chat/unread', { token: dave.token })), { total: 0, conversations: [], groups: [] });
    assert.deepEqual(ok(await sync(dave, 'after=0')), []);
  });

  test('history: limit above --page-limit, 0, negative or not a number, bad before, bad or missing userid -> 400', async () => {
    fails(await history(alice, `userid=${bob.id}&limit=${PAGE + 1}`), 400, 'bad_field', 'limit');
    fails(await history(alice, `userid=${bob.id}&limit=400`), 400, 'bad_field', 'limit');
    fails(await history(alice, `userid=${bob.id}&limit=0`), 400, 'bad_field', 'limit');
    fails(await history(alice, `userid=${bob.id}&limit=-1`), 400, 'bad_field', 'limit');
    fails(await history(alice, `userid=${bob.id}&limit=ten`), 400, 'bad_field', 'limit');
    fails(await history(alice, `userid=${bob.id}&before=-1`), 400, 'bad_field', 'before');
    fails(await history(alice, `userid=${bob.id}&before=x`), 400, 'bad_field', 'before');
    fails(await history(alice, `limit=1`), 400, 'missing_field', 'userid');
    fails(await history(alice, `userid=0`), 400, 'bad_field', 'userid');
    fails(await history(alice, `userid=abc`), 400, 'bad_field', 'userid');
  });

  test('history without limit returns at most --page-limit messages', async () => {
    // The default page (20) is larger than --page-limit here (5): the limit must still hold.
    const r = ok(await history(alice, `userid=${bob.id}`));
    assert.deepEqual(r.map((m) => m.id), rev(ab).slice(0, PAGE).map((m) => m.id), `${r.length} messages with --page-limit ${PAGE}`);
  });

  test('sync: oldest first across conversations, after= exclusive, limit, after the last id is empty', async () => {
    const all = byKey([...ab, ...ac], 'id');
    assert.equal(all.length, 11);
    assert.deepEqual(ok(await sync(alice, 'after=0&limit=1')), [all[0]]);
    assert.deepEqual(ok(await sync(alice, 'after=0')), all.slice(0, PAGE), 'the default limit is --page-limit');
    assert.deepEqual(ok(await sync(alice, '')), all.slice(0, PAGE), 'after defaults to 0');
    assert.deepEqual(ok(await sync(alice, `after=${all[4].id}&limit=${PAGE}`)), all.slice(5, 5 + PAGE));
    assert.deepEqual(ok(await sync(alice, `after=${all[9].id}`)), [all[10]]);
    assert.deepEqual(ok(await sync(alice, `after=${all[10].id}`)), [], 'after the last id: empty');
    assert.deepEqual(ok(await sync(alice, `after=${all[10].id + 1000}`)), []);
    assert.deepEqual(await syncAll(srv, alice, { limit: 2 }), all);
    assert.deepEqual(await syncAll(srv, bob, { limit: 3 }), ab);
    assert.deepEqual(await syncAll(srv, carol), ac);
    fails(await sync(alice, `after=0&limit=${PAGE + 1}`), 400, 'bad_field', 'limit');
    fails(await sync(alice, 'after=0&limit=0'), 400, 'bad_field', 'limit');
    fails(await sync(alice, 'after=-5'), 400, 'bad_field', 'after');
    fails(await sync(alice, 'after=abc'), 400, 'bad_field', 'after');
  });
});

describe('isolation and auth', () => {
  test('a user sees only their own conversations', async () => {
    const [a, b, c] = await registerAll(srv, [uname('xa'), uname('xb'), uname('xc')]);
    const ab1 = await send(srv, a, b, 'secret between a and b');
    const ab2 = await send(srv, b, a, 'reply between a and b');
    const ca = await send(srv, c, a, 'c writes a');
    // c asks for the history "with b" and "with a": only c's own messages ever come back.
    assert.deepEqual(ok(await history(c, `userid=${b.id}`)), []);
    assert.deepEqual(ok(await history(c, `userid=${a.id}`)), [ca]);
    assert.deepEqual(ok(await history(c, `userid=${b.id}&before=${ab2.id + 1}`)), []);
    assert.deepEqual(await syncAll(srv, c), [ca]);
    const cl = ok(await get(srv, '/chat/list', { token: c.token }));
    assert.deepEqual(cl.map((e) => e.userid), [a.id]);
    assert.equal(cl[0].data, 'c writes a');
    assert.deepEqual(ok(await get(srv, '/chat/unread', { token: c.token })), { total: 0, conversations: [], groups: [] });
    assert.deepEqual(await syncAll(srv, b), [ab1, ab2]);
    assert.deepEqual(ok(await get(srv, '/chat/list', { token: b.token })).map((e) => e.userid), [a.id]);
    // c reading "b" resets nothing of a's or b's.
    assert.deepEqual(ok(await post(srv, '/chat/read', { userid: b.id }, { token: c.token })), { total: 0 });
    const ua = ok(await get(srv, '/chat/unread', { token: a.token }));
    assert.deepEqual({ ...ua, conversations: byKey(ua.conversations, 'userid') }, { total: 2, conversations: byKey([{ userid: c.id, noreadnum: 1 }, { userid: b.id, noreadnum: 1 }], 'userid'), groups: [] });
    assert.deepEqual(ok(await get(srv, '/chat/unread', { token: b.token })), { total: 1, conversations: [{ userid: a.id, noreadnum: 1 }], groups: [] });
  });

  test('bind: someone else\'s client_id -> 403, a nonce of another client_id -> 403, closed -> 404, missing -> 400; socket bind to another user -> forbidden', async (t) => {
    const [a, b] = await registerAll(srv, [uname('ba'), uname('bb')]);
    const s = await ChatSocket.open(srv, t);
    assert.deepEqual(ok(await post(srv, '/chat/bind', { type: 'bind', client_id: s.clientId, bind_nonce: s.bindNonce }, { token: a.token })), { uid: a.id, client_id: s.clientId });
    // Binding again as the same user is fine.
    assert.deepEqual(ok(await post(srv, '/chat/bind', { type: 'bind', client_id: s.clientId, bind_nonce: s.bindNonce }, { token: a.token })), { uid: a.id, client_id: s.clientId });
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: s.clientId, bind_nonce: s.bindNonce }, { token: b.token }), 403, 'forbidden', 'client_id');
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: 'AAAAAAAAAAAAAAAAAAAAAA', bind_nonce: s.bindNonce }, { token: a.token }), 403, 'bad_nonce', 'bind_nonce');
    fails(await post(srv, '/chat/bind', { type: 'bind' }, { token: a.token }), 400, 'missing_field', 'client_id');
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: s.clientId, bind_nonce: s.bindNonce }), 401, 'unauthorized');

    // The socket form: a socket bound to a, then a bind with b's token on it.
    s.sendJson({ type: 'bind', token: b.token });
    const e = await s.expect('error');
    assert.equal(e.code, 'forbidden');
    assert.equal(e.op, 'bind');
    // Still a's: a message from b reaches it, and a send from it is from a.
    const m = await send(srv, b, a, 'to a');
    assert.deepEqual(await s.next(), { type: 'message', message: m });
    s.sendMsg(b, 'from the socket');
    const ack = await s.expect('ack');
    assert.equal(ack.message.from_id, a.id);

    // A closed connection's client_id is unknown.
    const gone = await ChatSocket.open(srv);
    const id = gone.clientId;
    const nonce = gone.bindNonce;
    await gone.ws.close();
    await new Promise((r) => setTimeout(r, 100));
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: id, bind_nonce: nonce }, { token: a.token }), 404, 'not_found');

    // Socket bind with a wrong token, then a send on the unbound socket.
    const u = await ChatSocket.open(srv, t);
    u.sendJson({ type: 'bind', token: 'not-a-real-token' });
    const e2 = await u.expect('error');
    assert.equal(e2.code, 'unauthorized');
    assert.equal(e2.op, 'bind');
    u.sendMsg(a, 'who am I', { client_msg_id: 'nb-1' });
    const e3 = await u.expect('error');
    assert.equal(e3.code, 'not_bound');
    assert.equal(e3.op, 'send');
    assert.equal(e3.client_msg_id, 'nb-1');
    await u.quiet();
  });

  test('the token works as Authorization: Bearer and as a token: header; wrong or missing -> 401', async () => {
    const [a] = await registerAll(srv, [uname('ta')]);
    const user = { id: a.id, username: a.username, userpic: a.userpic };
    assert.deepEqual(ok(await get(srv, '/user/me', { token: a.token, via: 'bearer' })), user);
    assert.deepEqual(ok(await get(srv, '/user/me', { token: a.token, via: 'header' })), user);
    assert.deepEqual(ok(await get(srv, '/chat/list', { token: a.token, via: 'header' })), []);
    fails(await get(srv, '/user/me'), 401, 'unauthorized');
    fails(await get(srv, '/user/me', { token: a.token.slice(0, -1) + (a.token.endsWith('A') ? 'B' : 'A') }), 401, 'unauthorized');
    fails(await get(srv, '/user/me', { token: 'x' }), 401, 'unauthorized');
    fails(await get(srv, '/user/me', { headers: { Authorization: `Basic ${a.token}` } }), 401, 'unauthorized');
    fails(await get(srv, '/user/me', { token: '' , via: 'header'}), 401, 'unauthorized');
    // A JWT-shaped token on a server without --jwt-secret is just a wrong token.
    const jwt = mintJwt({ sub: String(a.id), exp: Math.floor(Date.now() / 1000) + 600 }, 'whatever');
    fails(await get(srv, '/user/me', { token: jwt }), 401, 'unauthorized');
    for (const [m, p, body] of [
      ['GET', '/user/search?q=a'],
      ['GET', '/chat/list'],
      ['GET', '/chat/unread'],
      ['GET', `/chat/history?userid=${a.id}`],
      ['GET', '/chat/sync'],
      ['POST', '/chat/send', { to_id: a.id, type: 'text', data: 'x' }],
      ['POST', '/chat/read', { userid: a.id }],
      ['POST', '/chat/bind', { type: 'bind', client_id: 'x' }],
      ['POST', '/user/logout'],
    ]) {
      const r = m === 'GET' ? await get(srv, p, { token: 'wrong-token' }) : await post(srv, p, body, { token: 'wrong-token' });
      fails(r, 401, 'unauthorized', undefined, `${m} ${p}`);
    }
  });

  test('logout revokes that token only', async () => {
    const [a] = await registerAll(srv, [uname('lo')]);
    const second = ok(await post(srv, '/user/login', { username: a.username, password: a.password }));
    assert.deepEqual(ok(await get(srv, '/user/me', { token: a.token })).id, a.id, 'token used once (cached)');
    assert.equal(ok(await post(srv, '/user/logout', undefined, { token: a.token })), true);
    fails(await get(srv, '/user/me', { token: a.token }), 401, 'unauthorized');
    fails(await get(srv, '/chat/list', { token: a.token, via: 'header' }), 401, 'unauthorized');
    fails(await post(srv, '/user/logout', undefined, { token: a.token }), 401, 'unauthorized');
    assert.equal(ok(await get(srv, '/user/me', { token: second.token })).id, a.id, 'the other session stays');
    // The revoked token cannot bind a socket either.
    const s = await ChatSocket.open(srv);
    s.sendJson({ type: 'bind', token: a.token });
    const e = await s.expect('error');
    assert.equal(e.code, 'unauthorized');
    s.terminate();
    // Logging out with the token: header works too.
    assert.equal(ok(await post(srv, '/user/logout', undefined, { token: second.token, via: 'header' })), true);
    fails(await get(srv, '/user/me', { token: second.token }), 401, 'unauthorized');
  });

  test('a socket bound to a uid by the server API (not with a token) cannot send chat messages', async (t) => {
    const [a, b] = await registerAll(srv, [uname('ga'), uname('gb')]);
    const s = await ChatSocket.open(srv, t);
    const r = await post(srv, '/gateway/bind_uid', { client_id: s.clientId, uid: String(a.id) }, { headers: { Authorization: `Bearer ${API_SECRET}` } });
    assert.equal(r.status, 200, r.text);
    s.sendMsg(b, 'impersonating a', { client_msg_id: 'imp-1' });
    const e = await s.expect('error');
    assert.equal(e.code, 'not_bound');
    assert.equal(e.client_msg_id, 'imp-1');
    assert.deepEqual(ok(await history(b, `userid=${a.id}`)), [], 'nothing stored');
  });
});
