// Recall and delete-for-me across a cluster (issue 15): two nodes on one
// PostgreSQL and Redis. A recall made through one node reaches every device
// of both sides (a group: every member) on either node as the recall notice,
// once; a delete-for-me reaches the user's other devices on the other node
// (not the device that asked, not the peer); and both nodes answer history
// with the message recalled and, for the user who hid it, deleted.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, must, register, uname } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const c = await startCluster(after, { n: 2, haproxy: false });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

/** A bound device on node that the other node can reach. */
const bound = (node, user, name) => Sock.reachable(node, node === n1 ? n2 : n1, user, name, socks);
const call = (node, user, path, body) => must(node, 'POST', path, { token: user.token, body });
const notices = (s, id) => s.count((f) => f.type === 'message' && f.message.type === 'recall' && JSON.parse(f.message.data).message_id === id);

test('a 1:1 recall through one node reaches both sides\' devices on both nodes once; history agrees', async () => {
  const [a, b] = [await register(n1, uname('ra')), await register(n2, uname('rb'))];
  const a1 = await bound(n1, a, 'a@node1');
  const a2 = await bound(n2, a, 'a@node2');
  const b2 = await bound(n2, b, 'b@node2');
  const b1 = await bound(n1, b, 'b@node1');
  const m = await call(n1, a, '/chat/send', { to_id: b.id, type: 'text', data: 'oops', client_id: a1.clientId });
  for (const s of [a2, b1, b2]) await s.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 5000);

  const r = await call(n2, a, '/chat/recall', { message_id: m.id });
  assert.equal(r.message.recalled, true);
  assert.equal(r.message.data, '');
  for (const s of [a1, a2, b1, b2]) await s.waitFrame((f) => f.type === 'message' && f.message.id === r.notice.id, 5000);
  await settle(400);
  for (const s of [a1, a2, b1, b2]) assert.equal(notices(s, m.id), 1, `${s.name}: the notice once`);

  const h1 = await must(n1, 'GET', `/chat/history?userid=${a.id}&limit=10`, { token: b.token });
  const h2 = await must(n2, 'GET', `/chat/history?userid=${b.id}&limit=10`, { token: a.token });
  assert.deepEqual(h1, h2, 'both nodes answer the same history');
  assert.deepEqual(h1.map((x) => [x.seq, x.type, x.data, x.recalled ?? false]), [
    [2, 'recall', JSON.stringify({ message_id: m.id }), false],
    [1, 'text', '', true],
  ]);
});

test('a group recall reaches every member on both nodes; a delete-for-me only the user\'s other devices', async () => {
  const [a, b, x] = [await register(n1, uname('ga')), await register(n2, uname('gb')), await register(n2, uname('gx'))];
  const gid = (await call(n1, a, '/group/create', { name: 'recall', members: [b.id, x.id] })).group.group_id;
  const a1 = await bound(n1, a, 'a@node1');
  const a2 = await bound(n2, a, 'a@node2');
  const b2 = await bound(n2, b, 'b@node2');
  const x1 = await bound(n1, x, 'x@node1');
  const m = await call(n2, b, '/chat/send', { group_id: gid, type: 'text', data: 'to withdraw', client_id: b2.clientId });
  const keep = await call(n2, b, '/chat/send', { group_id: gid, type: 'text', data: 'to keep', client_id: b2.clientId });
  for (const s of [a1, a2, x1]) await s.waitFrame((f) => f.type === 'message' && f.message.id === keep.id, 5000);

  const r = await call(n1, b, '/chat/recall', { message_id: m.id });
  for (const s of [a1, a2, b2, x1]) await s.waitFrame((f) => f.type === 'message' && f.message.id === r.notice.id, 5000);

  // a hides `keep` through node1 naming a1: a2 (node2) is told, a1 and the others are not
  const d = await call(n1, a, '/chat/delete', { message_ids: [keep.id], client_id: a1.clientId });
  assert.deepEqual(d.message_ids, [keep.id]);
  const pushed = await a2.waitFrame((f) => f.type === 'deleted', 5000);
  assert.deepEqual(pushed.message_ids, [keep.id]);
  assert.equal(pushed.cursor, d.cursor);
  await settle(400);
  for (const s of [a1, a2, b2, x1]) assert.equal(notices(s, m.id), 1, `${s.name}: the group notice once`);
  assert.equal(a1.count((f) => f.type === 'deleted'), 0, 'not the device that asked');
  assert.equal(b2.count((f) => f.type === 'deleted') + x1.count((f) => f.type === 'deleted'), 0, 'nobody else');

  // either node: hidden for a, not for x; recalled for both
  const ha = await must(n2, 'GET', `/chat/history?group_id=${gid}&limit=10`, { token: a.token });
  const hx = await must(n1, 'GET', `/chat/history?group_id=${gid}&limit=10`, { token: x.token });
  const byId = (h, id) => h.find((e) => e.id === id);
  assert.equal(byId(ha, keep.id).deleted, true);
  assert.equal(byId(ha, keep.id).data, '');
  assert.equal(byId(hx, keep.id).deleted, undefined);
  assert.equal(byId(hx, keep.id).data, 'to keep');
  for (const h of [ha, hx]) assert.equal(byId(h, m.id).recalled, true);
});
