// Groups across a cluster (issue 11): two nodes on one PostgreSQL and Redis.
// Members with devices on different nodes each get a group message sent on
// either node exactly once (the sending device the ack), system messages
// included; a removed member on the other node gets nothing after its
// removal (also of events sent on the other node); a group typing event
// crosses nodes; and a member with no 1:1 conversation sees another member
// on the other node come and go.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, must, register, sleep, uname, waitUntil } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const GRACE = 400;
const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'presence-grace': GRACE } });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

/** A bound device on node that the other node can reach. */
const bound = (node, user, name) => Sock.reachable(node, node === n1 ? n2 : n1, user, name, socks);
const pushedIds = (s) => s.pushed().map((m) => m.id);
const call = (node, user, path, body) => must(node, 'POST', path, { token: user.token, body });

test('members on both nodes get every group message sent on either node exactly once; a removed member nothing after', async () => {
  const [a, b, cc] = [await register(n1, uname('ga')), await register(n2, uname('gb')), await register(n1, uname('gc'))];
  const a1 = await bound(n1, a, 'a@node1');
  const a2 = await bound(n2, a, 'a@node2');
  const b2 = await bound(n2, b, 'b@node2');
  const b1 = await bound(n1, b, 'b@node1');
  const c2 = await bound(n2, cc, 'c@node2');
  const created = await call(n1, a, '/group/create', { name: 'cluster group', members: [b.id, cc.id] });
  const gid = created.group.group_id;
  for (const s of [b1, b2, c2, a1, a2]) {
    await s.waitFrame((f) => f.type === 'message' && f.message.id === created.message.id, 5000);
  }

  // a socket send on node1, an HTTP send on node2 naming its socket, a socket send on node2
  a1.send({ type: 'send', message: { group_id: gid, type: 'text', data: 'from node1', client_msg_id: 'n1-1' } });
  const ack1 = await a1.waitFrame((f) => f.type === 'ack' && f.client_msg_id === 'n1-1');
  const m2 = await call(n2, b, '/chat/send', { group_id: gid, type: 'text', data: 'from node2 http', client_id: b2.clientId });
  c2.send({ type: 'send', message: { group_id: gid, type: 'text', data: 'from node2 socket', client_msg_id: 'n2-1' } });
  const ack3 = await c2.waitFrame((f) => f.type === 'ack' && f.client_msg_id === 'n2-1');
  const want = new Map([
    [a1, [created.message.id, m2.id, ack3.message.id]],
    [a2, [created.message.id, ack1.message.id, m2.id, ack3.message.id]],
    [b1, [created.message.id, ack1.message.id, m2.id, ack3.message.id]],
    [b2, [created.message.id, ack1.message.id, ack3.message.id]],
    [c2, [created.message.id, ack1.message.id, m2.id]],
  ]);
  await waitUntil(() => [...want].every(([s, ids]) => s.pushed().length >= ids.length), { timeoutMs: 5000, what: 'every push delivered' });
  await settle(400);
  // exactly once each; the order across sends from two nodes is not asserted (each came from its own node)
  const sorted = (ids) => [...ids].sort((x, y) => x - y);
  for (const [s, ids] of want) assert.deepEqual(sorted(pushedIds(s)), sorted(ids), `${s.name}: every message of the group once, none of its own sends`);
  assert.deepEqual([ack1.message.seq, m2.seq, ack3.message.seq], [2, 3, 4], 'one seq sequence for the group across nodes');
  for (const s of [a1, b2, c2]) assert.equal(s.count((f) => f.type === 'ack'), s === b2 ? 0 : 1);

  // c (on node2) removed on node1: it receives its removal and nothing after, from either node
  const rm = await call(n1, a, '/group/remove', { group_id: gid, userid: cc.id });
  await c2.waitFrame((f) => f.type === 'message' && f.message.id === rm.message.id, 5000);
  const after1 = await call(n2, b, '/chat/send', { group_id: gid, type: 'text', data: 'without c, node2' });
  const after2 = await call(n1, a, '/chat/send', { group_id: gid, type: 'text', data: 'without c, node1' });
  for (const s of [a1, a2, b1, b2]) await s.waitFrame((f) => f.type === 'message' && f.message.id === after2.id, 5000);
  await settle(400);
  assert.deepEqual(pushedIds(c2).slice(-1), [rm.message.id], 'the removal is the last thing c got');
  for (const s of [a1, a2, b1, b2]) {
    const ids = pushedIds(s);
    assert.equal(ids.filter((id) => id === after1.id).length, 1, `${s.name}: after1 once`);
    assert.equal(ids.filter((id) => id === after2.id).length, 1, `${s.name}: after2 once`);
  }
  // the history on either node agrees
  const h1 = await must(n1, 'GET', `/chat/history?group_id=${gid}&limit=50`, { token: b.token });
  const h2 = await must(n2, 'GET', `/chat/history?group_id=${gid}&limit=50`, { token: a.token });
  assert.deepEqual(h1, h2);
  assert.deepEqual(h1.map((m) => m.seq), [7, 6, 5, 4, 3, 2, 1]);
});

test('a group typing event crosses nodes, to the other members only', async () => {
  const [a, b, x] = [await register(n1, uname('ea')), await register(n2, uname('eb')), await register(n2, uname('ex'))];
  const gid = (await call(n1, a, '/group/create', { name: 'typing', members: [b.id] })).group.group_id;
  const a1 = await bound(n1, a, 'a@node1');
  const a2 = await bound(n2, a, 'a@node2');
  const b2 = await bound(n2, b, 'b@node2');
  const x2 = await bound(n2, x, 'x@node2');
  a1.send({ type: 'event', group_id: gid, data: { typing: true } });
  const ev = await b2.waitFrame((f) => f.type === 'event', 5000);
  assert.deepEqual(ev, { type: 'event', from_id: a.id, group_id: gid, data: { typing: true } });
  b2.send({ type: 'event', group_id: gid, data: 'typing' });
  assert.deepEqual(await a1.waitFrame((f) => f.type === 'event', 5000), { type: 'event', from_id: b.id, group_id: gid, data: 'typing' });
  await settle(400);
  assert.equal(a2.count((f) => f.type === 'event'), 1, 'a\'s other device: only b\'s event');
  assert.equal(b2.count((f) => f.type === 'event'), 1);
  assert.equal(x2.count((f) => f.type === 'event'), 0, 'a non-member gets nothing');
});

test('a member sees another member on the other node come and go (no 1:1 conversation)', async () => {
  const [a, b, x] = [await register(n1, uname('pa')), await register(n2, uname('pb')), await register(n1, uname('px'))];
  await call(n2, b, '/group/create', { name: 'presence', members: [a.id] });
  const a1 = await bound(n1, a, 'a@node1');
  const x1 = await bound(n1, x, 'x@node1');
  const b2 = await bound(n2, b, 'b@node2');
  const on = await a1.waitFrame((f) => f.type === 'presence' && f.uid === b.id && f.online === true, 5000);
  assert.equal(on.last_seen, null);
  const before = Date.now();
  b2.terminate();
  const off = await a1.waitFrame((f) => f.type === 'presence' && f.uid === b.id && f.online === false, GRACE + 4000);
  assert.ok(off.last_seen >= before - 50 && off.last_seen <= Date.now(), 'last_seen when the socket closed');
  await sleep(GRACE);
  assert.equal(a1.count((f) => f.type === 'presence' && f.uid === b.id && !f.online), 1, 'one offline');
  assert.equal(x1.count((f) => f.type === 'presence' && f.uid === b.id), 0, 'a non-member hears nothing');
});

// Each node keeps a group's member list for events a short while; a change
// made through node1 tells every node to forget it before the change's
// system message is pushed, so once node2's members have the removal, node2
// routes events by the new list.
test('a member removed on one node gets no group event sent on the other right after', async () => {
  const [a, b, cc] = [await register(n1, uname('ra')), await register(n2, uname('rb')), await register(n2, uname('rc'))];
  const gid = (await call(n1, a, '/group/create', { name: 'removal', members: [b.id, cc.id] })).group.group_id;
  const b2 = await bound(n2, b, 'b@node2');
  const c2 = await bound(n2, cc, 'c@node2');
  const a1 = await bound(n1, a, 'a@node1');
  // node2 has just served an event of this group
  b2.send({ type: 'event', group_id: gid, data: 'before' });
  await c2.waitFrame((f) => f.type === 'event' && f.data === 'before', 5000);
  await a1.waitFrame((f) => f.type === 'event' && f.data === 'before', 5000);
  // c is removed through node1, and b (on node2) types at once
  const rm = await call(n1, a, '/group/remove', { group_id: gid, userid: cc.id });
  await c2.waitFrame((f) => f.type === 'message' && f.message.id === rm.message.id, 5000);
  await b2.waitFrame((f) => f.type === 'message' && f.message.id === rm.message.id, 5000);
  b2.send({ type: 'event', group_id: gid, data: 'after' });
  await a1.waitFrame((f) => f.type === 'event' && f.data === 'after', 5000);
  await settle(300);
  assert.equal(c2.count((f) => f.type === 'event' && f.data === 'after'), 0, 'the removed member gets no event after its removal');
  // and c may no longer send one
  c2.send({ type: 'event', group_id: gid, data: 'from c' });
  const e = await c2.waitFrame((f) => f.type === 'error', 5000);
  assert.equal(e.code, 'not_member');
  await settle(300);
  assert.equal(a1.count((f) => f.type === 'event' && f.data === 'from c'), 0, 'nobody gets the removed member\'s event');
});
