// The admin API in a cluster: a revoke (or disable) called on node1 closes the
// user's sockets on node2 too (an error frame, then 1008), and node2, which had
// the user's token cached, refuses it at once; a new login works on either node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, http, login, must, register, uname, SECRET } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const c = await startCluster(after, { n: 2, haproxy: false });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

const admin = (node, action, uid) => must(node, 'POST', `/admin/users/${action}`, { token: SECRET, body: { uid } });

async function closedWith(s, code) {
  const e = await s.waitFrame((f) => f.type === 'error', 5000);
  assert.equal(e.code, code);
  const info = await Promise.race([s.closed, new Promise((r) => setTimeout(() => r(null), 5000))]);
  assert.equal(info?.code, 1008, `${s.name} closed with 1008`);
}

for (const [action, code] of [['revoke', 'revoked'], ['disable', 'account_disabled']]) {
  test(`${action} on node1 closes the user's socket on node2 and node2 refuses the cached token`, async () => {
    const alice = await register(n1, uname('adm'));
    const bob = await register(n2, uname('bob'));
    const a1 = await Sock.bound(n1, alice, 'a1@node1');
    const a2 = await Sock.bound(n2, alice, 'a2@node2');
    const b2 = await Sock.bound(n2, bob, 'b2@node2');
    socks.push(a1, a2, b2);
    assert.equal((await must(n2, 'GET', '/user/me', { token: alice.token })).id, alice.id); // cached on node2

    const d = await admin(n1, action, alice.id);
    assert.equal(d.sockets_closed, 2);
    assert.equal(d.complete, true);
    await closedWith(a1, code);
    await closedWith(a2, code);
    for (const node of [n1, n2]) assert.equal((await http(node, 'GET', '/user/me', { token: alice.token })).status, 401);
    assert.equal(b2.closeInfo, null, 'bob untouched');
    assert.equal((await must(n2, 'GET', '/user/me', { token: bob.token })).id, bob.id);

    if (action === 'disable') {
      const r = await http(n2, 'POST', '/user/login', { body: { username: alice.username, password: alice.password } });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, 'account_disabled');
      await admin(n2, 'enable', alice.id);
    }
    const token = await login(n2, alice);
    assert.equal((await must(n1, 'GET', '/user/me', { token })).id, alice.id);
  });
}
