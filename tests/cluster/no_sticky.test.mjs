// No stickiness: everything goes through haproxy (round robin, no cookie, no
// stick table), so one user's HTTP calls and WebSockets land on different
// nodes, and the chat still works. Which node answered: the X-Chatd-Node
// header of every HTTP answer; which node holds a socket: the tag its
// client_id starts with (each node's /healthz cluster.tag).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, http, must, uname } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';
import { syncToEnd } from '../integration/lib/multinode.mjs';

const c = await startCluster(after, { n: 3 });
const socks = [];
after(() => socks.forEach((s) => s.terminate()));
const ids = new Set(c.nodes.map((x) => x.nodeId));

/** A call through haproxy that must succeed; returns {data, node}. */
async function viaLb(method, p, opts) {
  const r = await http(c.lb, method, p, opts);
  assert.equal(r.status, 200, `${method} ${p} through haproxy: ${r.text.slice(0, 300)}`);
  assert.ok(ids.has(r.node), `X-Chatd-Node ${JSON.stringify(r.node)} names one of the nodes`);
  return { data: r.body.data, node: r.node };
}

test('a user\'s HTTP calls and sockets through haproxy land on different nodes, and the chat works', async () => {
  const answered = [];
  const reg = await viaLb('POST', '/user/register', { body: { username: uname('ns'), password: 'pw-123456' } });
  answered.push(reg.node);
  const alice = { ...reg.data.user, token: reg.data.token };
  const reg2 = await viaLb('POST', '/user/register', { body: { username: uname('nt'), password: 'pw-123456' } });
  const bob = { ...reg2.data.user, token: reg2.data.token };
  for (let i = 0; i < 4; i++) {
    const me = await viaLb('GET', '/user/me', { token: alice.token });
    assert.equal(me.data.id, alice.id);
    answered.push(me.node);
  }
  assert.equal(new Set(answered).size, 3, `five consecutive calls of one user were served by every node: ${answered}`);

  // three sockets of alice through haproxy, each bound by POST /chat/bind through haproxy
  const devices = [];
  let crossed = 0;
  for (let i = 0; i < 3; i++) {
    const s = await Sock.open(c.lb, `alice-${i}`);
    socks.push(s);
    const holder = c.nodeOf(s.clientId);
    assert.ok(holder, `client_id ${s.clientId} starts with the tag of a node (${c.nodes.map((x) => x.tag)})`);
    s.node = holder.nodeId;
    const b = await viaLb('POST', '/chat/bind', { token: alice.token, body: { type: 'bind', client_id: s.clientId, bind_nonce: s.bindNonce } });
    if (b.node !== s.node) crossed++;
    devices.push(s);
  }
  assert.ok(new Set(devices.map((s) => s.node)).size >= 2, `alice's sockets are on several nodes: ${devices.map((s) => s.node)}`);
  assert.ok(crossed >= 1, 'at least one /chat/bind was answered by a node other than the socket\'s');

  // bob's socket through haproxy, bound over the socket
  const bs = await Sock.bound(c.lb, bob, 'bob');
  socks.push(bs);

  // bob sends three messages over HTTP through haproxy: each of alice's sockets gets each once
  const sent = [];
  const sendNodes = [];
  for (let i = 0; i < 3; i++) {
    const r = await viaLb('POST', '/chat/send', { token: bob.token, body: { to_id: alice.id, type: 'text', data: `ns ${i}`, client_msg_id: `ns-${i}` } });
    sent.push(r.data);
    sendNodes.push(r.node);
  }
  assert.ok(new Set(sendNodes).size >= 2, `the sends were served by several nodes: ${sendNodes}`);
  for (const s of devices) for (const m of sent) await s.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 5000);
  for (const m of sent) await bs.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 5000);
  // alice answers on a socket; bob gets it
  devices[0].send({ type: 'send', message: { to_id: bob.id, type: 'text', data: 'back', client_msg_id: 'back-1' } });
  const ack = await devices[0].waitFrame((f) => f.type === 'ack', 5000);
  await bs.waitFrame((f) => f.type === 'message' && f.message.id === ack.message.id, 5000);
  await settle();
  for (const s of devices) for (const m of sent) assert.equal(s.count((f) => f.type === 'message' && f.message.id === m.id), 1, `${s.name} on ${s.node}: message ${m.seq} once`);
  for (const s of devices.slice(1)) assert.equal(s.count((f) => f.type === 'message' && f.message.id === ack.message.id), 1, `${s.name}: alice's own message from another device, once`);

  // list, read, receipt, sync, all through haproxy
  const list = await viaLb('GET', '/chat/list', { token: alice.token });
  assert.equal(list.data.find((x) => x.userid === bob.id).noreadnum, 3);
  const rd = await viaLb('POST', '/chat/read', { token: alice.token, body: { userid: bob.id } });
  assert.equal(rd.data.total, 0);
  await bs.waitFrame((f) => f.type === 'receipt' && f.userid === alice.id && f.last_read_id === sent[2].id, 5000);
  const state = { cursors: {} };
  await syncToEnd(c.lb, alice, state);
  assert.deepEqual(state.got.get(String(bob.id)).map((m) => m.id), [...sent.map((m) => m.id), ack.message.id]);

  // the browser client is served through haproxy unchanged
  const page = await http(c.lb, 'GET', '/');
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') || '', /text\/html/);
});

test('every HTTP answer names its node, errors and static files too', async () => {
  for (const node of c.nodes) {
    const answers = [
      await http(node, 'GET', '/user/me'), // 401
      await http(node, 'GET', '/no/such/file.txt'), // 404
      await http(node, 'POST', '/gateway/get_all_client_id_count', { body: {} }), // 401 (no secret)
      await http(node, 'POST', '/chat/send', { body: '{not json', token: 'x'.repeat(43) }), // 401 or 400
      await http(node, 'GET', '/'), // static 200
    ];
    for (const r of answers) assert.equal(r.node, node.nodeId, `HTTP ${r.status} from ${node.nodeId} carries X-Chatd-Node: ${r.text.slice(0, 100)}`);
  }
});

test('haproxy balances each request of one keep-alive connection on its own', async () => {
  // undici (fetch) keeps one connection alive to haproxy for these sequential calls
  const seen = [];
  for (let i = 0; i < 6; i++) seen.push((await http(c.lb, 'GET', '/healthz')).node);
  for (let i = 1; i < seen.length; i++) assert.notEqual(seen[i], seen[i - 1], `consecutive requests hit different nodes: ${seen}`);
});
