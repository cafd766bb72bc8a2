// Redis stopped and started again (empty, same address) in the middle of a
// send load, chatd left running. alice sends 300 messages to bob, round robin
// over the three nodes' own ports; bob has a device on each node. After 100
// are acknowledged Redis is stopped; every node's /healthz says redis "down";
// 100 more are sent (stored in PostgreSQL, pushed on the sender's node only:
// cross-node pushes are counted as dropped); Redis is started again and the
// last 100 are sent. Then: nothing acknowledged is lost (each device's pushes
// plus its cursor sync hold every message once); every node says redis "up"
// and sees the three nodes again; the directory was re-announced (queries
// from any node see every socket); and a push from one node reaches a socket
// on another within a few seconds, without restarting chatd.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, healthz, http, must, register, uname, waitUntil, sleep } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';
import { sendLoad, checkDevice } from './lib/load.mjs';

const PHASE = 100;
const DOWN_MS = 2000; // at least

const c = await startCluster(after, { n: 3 });
const [n1, n2, n3] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

const redisStates = (hs) => hs.map((h) => h.cluster.redis);

test('Redis restarted under load: nothing acknowledged lost, routing and the directory come back without restarting chatd', async () => {
  const alice = await register(n1, uname('ra'));
  const bob = await register(n2, uname('rb'));
  const devs = [await Sock.bound(n1, bob, 'b1@node1'), await Sock.bound(n2, bob, 'b2@node2'), await Sock.bound(n3, bob, 'b3@node3')];
  socks.push(...devs);
  // a group member and a session on node2, to be found again after the restart
  const grp = `rr-${uname('g')}`;
  assert.equal(await gw(n1, 'join_group', { client_id: devs[1].clientId, group: grp }), true);
  assert.equal(await gw(n3, 'set_session', { client_id: devs[1].clientId, session: { k: 'v' } }), true);
  const before = await Promise.all(c.nodes.map((x) => healthz(x)));
  assert.deepEqual(redisStates(before), ['up', 'up', 'up']);

  const pick = (i, attempt) => c.nodes[(i + attempt) % 3];
  // phase 1: Redis up
  const p1 = await sendLoad({ from: alice, to: bob, count: PHASE, pick, tag: 'p1' });
  // phase 2: Redis down
  await c.redis.stopKeep();
  const downSince = Date.now();
  await waitUntil(async () => redisStates(await Promise.all(c.nodes.map((x) => healthz(x)))).every((s) => s === 'down'), { timeoutMs: 5000, what: '/healthz redis "down" on every node' });
  // a bind of a socket on another node cannot be forwarded meanwhile: 503 cluster_unavailable
  const orphan = await Sock.open(n2, 'orphan@node2');
  socks.push(orphan);
  const ob = await http(n1, 'POST', '/chat/bind', { token: bob.token, body: { type: 'bind', client_id: orphan.clientId, bind_nonce: orphan.bindNonce } });
  assert.equal(ob.status, 503, `cross-node bind while Redis is down: ${ob.text}`);
  assert.equal(ob.body?.code, 'cluster_unavailable');
  orphan.terminate();
  // the server API answers for the node's own connections meanwhile
  await waitUntil(async () => (await gw(n1, 'get_all_client_id_count')) === 1, { timeoutMs: 3000, what: 'node1 counting its own client only while Redis is down' });
  assert.equal(await gw(n1, 'send_to_uid', { uid: bob.id, data: 'local-only' }), 1, 'send_to_uid reaches node1\'s own socket only');
  await devs[0].waitText('local-only', 1, 3000);
  const p2 = await sendLoad({ from: alice, to: bob, count: PHASE, pick, tag: 'p2' });
  // down long enough for several failed reconnect attempts (they back off)
  await sleep(Math.max(0, DOWN_MS - (Date.now() - downSince)));
  const during = await Promise.all(c.nodes.map((x) => healthz(x)));
  // phase 3: Redis back (empty), load goes on at once
  await c.redis.startAgain();
  const upSince = Date.now();
  const p3 = await sendLoad({ from: alice, to: bob, count: PHASE, pick, tag: 'p3' });

  for (const [name, p] of [['p1', p1], ['p2', p2], ['p3', p3]]) {
    const bad = p.filter((r) => !r.ok || r.attempts !== 1);
    assert.deepEqual(bad.map((r) => `${r.cmid}: ${r.errors.join('; ')}`), [], `${name}: every send acknowledged at once (PostgreSQL is up)`);
  }
  const acked = [...p1, ...p2, ...p3];

  // every node reconnects and re-announces by itself
  await waitUntil(async () => {
    const hs = await Promise.all(c.nodes.map((x) => healthz(x)));
    return hs.every((h) => h.cluster.redis === 'up' && h.cluster.nodes === 3);
  }, { timeoutMs: 10000, what: '/healthz redis "up" and 3 nodes on every node after the restart' }).catch(async (e) => {
    const hs = await Promise.all(c.nodes.map((x) => healthz(x)));
    throw new Error(`${e.message}\n${hs.map((h) => JSON.stringify(h.cluster)).join('\n')}\n${c.nodes.map((x) => `${x.nodeId} log tail:\n${x.stderr().slice(-1500)}`).join('\n')}`);
  });
  const back = Date.now() - upSince;
  const dropped = during.reduce((a, h, i) => a + h.cluster.dropped - before[i].cluster.dropped, 0);
  assert.ok(dropped > 0, `cross-node pushes while Redis was down are counted as dropped: ${during.map((h) => h.cluster.dropped)}`);

  // phase 2 messages reached the device on the sender's own node (pushes stay local)
  for (const r of p2) {
    const local = devs.find((s) => s.name.endsWith(`@${r.node}`));
    assert.equal(local.count((f) => f.type === 'message' && f.message.id === r.message.id), 1, `${r.cmid}, sent on ${r.node} while Redis was down, pushed once to ${local.name}`);
  }

  // the directory is whole again, from every node (Redis came back empty)
  for (const node of c.nodes) {
    await waitUntil(async () => {
      const ids = await gw(node, 'get_client_id_by_uid', { uid: bob.id });
      return ids.length === 3 && (await gw(node, 'get_all_client_id_count')) === 3 && (await gw(node, 'is_uid_online', { uid: bob.id })) === true;
    }, { timeoutMs: 5000, what: `${node.nodeId}: bob's three sockets in the directory after the Redis restart` });
  }

  for (const node of [n1, n3]) {
    await waitUntil(async () => (await gw(node, 'get_client_id_count_by_group', { group: grp })) === 1, { timeoutMs: 5000, what: `${node.nodeId}: the group member on node2 after the Redis restart` });
    assert.deepEqual(await gw(node, 'get_session', { client_id: devs[1].clientId }), { k: 'v' }, `session from ${node.nodeId}`);
  }
  assert.equal(await gw(n3, 'send_to_group', { group: grp, data: 'grp-after' }), 1);
  await devs[1].waitText('grp-after', 1, 3000);

  // routing resumed: a push from node1 reaches sockets on node2 and node3, a gateway push too
  const m = await must(n1, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'after the restart', client_msg_id: 'after-1' } });
  for (const s of devs) await s.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 3000);
  assert.equal(await gw(n3, 'send_to_client', { client_id: devs[1].clientId, data: 'gw-after' }), 1);
  await devs[1].waitText('gw-after', 1, 3000);
  assert.equal(await gw(n2, 'send_to_uid', { uid: bob.id, data: 'uid-after' }), 3);
  for (const s of devs) await s.waitText('uid-after', 1, 3000);

  // nothing acknowledged lost: pushes + cursor sync, per device
  await settle();
  const total = acked.length + 1;
  const list = await must(n3, 'GET', '/chat/list', { token: bob.token });
  const conv = list.find((x) => x.userid === alice.id);
  assert.equal(conv.last_seq, total);
  assert.equal(conv.noreadnum, total, 'unread count = messages in the conversation');
  for (const s of devs) {
    const r = await checkDevice(s, c.nodes[(devs.indexOf(s) + 1) % 3], bob, alice, [...acked, { cmid: 'after-1', message: m }], { expectTotal: total });
    // after the restart, everything sent in phase 3 once Redis was up reached every device, at most once
    const over = acked.filter((x) => (r.pushCount.get(x.message.id) ?? 0) > 1);
    assert.deepEqual(over.map((x) => x.cmid), [], `${s.name}: no message pushed twice`);
  }
  console.log(`# redis restart: ${acked.length + 1} acknowledged; Redis was down ${upSince - downSince} ms; nodes up again ${back} ms after the start; dropped ${dropped}`);
});
