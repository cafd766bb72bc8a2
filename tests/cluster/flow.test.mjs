// Three chatd nodes on one Redis and one PostgreSQL database, haproxy in
// front. Two users with devices spread over the three nodes (sockets opened
// on the node ports, so the spread is certain) run the whole chat flow; then
// every /gateway/* method is called on one node acting on clients of another,
// group sends reach members on every node exactly once, and counts and lists
// are the same from every node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, must, http, register, login, uname, waitUntil, sleep } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const c = await startCluster(after, { n: 3 });
const [n1, n2, n3] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));
const open = async (node, name, user) => {
  const s = user ? await Sock.bound(node, user, name) : await Sock.open(node, name);
  socks.push(s);
  return s;
};

test('client ids name their node: 24 base64url chars, first two = the node tag of /healthz', async () => {
  const tags = c.nodes.map((x) => x.tag);
  assert.equal(new Set(tags).size, 3, `three distinct tags: ${tags}`);
  for (const node of c.nodes) {
    const s = await open(node, `probe@${node.nodeId}`);
    assert.match(s.clientId, /^[A-Za-z0-9_-]{24}$/, 'client_id shape');
    assert.equal(s.clientId.slice(0, 2), node.tag, `client_id ${s.clientId} of ${node.nodeId} starts with its tag ${node.tag}`);
    const r = await http(node, 'GET', '/healthz');
    assert.equal(r.node, node.nodeId, 'X-Chatd-Node names the node');
    assert.equal(r.body.data.cluster.node_id, node.nodeId);
    await s.close();
  }
});

test('chat flow with two users\' devices on three nodes: bind across nodes, send, exactly-once pushes, list, read, receipts, events', async () => {
  const alice = await register(c.lb, uname('ca'));
  const bob = await register(c.lb, uname('cb'));
  // a second session of each user, logged in on another node
  const alice2 = { ...alice, token: await login(n2, alice) };
  const bob2 = { ...bob, token: await login(n3, bob) };

  // alice: a1 on node1 (socket bind), a2 on node2 bound by POST /chat/bind on node3
  const a1 = await open(n1, 'a1@node1', alice);
  const a2 = await open(n2, 'a2@node2');
  const b = await must(n3, 'POST', '/chat/bind', { token: alice2.token, body: { type: 'bind', client_id: a2.clientId, bind_nonce: a2.bindNonce } });
  assert.equal(b.client_id, a2.clientId);
  assert.equal(Number(b.uid), alice.id);
  // bob: b1 on node3 bound by POST /chat/bind on node1, b2 on node2 (socket bind), b3 on node1 bound through haproxy
  const b1 = await open(n3, 'b1@node3');
  await must(n1, 'POST', '/chat/bind', { token: bob.token, body: { type: 'bind', client_id: b1.clientId, bind_nonce: b1.bindNonce } });
  const b2 = await open(n2, 'b2@node2', bob2);
  const b3 = await open(n1, 'b3@node1');
  await must(c.lb, 'POST', '/chat/bind', { token: bob2.token, body: { type: 'bind', client_id: b3.clientId, bind_nonce: b3.bindNonce } });
  // a wrong nonce is refused wherever the socket is
  const bad = await http(n2, 'POST', '/chat/bind', { token: bob.token, body: { type: 'bind', client_id: b1.clientId, bind_nonce: a2.bindNonce } });
  assert.equal(bad.status, 403, `bind with another socket's nonce: ${bad.text}`);
  // binding alice's socket to bob from another node is refused
  const steal = await http(n3, 'POST', '/chat/bind', { token: bob.token, body: { type: 'bind', client_id: a2.clientId, bind_nonce: a2.bindNonce } });
  assert.equal(steal.status, 403, `bind of a socket bound to another user: ${steal.text}`);

  // the directory knows all five devices, from any node
  for (const node of c.nodes) {
    const ids = await gw(node, 'get_client_id_by_uid', { uid: String(bob.id) });
    assert.deepEqual([...ids].sort(), [b1.clientId, b2.clientId, b3.clientId].sort(), `bob's clients seen from ${node.nodeId}`);
    assert.equal(await gw(node, 'is_uid_online', { uid: alice.id }), true);
  }

  // 1. alice sends over HTTP on node3 naming a1: bob's three devices and a2 get it once, a1 not
  const m1 = await must(n3, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'hello bob', client_msg_id: 'm1', client_id: a1.clientId } });
  assert.equal(m1.seq, 1);
  for (const s of [b1, b2, b3, a2]) await s.waitFrame((f) => f.type === 'message' && f.message.id === m1.id, 5000);
  // 2. bob answers on his socket b2 (node2): ack on b2; a1, a2, b1, b3 get it
  b2.send({ type: 'send', message: { to_id: alice.id, type: 'text', data: 'hi alice', client_msg_id: 'm2' } });
  const ack = await b2.waitFrame((f) => f.type === 'ack' && f.client_msg_id === 'm2', 5000);
  const m2 = ack.message;
  assert.equal(m2.seq, 2);
  for (const s of [a1, a2, b1, b3]) await s.waitFrame((f) => f.type === 'message' && f.message.id === m2.id, 5000);
  await settle();
  const count = (s, id) => s.count((f) => f.type === 'message' && f.message.id === id);
  for (const s of [b1, b2, b3, a2]) assert.equal(count(s, m1.id), 1, `${s.name} got m1 exactly once`);
  assert.equal(count(a1, m1.id), 0, 'a1 (named by client_id) is not pushed its own message');
  for (const s of [a1, a2, b1, b3]) assert.equal(count(s, m2.id), 1, `${s.name} got m2 exactly once`);
  assert.equal(count(b2, m2.id), 0, 'the sending socket gets an ack, not a push');
  assert.deepEqual(b1.frames.find((f) => f.type === 'message' && f.message.id === m1.id).message, m1, 'the push is the stored message');

  // 3. unread counts in /chat/list, from any node
  for (const node of c.nodes) {
    const listB = await must(node, 'GET', '/chat/list', { token: bob.token });
    const convB = listB.find((x) => x.userid === alice.id);
    assert.equal(convB.noreadnum, 1, `bob's unread from alice on ${node.nodeId}`);
    assert.equal(convB.last_seq, 2);
    const listA = await must(node, 'GET', '/chat/list', { token: alice.token });
    assert.equal(listA.find((x) => x.userid === bob.id).noreadnum, 1, `alice's unread from bob on ${node.nodeId}`);
  }

  // 4. bob reads on node1 naming b1: b2 and b3 get "read", alice's devices a receipt, once each
  const rd = await must(n1, 'POST', '/chat/read', { token: bob.token, body: { userid: alice.id, client_id: b1.clientId } });
  assert.equal(rd.total, 0);
  for (const s of [b2, b3]) await s.waitFrame((f) => f.type === 'read' && f.userid === alice.id, 5000);
  for (const s of [a1, a2]) await s.waitFrame((f) => f.type === 'receipt' && f.userid === bob.id, 5000);
  await settle();
  for (const s of [b2, b3]) assert.equal(s.count((f) => f.type === 'read'), 1, `${s.name}: one read push`);
  assert.equal(b1.count((f) => f.type === 'read'), 0, 'the reading device gets no read push');
  for (const s of [a1, a2]) {
    const rs = s.frames.filter((f) => f.type === 'receipt');
    assert.deepEqual(rs, [{ type: 'receipt', userid: bob.id, last_read_id: m1.id }], `${s.name}: one receipt`);
  }
  const listB = await must(n2, 'GET', '/chat/list', { token: bob.token });
  assert.equal(listB.find((x) => x.userid === alice.id).noreadnum, 0, 'read on node1, seen on node2');

  // 5. a transient event from a1 (node1) reaches bob's devices on every node once
  a1.send({ type: 'event', to_id: bob.id, data: { typing: true } });
  for (const s of [b1, b2, b3]) await s.waitFrame((f) => f.type === 'event', 5000);
  await settle();
  for (const s of [b1, b2, b3]) assert.deepEqual(s.frames.filter((f) => f.type === 'event'), [{ type: 'event', from_id: alice.id, data: { typing: true } }], `${s.name}: one event`);

  // 6. a cursor sync through haproxy gives both messages in seq order
  const sy = await must(c.lb, 'POST', '/chat/sync', { token: bob.token, body: { cursors: {} } });
  assert.deepEqual(sy.conversations.map((x) => x.messages.map((m) => m.id)), [[m1.id, m2.id]]);

  for (const s of [a1, a2, b1, b2, b3]) await s.close();
});

test('every /gateway/* method on one node acts on clients of another node; counts and lists cluster-wide', async () => {
  // quiet cluster: only the sockets of this test are open
  await waitUntil(async () => (await gw(n1, 'get_all_client_id_count')) === 0, { what: 'no clients left from earlier tests' });
  const g3 = await open(n3, 'g3@node3'); // the clients acted upon live on node3
  const g3b = await open(n3, 'g3b@node3');
  const g2 = await open(n2, 'g2@node2');
  const g1 = await open(n1, 'g1@node1');
  const all = [g1, g2, g3, g3b];
  const uA = `gwA-${uname('u')}`;
  const uB = `gwB-${uname('u')}`;
  const grp = `grp-${uname('g')}`;

  // counts
  for (const node of c.nodes) assert.equal(await gw(node, 'get_all_client_id_count'), 4, `client count on ${node.nodeId}`);

  // bind_uid on node1 for a client of node3 (and one of node2)
  assert.equal(await gw(n1, 'bind_uid', { client_id: g3.clientId, uid: uA }), true);
  assert.equal(await gw(n1, 'bind_uid', { client_id: g2.clientId, uid: uA }), true);
  assert.equal(await gw(n1, 'bind_uid', { client_id: g3b.clientId, uid: uB }), true);
  for (const node of c.nodes) {
    assert.equal(await gw(node, 'get_uid_by_client_id', { client_id: g3.clientId }), uA, `uid of g3 from ${node.nodeId}`);
    assert.deepEqual(await gw(node, 'get_uid_by_client_id', { client_id: [g3.clientId, g1.clientId, g3b.clientId] }), [uA, null, uB]);
    assert.deepEqual([...(await gw(node, 'get_client_id_by_uid', { uid: uA }))].sort(), [g2.clientId, g3.clientId].sort(), `clients of uA from ${node.nodeId}`);
    assert.equal(await gw(node, 'is_uid_online', { uid: uA }), true);
    assert.equal(await gw(node, 'is_uid_online', { uid: 'nobody-here' }), false);
    assert.equal(await gw(node, 'get_all_uid_count'), 2, `uid count from ${node.nodeId}`);
    assert.equal(await gw(node, 'is_online', { client_id: g3.clientId }), true);
    assert.deepEqual(await gw(node, 'is_online', { client_id: [g3.clientId, g1.clientId, `${g3.clientId.slice(0, 2)}${'A'.repeat(22)}`] }), [true, true, false]);
  }

  // list arguments merge the nodes' answers
  for (const node of c.nodes) {
    assert.deepEqual([...(await gw(node, 'get_client_id_by_uid', { uid: [uA, uB, 'nobody'] }))].sort(), [g2.clientId, g3.clientId, g3b.clientId].sort(), `clients of [uA, uB] from ${node.nodeId}`);
  }

  // send_to_uid / send_to_client from node1, counted cluster-wide, received once
  assert.equal(await gw(n1, 'send_to_uid', { uid: uA, data: 'to-uA' }), 2);
  await g3.waitText('to-uA');
  await g2.waitText('to-uA');
  assert.equal(await gw(n2, 'send_to_uid', { uid: [uA, uB], data: 'to-uAB' }), 3);
  for (const s of [g2, g3, g3b]) await s.waitText('to-uAB');
  assert.equal(await gw(n1, 'send_to_client', { client_id: g3.clientId, data: { hello: 'g3' } }), 1);
  await g3.waitFrame((f) => f.hello === 'g3');
  assert.equal(await gw(n1, 'send_to_client', { client_id: `${g3.clientId.slice(0, 2)}${'B'.repeat(22)}`, data: 'nobody' }), 0, 'unknown client on node3');

  // groups: members on all three nodes
  for (const s of [g1, g2, g3]) assert.equal(await gw(n2, 'join_group', { client_id: s.clientId, group: grp }), true);
  for (const node of c.nodes) {
    assert.equal(await gw(node, 'get_client_id_count_by_group', { group: grp }), 3, `group count from ${node.nodeId}`);
    assert.deepEqual(await gw(node, 'get_uid_list_by_group', { group: grp }), [uA], `uids of group from ${node.nodeId} (g1 is unbound)`);
  }
  assert.equal(await gw(n1, 'send_to_group', { group: grp, data: 'grp-1' }), 3);
  assert.equal(await gw(n3, 'send_to_group', { group: grp, data: 'grp-2', exclude_client_ids: [g2.clientId] }), 2);
  for (const s of [g1, g2, g3]) await s.waitText('grp-1');
  await g1.waitText('grp-2');
  await g3.waitText('grp-2');

  // leave_group on node1 for the node3 member
  assert.equal(await gw(n1, 'leave_group', { client_id: g3.clientId, group: grp }), true);
  for (const node of c.nodes) assert.equal(await gw(node, 'get_client_id_count_by_group', { group: grp }), 2, `after leave, from ${node.nodeId}`);
  assert.equal(await gw(n2, 'send_to_group', { group: grp, data: 'grp-3' }), 2);
  await g1.waitText('grp-3');
  await g2.waitText('grp-3');

  // sessions set on node1, read and merged elsewhere
  assert.equal(await gw(n1, 'set_session', { client_id: g3.clientId, session: { a: 1, s: 'x' } }), true);
  assert.deepEqual(await gw(n2, 'get_session', { client_id: g3.clientId }), { a: 1, s: 'x' });
  assert.equal(await gw(n2, 'update_session', { client_id: g3.clientId, session: { b: 2, s: 'y' } }), true);
  for (const node of c.nodes) assert.deepEqual(await gw(node, 'get_session', { client_id: g3.clientId }), { a: 1, b: 2, s: 'y' }, `session from ${node.nodeId}`);
  assert.equal(await gw(n1, 'get_session', { client_id: g3b.clientId }), null);

  // send_to_all: every connection of the cluster once; restricted and excluding lists
  assert.equal(await gw(n2, 'send_to_all', { data: 'all-1' }), 4);
  assert.equal(await gw(n2, 'send_to_all', { data: 'all-2', client_ids: [g3.clientId, g1.clientId] }), 2);
  assert.equal(await gw(n1, 'send_to_all', { data: 'all-3', exclude_client_ids: [g3b.clientId] }), 3);
  for (const s of all) await s.waitText('all-1');
  await g3.waitText('all-2');
  await g1.waitText('all-2');
  for (const s of [g1, g2, g3]) await s.waitText('all-3');

  // unbind_uid on node2 of the node3 client
  assert.equal(await gw(n2, 'unbind_uid', { client_id: g3.clientId, uid: uA }), true);
  for (const node of c.nodes) {
    assert.equal(await gw(node, 'get_uid_by_client_id', { client_id: g3.clientId }), null, `g3 unbound, from ${node.nodeId}`);
    assert.deepEqual(await gw(node, 'get_client_id_by_uid', { uid: uA }), [g2.clientId]);
  }

  // ungroup on node3; the group is gone everywhere
  assert.equal(await gw(n3, 'ungroup', { group: grp }), true);
  for (const node of c.nodes) assert.equal(await gw(node, 'get_client_id_count_by_group', { group: grp }), 0, `after ungroup, from ${node.nodeId}`);
  assert.equal(await gw(n1, 'send_to_group', { group: grp, data: 'grp-4' }), 0);

  // close_client on node1 of a node3 client: data first, then close 1008
  assert.equal(await gw(n1, 'close_client', { client_id: g3.clientId, data: 'bye' }), 1);
  const ci = await g3.closed;
  assert.equal(ci.code, 1008, 'close_client closes with 1008');
  assert.equal(g3.texts[g3.texts.length - 1], 'bye', 'close_client data came last before the close');
  for (const node of c.nodes) {
    assert.equal(await gw(node, 'is_online', { client_id: g3.clientId }), false, `g3 offline from ${node.nodeId}`);
    assert.equal(await gw(node, 'get_all_client_id_count'), 3, `count after close from ${node.nodeId}`);
  }

  // exactly once: every text each socket got, counted
  await settle();
  const expectOnce = {
    g1: ['grp-1', 'grp-2', 'grp-3', 'all-1', 'all-2', 'all-3'],
    g2: ['to-uA', 'to-uAB', 'grp-1', 'grp-3', 'all-1', 'all-3'],
    g3: ['to-uA', 'to-uAB', 'grp-1', 'grp-2', 'all-1', 'all-2', 'all-3', 'bye'],
    g3b: ['to-uAB', 'all-1'],
  };
  for (const s of all) {
    const key = s.name.split('@')[0];
    const got = s.texts.filter((t, i) => s.frames[i].type !== 'init');
    const want = [...expectOnce[key], ...(key === 'g3' ? ['{"hello":"g3"}'] : [])];
    assert.deepEqual([...got].sort(), [...want].sort(), `${s.name}: every push exactly once, nothing else`);
  }
  for (const s of all) s.terminate();
  await sleep(100);
});

test('logout on one node closes that token\'s sockets on every node, and only those', async () => {
  const u = await register(n1, uname('lo'));
  const t2 = await login(n2, u);
  const s2 = await open(n2, 'lo-a@node2', u); // bound with the token that logs out
  const s3 = await open(n3, 'lo-b@node3', { ...u, token: t2 }); // another session of the same user
  assert.equal(await must(n1, 'POST', '/user/logout', { token: u.token }), true);
  const e = await s2.waitFrame((f) => f.type === 'error', 3000);
  assert.equal(e.code, 'logged_out');
  assert.equal((await s2.closed).code, 1008);
  await settle();
  assert.equal(s3.closeInfo, null, 'the other session\'s socket stays open');
  assert.equal(s3.count((f) => f.type === 'error'), 0);
  const r = await http(n3, 'GET', '/user/me', { token: u.token });
  assert.equal(r.status, 401, 'the token is refused on every node');
  s3.terminate();
});

test('a push as large as a request body may be crosses the bus whole', async () => {
  const s = await open(n3, 'big@node3');
  const big = 'x'.repeat(1000 * 1000); // the body of the API call stays under --max-body (1 MiB)
  assert.equal(await gw(n1, 'send_to_client', { client_id: s.clientId, data: big }), 1);
  await s.waitText(big, 1, 5000);
  const grp = `big-${uname('g')}`;
  assert.equal(await gw(n1, 'join_group', { client_id: s.clientId, group: grp }), true);
  const obj = { k: 'y'.repeat(900 * 1000) };
  assert.equal(await gw(n2, 'send_to_group', { group: grp, data: obj }), 1);
  await s.waitFrame((f) => f.k === obj.k, 5000);
  s.terminate();
});

test('list arguments spanning nodes act on each item where it lives, as on one node', async () => {
  const x = await open(n3, 'lx@node3');
  const y = await open(n2, 'ly@node2');
  const z = await open(n1, 'lz@node1');
  const gA = `lA-${uname('g')}`;
  const gB = `lB-${uname('g')}`;
  const u = `lu-${uname('u')}`;
  const ghost = `${x.clientId.slice(0, 2)}${'C'.repeat(22)}`;
  assert.equal(await gw(n2, 'send_to_client', { client_id: [x.clientId, y.clientId, z.clientId, ghost], data: 'each' }), 3);
  for (const s of [x, y, z]) await s.waitText('each');
  assert.equal(await gw(n1, 'bind_uid', { client_id: [x.clientId, y.clientId], uid: u }), true);
  assert.deepEqual([...(await gw(n3, 'get_client_id_by_uid', { uid: u }))].sort(), [x.clientId, y.clientId].sort());
  for (const [s, g] of [[x, gA], [x, gB], [y, gA], [z, gB]]) assert.equal(await gw(n2, 'join_group', { client_id: s.clientId, group: g }), true);
  // one node counts a connection once per group it is sent through: so does the cluster
  assert.equal(await gw(n1, 'get_client_id_count_by_group', { group: [gA, gB] }), 4);
  assert.equal(await gw(n1, 'send_to_group', { group: [gA, gB], data: 'groups' }), 4);
  await x.waitText('groups', 2);
  await y.waitText('groups');
  await z.waitText('groups');
  assert.equal(await gw(n3, 'close_client', { client_id: [x.clientId, z.clientId, ghost], data: 'bye-list' }), 2);
  assert.equal((await x.closed).code, 1008);
  assert.equal((await z.closed).code, 1008);
  await settle();
  assert.equal(x.countText('groups'), 2);
  assert.equal(y.countText('groups'), 1);
  assert.equal(z.countText('groups'), 1);
  for (const s of [x, y, z]) assert.equal(s.countText('each'), 1, `${s.name}: send_to_client list, once`);
  assert.equal(y.closeInfo, null, 'a client left out of the list stays');
  y.terminate();
});
