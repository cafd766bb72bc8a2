// Who may bind a socket, and what a binding lets it do (issue #13, items 3,
// 4, 5 and 10):
//  - a gateway rebind (/gateway/bind_uid to another uid) or unbind ends the
//    chat binding: the socket can no longer send chat messages as anyone;
//  - POST /chat/bind needs the socket's bind_nonce from its init message, so a
//    stranger who knows only a client_id cannot claim the socket;
//  - --max-conns-per-user caps a user's bound sockets (socket bind, /chat/bind
//    and /gateway/bind_uid);
//  - a socket is closed after 3 failed binds.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor } from './lib/server.mjs';
import { api } from './lib/http.mjs';
import { ChatSocket, fails, mintJwt, ok, post, registerAll, uname } from './lib/chat.mjs';

const SECRET = 'bind-secret-0123456789';
const CAP = 3;
const srv = await startServer({ options: { 'api-secret': SECRET, 'max-conns-per-user': CAP } });
srv.secret = SECRET;
after(() => srv.stop());

const gw = async (method, body) => {
  const r = await api(srv, method, body);
  assert.equal(r.status, 200, `${method}: ${r.text}`);
  return r.body.data;
};

/** The socket's send is refused as not bound, with the client_msg_id, and the socket stays open. */
async function assertNotBound(s, what) {
  s.sendMsg(1, 'who am I now?', { client_msg_id: `nb-${what}` });
  const e = await s.expect('error');
  assert.equal(e.code, 'not_bound', `${what}: ${JSON.stringify(e)}`);
  assert.equal(e.op, 'send');
  assert.equal(e.client_msg_id, `nb-${what}`);
  await s.quiet(what);
}

describe('a gateway rebind or unbind ends the chat binding', () => {
  test('/gateway/bind_uid to another uid: the socket no longer sends as anyone', async (t) => {
    const [a, b] = await registerAll(srv, [uname('ga'), uname('gb')]);
    const s = await ChatSocket.bound(srv, a, t);
    s.sendMsg(b, 'as a', { client_msg_id: 'before' });
    assert.equal((await s.expect('ack')).message.from_id, a.id);

    // Rebinding to the same uid changes nothing.
    assert.equal(await gw('bind_uid', { client_id: s.clientId, uid: String(a.id) }), true);
    s.sendMsg(b, 'still a', { client_msg_id: 'same-uid' });
    assert.equal((await s.expect('ack')).message.from_id, a.id);

    // Moving it to b's uid: it now receives b's pushes (the gateway's business) but cannot send as b.
    assert.equal(await gw('bind_uid', { client_id: s.clientId, uid: b.id }), true);
    await assertNotBound(s, 'after bind_uid');
    assert.deepEqual(await gw('get_uid_by_client_id', { client_id: s.clientId }), String(b.id));

    // Only a bind with a token makes it a chat socket again: with b's token it sends as b.
    await s.bind(b);
    s.sendMsg(a, 'as b, with b\'s token', { client_msg_id: 'rebound' });
    assert.equal((await s.expect('ack')).message.from_id, b.id);
  });

  test('/gateway/unbind_uid: the socket no longer sends', async (t) => {
    const [a] = await registerAll(srv, [uname('ua')]);
    const s = await ChatSocket.bound(srv, a, t);
    assert.equal(await gw('unbind_uid', { client_id: s.clientId, uid: a.id }), true);
    await assertNotBound(s, 'after unbind_uid');
    // Unbound, it cannot be rebound with the gateway uid alone either.
    assert.equal(await gw('bind_uid', { client_id: s.clientId, uid: a.id }), true);
    await assertNotBound(s, 'after bind_uid back to the same uid');
  });
});

describe('POST /chat/bind needs the bind_nonce of the socket', () => {
  test('a stranger who knows only the client_id cannot bind it; the owner can', async (t) => {
    const [owner, stranger] = await registerAll(srv, [uname('own'), uname('str')]);
    const victim = await ChatSocket.open(srv, t);
    const mine = await ChatSocket.open(srv, t);
    assert.match(victim.bindNonce, /^[A-Za-z0-9_-]{22}$/);
    assert.notEqual(victim.bindNonce, mine.bindNonce, 'each socket has its own nonce');

    // Without a nonce: 400 naming bind_nonce.
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: victim.clientId }, { token: stranger.token }), 400, 'missing_field', 'bind_nonce');
    // With a nonce of another socket, made up, or of the wrong shape: 403 bad_nonce.
    for (const nonce of [mine.bindNonce, 'A'.repeat(22), victim.bindNonce.slice(0, 21), victim.bindNonce + 'x', victim.clientId]) {
      fails(await post(srv, '/chat/bind', { type: 'bind', client_id: victim.clientId, bind_nonce: nonce }, { token: stranger.token }), 403, 'bad_nonce', 'bind_nonce', nonce);
    }
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: victim.clientId, bind_nonce: 42 }, { token: stranger.token }), 400, 'bad_field', 'bind_nonce');
    // A bad nonce does not tell whether a client_id is online.
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: 'AAAAAAAAAAAAAAAAAAAAAA', bind_nonce: mine.bindNonce }, { token: stranger.token }), 403, 'bad_nonce');
    await victim.quiet('(nothing happened to the socket)');

    // The owner binds with the nonce its socket got.
    assert.deepEqual(
      ok(await post(srv, '/chat/bind', { type: 'bind', client_id: victim.clientId, bind_nonce: victim.bindNonce }, { token: owner.token })),
      { uid: owner.id, client_id: victim.clientId },
    );
    victim.sendMsg(stranger, 'from the owner', { client_msg_id: 'owned' });
    assert.equal((await victim.expect('ack')).message.from_id, owner.id);
    // The nonce proves the socket, not the user: with it the stranger still gets 403, bound to another user.
    fails(await post(srv, '/chat/bind', { type: 'bind', client_id: victim.clientId, bind_nonce: victim.bindNonce }, { token: stranger.token }), 403, 'forbidden', 'client_id');
  });
});

describe(`--max-conns-per-user ${CAP}`, () => {
  test('a socket bind past the cap: error too_many_connections, then close 1008', async (t) => {
    const [u] = await registerAll(srv, [uname('cap')]);
    const socks = [];
    for (let i = 0; i < CAP; i++) socks.push(await ChatSocket.bound(srv, u, t));
    const extra = await ChatSocket.open(srv, t);
    extra.sendJson({ type: 'bind', token: u.token });
    const e = await extra.expect('error');
    assert.equal(e.code, 'too_many_connections');
    assert.equal(e.op, 'bind');
    assert.match(e.msg, new RegExp(`${CAP} connections`));
    const closed = await extra.ws.closed;
    assert.equal(closed.code, 1008);
    assert.equal(closed.reason, 'too many connections for this user');
    assert.equal((await api(srv, 'get_client_id_by_uid', { uid: u.id })).body.data.length, CAP);

    // One device goes: there is room again.
    socks[0].terminate();
    await waitFor(async () => (await api(srv, 'get_client_id_by_uid', { uid: u.id })).body.data.length === CAP - 1);
    await ChatSocket.bound(srv, u, t);
  });

  test('/chat/bind past the cap: 429 too_many_connections, and the socket is told and closed', async (t) => {
    const [u] = await registerAll(srv, [uname('cah')]);
    for (let i = 0; i < CAP; i++) await ChatSocket.bound(srv, u, t);
    const extra = await ChatSocket.open(srv, t);
    fails(
      await post(srv, '/chat/bind', { type: 'bind', client_id: extra.clientId, bind_nonce: extra.bindNonce }, { token: u.token }),
      429,
      'too_many_connections',
    );
    assert.equal((await extra.expect('error')).code, 'too_many_connections');
    assert.equal((await extra.ws.closed).code, 1008);
  });

  test('/gateway/bind_uid is capped too: 429 naming the uid, the socket stays open and unbound', async (t) => {
    const [u] = await registerAll(srv, [uname('cag')]);
    for (let i = 0; i < CAP; i++) await ChatSocket.bound(srv, u, t);
    const extra = await ChatSocket.open(srv, t);
    const r = await api(srv, 'bind_uid', { client_id: extra.clientId, uid: u.id });
    assert.equal(r.status, 429, r.text);
    assert.equal(r.body.code, 'too_many_connections');
    assert.ok(r.body.msg.includes(String(u.id)), r.body.msg);
    assert.equal((await api(srv, 'get_uid_by_client_id', { client_id: extra.clientId })).body.data, null);
    await extra.quiet('(the API caller decides what to do with the socket)');
  });
});

test('a socket is closed (1008) after 3 failed binds', async (t) => {
  const s = await ChatSocket.open(srv, t);
  for (let i = 0; i < 3; i++) {
    s.sendJson({ type: 'bind', token: `made-up-token-${i}` });
    const e = await s.expect('error');
    assert.equal(e.code, 'unauthorized', JSON.stringify(e));
  }
  const closed = await s.ws.closed;
  assert.equal(closed.code, 1008);
  assert.equal(closed.reason, 'too many failed binds');
});

// Many users behind one address (an office NAT; every client reconnecting at
// once after a restart) bind together: the per-address limit counts failed
// binds only, so a herd of good tokens far above --bind-rate all bind.
test('100 users binding at once from one address all bind (--bind-rate 30 counts failures only)', async (t) => {
  const secret = 'herd-secret-0123456789';
  const own = await startServer({ options: { 'bind-rate': 30, 'jwt-secret': secret } });
  t.after(() => own.stop());
  // JWTs: 100 users without 100 password hashes
  const exp = Math.floor(Date.now() / 1000) + 600;
  const tokens = Array.from({ length: 100 }, (_, i) => mintJwt({ sub: `herd-${i}-${Date.now()}`, username: uname(`herd${i}`), exp }, secret));
  const socks = await Promise.all(tokens.map(() => ChatSocket.open(own, t)));
  socks.forEach((s, i) => s.sendJson({ type: 'bind', token: tokens[i] }));
  const answers = await Promise.all(socks.map((s) => s.next()));
  answers.forEach((m, i) => assert.equal(m.type, 'bind', `user ${i}: ${JSON.stringify(m)}`));
  assert.equal(new Set(answers.map((m) => m.uid)).size, 100, '100 distinct users');
});
