// Attack: keep using a session after its logout. Sockets bound with a token
// used to keep working after that token's logout. Now logout tells every
// socket the token bound on this node ({"type":"error","code":"logged_out"})
// and closes it (1008); the token is refused from then on (HTTP and socket
// bind), while sockets bound with the same user's other token keep working.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { ChatSocket, fails, get, login, ok, post, register, uname } from '../integration/lib/chat.mjs';
import { startVictim, fmt } from './lib/victim.mjs';

const srv = await startServer({ options: { 'login-rate': 1000 } });
after(() => srv.stop());

test('logout closes the sockets bound with that token, and only those', async (t) => {
  const victim = await startVictim(srv);
  const alice = await register(srv, uname('alice'));
  const other = await login(srv, alice.username, alice.password); // a second session
  const bob = await register(srv, uname('bob'));
  const a1 = await ChatSocket.bound(srv, alice, t);
  const a2 = await ChatSocket.bound(srv, alice, t);
  const keep = await ChatSocket.bound(srv, { ...alice, token: other.token }, t);
  const b = await ChatSocket.bound(srv, bob, t);
  ok(await get(srv, '/user/me', { token: alice.token })); // cached now

  assert.equal(ok(await post(srv, '/user/logout', undefined, { token: alice.token })), true);
  for (const s of [a1, a2]) {
    const e = await s.expect('error');
    assert.equal(e.code, 'logged_out');
    assert.equal((await s.ws.waitClose(3000)).code, 1008);
  }
  // The token is refused everywhere at once (no 60 s cache grace).
  fails(await get(srv, '/user/me', { token: alice.token }), 401, 'unauthorized');
  const again = await ChatSocket.open(srv, t);
  again.sendJson({ type: 'bind', token: alice.token });
  assert.equal((await again.expect('error')).code, 'unauthorized');
  // Her other session's socket still chats.
  keep.sendMsg(bob, 'still here', { client_msg_id: 'k1' });
  const ack = await keep.expect('ack');
  assert.equal(ack.message.from_id, alice.id);
  assert.deepEqual(await b.next(), { type: 'message', message: ack.message });
  await keep.quiet();
  const st = await victim.stop();
  console.log(fmt('victim during the logouts', st));
  assert.equal(st.lost, 0);
});

test('many sockets and logouts: each logout closes exactly its own sockets', async (t) => {
  const alice = await register(srv, uname('alice'));
  const sessions = [];
  for (let i = 0; i < 8; i++) {
    const s = await login(srv, alice.username, alice.password);
    const socks = [];
    for (let k = 0; k < 3; k++) socks.push(await ChatSocket.bound(srv, { ...alice, token: s.token }, t));
    sessions.push({ token: s.token, socks });
  }
  // Close some sockets first: the table forgets them without trouble.
  for (const s of sessions[0].socks) s.terminate();
  for (const [i, s] of sessions.entries()) {
    if (i % 2) continue;
    ok(await post(srv, '/user/logout', undefined, { token: s.token }));
  }
  for (const [i, s] of sessions.entries()) {
    if (i === 0) continue;
    for (const sock of s.socks) {
      if (i % 2) await sock.quiet(`session ${i} was not logged out`);
      else assert.equal((await sock.ws.waitClose(3000)).code, 1008, `session ${i} was logged out`);
    }
  }
});
