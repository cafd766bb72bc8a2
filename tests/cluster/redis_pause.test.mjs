// Stalls longer than the heartbeat TTL. First Redis stalls (SIGSTOP for 7 s, longer than the 5 s heartbeat TTL, then
// SIGCONT): no connection drops, but when Redis runs again every node's
// heartbeat key has expired at once. The first heartbeat to run then sees the
// other nodes as dead. Asserts that the cluster is whole again within a few
// seconds without restarting anything: every node counts three live nodes,
// the directory holds every socket (queries from any node), and pushes cross
// nodes again (send_to_uid, send_to_group, a chat message). Then a node
// stalls (SIGSTOP until the others count it out, then SIGCONT): its sockets
// were never closed, so once it runs again they are in the directory again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startCluster, gw, healthz, must, register, uname, waitUntil, sleep } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const PAUSE_MS = 7000;
const c = await startCluster(after, { n: 3, haproxy: false });
const [n1, n2, n3] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));
let stoppedPid = null;
let stoppedNode = null;
after(() => {
  for (const pid of [stoppedPid, stoppedNode]) {
    if (!pid) continue;
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
});

test('Redis paused longer than the heartbeat TTL: nodes, directory and routing come back by themselves', async () => {
  const alice = await register(n1, uname('pa'));
  const bob = await register(n1, uname('pb'));
  const devs = [await Sock.bound(n1, bob, 'b1@node1'), await Sock.bound(n2, bob, 'b2@node2'), await Sock.bound(n3, bob, 'b3@node3')];
  socks.push(...devs);
  const grp = `pause-${uname('g')}`;
  for (const s of devs) assert.equal(await gw(n1, 'join_group', { client_id: s.clientId, group: grp }), true);
  assert.equal(await gw(n1, 'get_all_client_id_count'), 3);

  const pid = Number(fs.readFileSync(path.join(c.redis.dir, 'pid'), 'utf8'));
  process.kill(pid, 'SIGSTOP');
  stoppedPid = pid;
  await sleep(PAUSE_MS);
  process.kill(pid, 'SIGCONT');
  stoppedPid = null;
  const resumed = Date.now();

  let last = null;
  await waitUntil(async () => {
    const hs = await Promise.all(c.nodes.map((x) => healthz(x)));
    const per = [];
    for (const node of c.nodes) {
      per.push({
        node: node.nodeId,
        clients: await gw(node, 'get_all_client_id_count'),
        bob: (await gw(node, 'get_client_id_by_uid', { uid: bob.id })).length,
        group: await gw(node, 'get_client_id_count_by_group', { group: grp }),
      });
    }
    last = { ms: Date.now() - resumed, health: hs.map((h) => ({ redis: h.cluster.redis, nodes: h.cluster.nodes, reconnects: h.cluster.reconnects })), per };
    return hs.every((h) => h.cluster.redis === 'up' && h.cluster.nodes === 3) && per.every((p) => p.clients === 3 && p.bob === 3 && p.group === 3);
  }, { timeoutMs: 8000, intervalMs: 200, what: 'the cluster whole again after Redis resumed' }).catch((e) => {
    throw new Error(`${e.message}\nlast: ${JSON.stringify(last)}\n(want every node: redis up, 3 nodes, 3 clients, bob's 3 clients, 3 group members)\n${c.nodes.map((x) => `${x.nodeId} log tail:\n${x.stderr().slice(-800)}`).join('\n')}`);
  });

  assert.equal(await gw(n1, 'send_to_uid', { uid: bob.id, data: 'uid-after' }), 3);
  assert.equal(await gw(n2, 'send_to_group', { group: grp, data: 'grp-after' }), 3);
  for (const s of devs) {
    await s.waitText('uid-after', 1, 3000);
    await s.waitText('grp-after', 1, 3000);
  }
  const m = await must(n3, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'after the pause' } });
  for (const s of devs) await s.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 3000);
  console.log(`# redis pause: whole again ${last.ms} ms after SIGCONT; reconnects ${JSON.stringify(last.health.map((h) => h.reconnects))}`);
});

test('a node stalled longer than the heartbeat TTL (SIGSTOP, SIGCONT) is counted out, then back in with its sockets', async () => {
  const s3 = await Sock.open(n3, 'x@node3');
  const s1 = await Sock.open(n1, 'y@node1');
  socks.push(s3, s1);
  const grp = `stall-${uname('g')}`;
  assert.equal(await gw(n1, 'bind_uid', { client_id: s3.clientId, uid: 'stall-u' }), true);
  assert.equal(await gw(n1, 'join_group', { client_id: s3.clientId, group: grp }), true);
  assert.equal(await gw(n2, 'is_uid_online', { uid: 'stall-u' }), true);
  const clients = await gw(n2, 'get_all_client_id_count');

  process.kill(n3.pid, 'SIGSTOP');
  stoppedNode = n3.pid;
  // counted out once its heartbeat expires
  await waitUntil(async () => (await gw(n1, 'is_uid_online', { uid: 'stall-u' })) === false && (await healthz(n1)).cluster.nodes === 2, { timeoutMs: 8000, intervalMs: 200, what: 'the stalled node counted out' });
  await sleep(1500);
  process.kill(n3.pid, 'SIGCONT');
  stoppedNode = null;
  const resumed = Date.now();

  let last = null;
  await waitUntil(async () => {
    last = {
      ms: Date.now() - resumed,
      nodes: (await healthz(n1)).cluster.nodes,
      online: await gw(n1, 'is_uid_online', { uid: 'stall-u' }),
      clients: await gw(n2, 'get_all_client_id_count'),
      group: await gw(n2, 'get_client_id_count_by_group', { group: grp }),
    };
    return last.nodes === 3 && last.online === true && last.clients === clients && last.group === 1;
  }, { timeoutMs: 6000, intervalMs: 200, what: 'the stalled node and its sockets back in the directory' }).catch((e) => {
    throw new Error(`${e.message}\nlast: ${JSON.stringify(last)} (want nodes 3, stall-u online, ${clients} clients, 1 group member)\nnode3 log tail:\n${n3.stderr().slice(-1500)}`);
  });
  assert.equal(await gw(n2, 'send_to_uid', { uid: 'stall-u', data: 'back' }), 1);
  await s3.waitText('back', 1, 3000);
  assert.equal(await gw(n1, 'send_to_group', { group: grp, data: 'g-back' }), 1);
  await s3.waitText('g-back', 1, 3000);
  console.log(`# node stall: back in the directory ${last.ms} ms after SIGCONT`);
});
