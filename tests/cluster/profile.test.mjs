// The profile endpoints in a cluster. A password change called on node1
// closes the sockets the user's other tokens bound on node2 (an error frame
// "password_changed", then 1008) and node2, which had those tokens cached,
// refuses them at once; the caller's own sockets, on either node, stay open,
// and its token, cached on node2, keeps working. A picture set on node1 shows
// at once in GET /user/me on node2, which had the token cached
// ("chat.user_changed"), and the user's socket on node2 is told.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, http, login, must, register, uname } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const c = await startCluster(after, { n: 2, haproxy: false });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

async function closedWith(s, code) {
  const e = await s.waitFrame((f) => f.type === 'error', 5000);
  assert.equal(e.code, code);
  const info = await Promise.race([s.closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
  assert.equal(info?.code, 1008, `${s.name} closed with 1008`);
}

test('a password change on node1 signs the other sessions out on node2 too', async () => {
  const alice = await register(n1, uname('pwc'));
  const other = { ...alice, token: await login(n2, alice) };
  const mine1 = await Sock.bound(n1, alice, 'mine@node1');
  const mine2 = await Sock.bound(n2, alice, 'mine@node2');
  const other2 = await Sock.bound(n2, other, 'other@node2');
  socks.push(mine1, mine2, other2);
  for (const t of [alice.token, other.token]) assert.equal((await must(n2, 'GET', '/user/me', { token: t })).id, alice.id); // cached on node2

  const d = await must(n1, 'POST', '/user/password', { token: alice.token, body: { old_password: alice.password, new_password: 'brand-new-pw' } });
  assert.deepEqual(d, { ok: true, tokens_deleted: 1, sockets_closed: 1, complete: true });
  await closedWith(other2, 'password_changed');
  for (const node of [n1, n2]) {
    assert.equal((await http(node, 'GET', '/user/me', { token: other.token })).status, 401);
    assert.equal((await must(node, 'GET', '/user/me', { token: alice.token })).id, alice.id);
  }
  await settle();
  assert.equal(mine1.closeInfo, null, "the caller's socket on node1 stays");
  assert.equal(mine2.closeInfo, null, "the caller's socket on node2 stays");
  const r = await http(n2, 'POST', '/user/login', { body: { username: alice.username, password: alice.password } });
  assert.equal(r.status, 401);
  await login(n2, { ...alice, password: 'brand-new-pw' });
});

test('a picture set on node1 shows on node2 at once', async () => {
  const alice = await register(n1, uname('pic'));
  const s2 = await Sock.bound(n2, alice, 'alice@node2');
  socks.push(s2);
  assert.equal((await must(n2, 'GET', '/user/me', { token: alice.token })).userpic, ''); // cached on node2
  const u = await must(n1, 'POST', '/user/profile', { token: alice.token, body: { userpic: '/media/x.png' } });
  assert.equal(u.userpic, '/media/x.png');
  const push = await s2.waitFrame((f) => f.type === 'profile', 5000);
  assert.deepEqual(push.user, u);
  assert.equal((await must(n2, 'GET', '/user/me', { token: alice.token })).userpic, '/media/x.png');
});
