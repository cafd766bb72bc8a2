// Presence in a cluster (issue 11): a user with a device on each of two nodes
// is online as long as either is connected. When one node's last device of
// the user closes and its grace ends, that node asks the nodes holding the
// uid (gw.is_uid_online) and stays silent when one does; the last device
// closing anywhere yields exactly one offline push, after the grace, to the
// peer's sockets whichever node they are on.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, must, register, sleep, uname } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const GRACE = 500;
const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'presence-grace': GRACE } });
const [n1, n2] = c.nodes;

const presenceOf = (sock, uid) => sock.frames.filter((f) => f.type === 'presence' && f.uid === uid);
const offlines = (sock, uid) => presenceOf(sock, uid).filter((f) => !f.online);

/** A peer (bound on node1) and a user sharing a 1:1 conversation. */
async function pair(prefix) {
  const peer = await register(n1, uname(prefix + 'p'));
  const user = await register(n1, uname(prefix + 'u'));
  await must(n1, 'POST', '/chat/send', { token: user.token, body: { to_id: peer.id, type: 'text', data: 'hi' } });
  const ps = await Sock.bound(n1, peer, 'peer@node1');
  return { peer, user, ps };
}

for (const [first, last] of [
  ['node2', 'node1'],
  ['node1', 'node2'],
]) {
  test(`devices on both nodes: closing the ${first} one is no offline; closing the ${last} one is one offline after the grace`, async () => {
    const { user, ps } = await pair(`pr${first.slice(-1)}`);
    const d1 = await Sock.bound(n1, user, 'user@node1');
    await ps.waitFrame((f) => f.type === 'presence' && f.uid === user.id && f.online === true, 5000);
    const d2 = await Sock.bound(n2, user, 'user@node2');
    await sleep(300); // node2's first device may push online again (a documented duplicate)
    for (const f of presenceOf(ps, user.id)) assert.equal(f.online, true, 'only online so far');
    const [closeFirst, closeLast] = first === 'node2' ? [d2, d1] : [d1, d2];

    closeFirst.terminate();
    await sleep(GRACE + 1500); // past the grace and the 1 s the question may wait
    assert.deepEqual(offlines(ps, user.id), [], `${first}'s device closed, ${last}'s still connected: no offline`);

    const before = Date.now();
    closeLast.terminate();
    await sleep(GRACE / 2);
    assert.deepEqual(offlines(ps, user.id), [], 'within the grace: nothing');
    const off = await ps.waitFrame((f) => f.type === 'presence' && f.uid === user.id && f.online === false, GRACE + 3000);
    assert.ok(Date.now() - before >= GRACE, 'not before the grace ended');
    assert.ok(off.last_seen >= before - 50 && off.last_seen <= Date.now(), `last_seen ${off.last_seen} is when the last device closed`);
    await sleep(GRACE + 1500);
    assert.equal(offlines(ps, user.id).length, 1, 'exactly one offline push');
    const frames = presenceOf(ps, user.id);
    assert.equal(frames.at(-1).online, false, 'the last word is offline');
    // the stored last_seen is the one pushed, on either node
    for (const node of [n1, n2]) {
      const peerLogin = ps.user;
      const item = (await must(node, 'GET', '/chat/list', { token: peerLogin.token })).find((x) => x.userid === user.id);
      assert.equal(item.online, false, `${node.nodeId}: offline in the list`);
      assert.equal(item.last_seen, off.last_seen, `${node.nodeId}: last_seen stored`);
    }
    ps.terminate();
  });
}
