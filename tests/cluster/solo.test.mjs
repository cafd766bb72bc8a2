// A push to a uid that only the sending node holds does not cross Redis: the
// node learns "only us" from a publish that reached one node (itself), and
// forgets it when another node announces that it now holds the uid too
// (an H message once its subscription is active). This test makes node1
// learn it (pushes_solo grows, published does not), then binds a device of
// the same uid on node2 and checks that node1's pushes reach it again within
// a moment of the bind and, from the first one on, every one, in order.
// Then the node2 device leaves and node1 learns "only us" again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, healthz, uname, waitUntil, sleep } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'event-rate': 0 } });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

let k = 0;
function event(from, to) {
  const n = ++k;
  from.send({ type: 'event', to_id: to, data: { n } });
  return n;
}
const got = (s) => s.frames.filter((f) => f.type === 'event').map((f) => f.data.n);

test('a uid held on one node only is pushed without Redis, and a second node joining ends that at once', async () => {
  const target = `solo-${uname('u')}`;
  const sender = `snd-${uname('u')}`;
  const s1 = await Sock.open(n1, 's1@node1');
  const e1 = await Sock.open(n1, 'e1@node1');
  socks.push(s1, e1);
  assert.equal(await gw(n1, 'bind_uid', { client_id: s1.clientId, uid: target }), true);
  assert.equal(await gw(n1, 'bind_uid', { client_id: e1.clientId, uid: sender }), true);

  // node1 learns that it alone holds the target
  await waitUntil(async () => {
    event(e1, target);
    await sleep(20);
    return (await healthz(n1)).cluster.pushes_solo > 0;
  }, { timeoutMs: 5000, what: 'node1 pushes to the target without the bus' });
  const a = (await healthz(n1)).cluster;
  for (let i = 0; i < 50; i++) event(e1, target);
  await s1.waitFrame((f) => f.type === 'event' && f.data.n === k, 3000);
  const b = (await healthz(n1)).cluster;
  assert.ok(b.pushes_solo - a.pushes_solo >= 50, `50 solo pushes (${a.pushes_solo} -> ${b.pushes_solo})`);
  assert.ok(b.published - a.published < 5, `and no publish for them (${a.published} -> ${b.published})`);

  // a device of the same uid on node2: node1's pushes reach it from a moment after the bind on
  const s2 = await Sock.open(n2, 's2@node2');
  socks.push(s2);
  assert.equal(await gw(n2, 'bind_uid', { client_id: s2.clientId, uid: target }), true);
  const firstAfterBind = k + 1;
  const deadline = Date.now() + 2000;
  let seen = false;
  while (Date.now() < deadline && !seen) {
    event(e1, target);
    await sleep(10);
    seen = got(s2).length > 0;
  }
  assert.ok(seen, 'a push from node1 reached the new device on node2 within 2 s of its bind');
  const first = got(s2)[0];
  assert.ok(first >= firstAfterBind);
  const lastBefore = k;
  for (let i = 0; i < 100; i++) event(e1, target);
  await s2.waitFrame((f) => f.type === 'event' && f.data.n === k, 5000);
  await s1.waitFrame((f) => f.type === 'event' && f.data.n === k, 5000);
  const want = Array.from({ length: k - first + 1 }, (_, i) => first + i);
  assert.deepEqual(got(s2), want, 'from the first on, every push once and in order on node2');
  assert.ok(lastBefore - first < 200, `the gap after the bind is short (first ${first} of ${firstAfterBind}..${lastBefore})`);
  const s1got = got(s1);
  assert.deepEqual(s1got, Array.from({ length: k }, (_, i) => i + 1), 'node1 device: every push once, in order');

  // node2's device leaves: node1 goes back to "only us"
  s2.terminate();
  await waitUntil(async () => !(await gw(n1, 'is_online', { client_id: s2.clientId })), { timeoutMs: 5000, what: 's2 gone' });
  const c1 = (await healthz(n1)).cluster;
  await waitUntil(async () => {
    event(e1, target);
    await sleep(20);
    return (await healthz(n1)).cluster.pushes_solo > c1.pushes_solo;
  }, { timeoutMs: 8000, what: 'node1 alone again' });
});
