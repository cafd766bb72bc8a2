// Exactly once under load, nothing failing: three users with a device on each
// of the three nodes all send to each other at once over their sockets (4 in
// flight per socket), while the server API sends to their uids and to a group
// of all nine sockets from every node. Every device gets every chat message
// of its conversations exactly once by push alone (no sync), in seq order per
// conversation, and every API push exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, register, uname, waitUntil } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';
import { socketLoad } from './lib/load.mjs';

const PER_PAIR = 30; // messages per (device, recipient)
const API_ROUNDS = 20;

const c = await startCluster(after, { n: 3, haproxy: false });
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

test('three users, a device each on three nodes, all sending at once: every push exactly once, in order', async () => {
  const users = [];
  for (const p of ['fa', 'fb', 'fc']) users.push(await register(c.nodes[users.length], uname(p)));
  const devs = new Map(); // user id -> [sock per node]
  for (const u of users) {
    const list = [];
    for (const node of c.nodes) {
      const s = await Sock.bound(node, u, `${u.username}@${node.nodeId}`);
      socks.push(s);
      list.push(s);
    }
    devs.set(u.id, list);
  }
  const all = [...devs.values()].flat();
  const grp = `fan-${uname('g')}`;
  for (const s of all) assert.equal(await gw(c.nodes[0], 'join_group', { client_id: s.clientId, group: grp }), true);

  // chat: every device sends PER_PAIR messages to each other user, all at once
  const loads = [];
  for (const u of users) {
    for (const s of devs.get(u.id)) {
      for (const peer of users.filter((p) => p.id !== u.id)) {
        loads.push(socketLoad(s, peer, { count: PER_PAIR, window: 4, tag: `${s.name}>${peer.id}`, node: s.name }));
      }
    }
  }
  // the server API at the same time, from every node
  const api = [];
  for (let r = 0; r < API_ROUNDS; r++) {
    for (const node of c.nodes) {
      api.push(gw(node, 'send_to_group', { group: grp, data: `grp-${node.nodeId}-${r}` }).then((n) => assert.equal(n, 9, 'group send count')));
      for (const u of users) api.push(gw(node, 'send_to_uid', { uid: u.id, data: `uid-${u.id}-${node.nodeId}-${r}` }).then((n) => assert.equal(n, 3, 'uid send count')));
    }
  }
  const results = (await Promise.all(loads)).flat();
  await Promise.all(api);
  const bad = results.filter((r) => !r.ok);
  assert.deepEqual(bad.map((r) => r.cmid), [], 'every socket send acknowledged');

  // expected pushes per device: every message of its user's conversations not sent by this very socket
  const sentBy = new Map(results.map((r) => [r.message.id, r]));
  await waitUntil(() => {
    for (const u of users) {
      for (const s of devs.get(u.id)) {
        const want = results.filter((r) => (r.message.to_id === u.id || r.message.from_id === u.id) && r.node !== s.name).length;
        if (s.pushed().length < want) return false;
      }
    }
    return true;
  }, { timeoutMs: 10000, what: 'every push delivered' }).catch((e) => {
    const have = all.map((s) => `${s.name}: ${s.pushed().length}`);
    throw new Error(`${e.message}; pushes per device ${have}`);
  });
  await settle(500);
  for (const u of users) {
    for (const s of devs.get(u.id)) {
      const pushed = s.pushed();
      const ids = pushed.map((m) => m.id);
      assert.equal(new Set(ids).size, ids.length, `${s.name}: no message pushed twice`);
      const want = results.filter((r) => (r.message.to_id === u.id || r.message.from_id === u.id) && r.node !== s.name).map((r) => r.message.id);
      assert.deepEqual([...ids].sort((a, b) => a - b), [...want].sort((a, b) => a - b), `${s.name}: exactly the messages of its conversations, not its own sends`);
      // pushes of one sending socket's messages to one peer arrive in seq order
      const bySender = new Map();
      for (const m of pushed) {
        const from = `${sentBy.get(m.id).node} to ${m.to_id}`;
        if (bySender.has(from) && bySender.get(from) > m.seq) assert.fail(`${s.name}: from ${from}, seq ${m.seq} after ${bySender.get(from)}`);
        bySender.set(from, m.seq);
      }
      for (const node of c.nodes) {
        for (let r = 0; r < API_ROUNDS; r++) {
          assert.equal(s.countText(`grp-${node.nodeId}-${r}`), 1, `${s.name}: group push ${node.nodeId} ${r} once`);
          assert.equal(s.countText(`uid-${u.id}-${node.nodeId}-${r}`), 1, `${s.name}: uid push ${node.nodeId} ${r} once`);
        }
      }
    }
  }
  console.log(`# fanout: ${results.length} chat messages, ${all.reduce((a, s) => a + s.pushed().length, 0)} chat pushes, ${API_ROUNDS * 3 * (9 + 9)} API pushes`);
});
