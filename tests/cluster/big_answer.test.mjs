// A query's answer from one node is a list (every client_id of a uid, every
// uid it holds): it may be larger than what a client or the API may put on
// the bus (the larger of --max-message and --max-body, + 4 KiB). Here both are
// 1 KiB, so the bus bound for requests and pushes is 5 KiB, and node2 holds
// 300 sockets of one uid: its answer to get_client_id_by_uid is about 8 KiB.
// The answer must arrive whole (a node's answer may be up to 32 MiB), while a
// request or push of that size is still refused.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, healthz, uname } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const N = 300;
const c = await startCluster(after, {
  n: 2,
  haproxy: false,
  nodeOptions: { 'max-message': 1024, 'max-body': 1024, 'max-conns-per-user': 1000 },
});
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

test('a node answer larger than the request bound arrives whole', async () => {
  const uid = `big-${uname('u')}`;
  for (let i = 0; i < N; i += 50) {
    const batch = await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, k) => Sock.open(n2, `s${i + k}`)));
    socks.push(...batch);
    // bound in batches from node2 itself (the bind bodies stay under --max-body)
    for (const s of batch) assert.equal(await gw(n2, 'bind_uid', { client_id: s.clientId, uid }), true);
  }
  const before = (await healthz(n1)).cluster;
  const ids = await gw(n1, 'get_client_id_by_uid', { uid });
  assert.equal(ids.length, N, 'every client_id of node2, asked on node1');
  assert.deepEqual(new Set(ids), new Set(socks.map((s) => s.clientId)));
  assert.ok(JSON.stringify(ids).length > 5 * 1024, 'the answer is larger than the request bound');
  assert.equal(await gw(n1, 'get_all_uid_count'), 1);
  const afterH = (await healthz(n1)).cluster;
  assert.equal(afterH.bad_messages, before.bad_messages, 'nothing dropped as oversized');
  assert.equal(afterH.calls_timed_out, before.calls_timed_out, 'no call waited for its timeout');
});
