// Two chatd nodes on Redis + PostgreSQL (tests/cluster/lib/cluster.mjs), each
// with its own --gw-inner; node 1 serves the Register (--gw-register) and both
// announce to it (--gw-register-address). GatewayClient (php/GwClient.php)
// gets both addresses, routes per-client calls by the client_id, fans the
// cluster-wide calls out to both nodes and merges: each node must answer for
// its own connections only (no double counting, no double delivery through
// the cluster bus). A BusinessWorker connects to both and gets the events of
// both. The native API still covers the whole cluster.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, waitUntil } from '../cluster/lib/cluster.mjs';
import { php, phpSer, ser, clientIdOf, freePort, PhpWorker, WsClient, drainTexts, HOST } from './lib/gw.mjs';

const GW_SECRET = 'cluster-gw-secret';
const [inner1, inner2, regPort] = [await freePort(), await freePort(), await freePort()];
const REGISTER = `${HOST}:${regPort}`;
const INNER = [`${HOST}:${inner1}`, `${HOST}:${inner2}`];
const c = await startCluster(after, {
  n: 2,
  haproxy: false,
  nodeOptions: { 'gw-secret': GW_SECRET, 'gw-register-address': REGISTER },
  perNode: (i) => ({ 'gw-inner': INNER[i], ...(i === 0 ? { 'gw-register': REGISTER } : {}) }),
});
const [n1, n2] = c.nodes;
const target = { register: REGISTER, gwSecret: GW_SECRET };
const clients = [];
after(() => clients.forEach((x) => x.terminate()));

async function open(node, n = 1) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const x = await WsClient.open(node);
    clients.push(x);
    out.push(x);
  }
  return out;
}

async function expectTexts(cs, want, what) {
  for (let i = 0; i < cs.length; i++) {
    const got = [];
    for (let k = 0; k < want[i].length; k++) got.push(await cs[i].nextText(3000).catch((e) => `(${e.message})`));
    got.push(...(await drainTexts(cs[i], 300)));
    assert.deepEqual(got, want[i], `${what}: client ${i}`);
  }
}

test('GatewayClient fans out to both nodes and merges; each node answers for its own connections', async () => {
  await waitUntil(async () => {
    const [r] = await php(target, [['getAddresses']]);
    return r.json && r.json.length === 2;
  }, { timeoutMs: 5000, what: 'the Register listing both inner addresses' });
  assert.deepEqual((await php(target, [['getAddresses']]))[0].json, INNER, 'in announcement order');

  const [a1, b1] = await open(n1, 2);
  const [a2] = await open(n2, 1);
  assert.equal(a1.clientId.slice(0, 12), clientIdOf(INNER[0], 0).slice(0, 12), 'node 1 ids name its inner address');
  assert.equal(a2.clientId.slice(0, 12), clientIdOf(INNER[1], 0).slice(0, 12), 'node 2 ids name its inner address');
  const cs = [a1, b1, a2];

  const r = await phpSer(target, [
    ['getAllClientIdCount'],
    ['bindUid', a1.clientId, 'u'],
    ['bindUid', a2.clientId, 'u'],
    ['bindUid', b1.clientId, '77'],
    ['getClientIdByUid', 'u'],
    ['isUidOnline', 'u'],
    ['batchGetClientIdByUid', ['u', '77', 'none']],
    ['getAllUidList'],
    ['getAllUidCount'],
    ['joinGroup', a2.clientId, 'cg'],
    ['joinGroup', b1.clientId, 'cg'],
    ['getClientIdCountByGroup', 'cg'],
    ['getClientIdListByGroup', 'cg'],
    ['getUidByClientId', a2.clientId],
    ['isOnline', a2.clientId],
    ['getAllGroupIdList'],
  ]);
  assert.deepEqual(r, [
    'i:3;', // 2 + 1: not double counted
    'N;',
    'N;',
    'N;',
    ser([a1.clientId, a2.clientId]), // node 1's reply, then node 2's
    'i:1;',
    ser(new Map([['u', [a1.clientId, a2.clientId]], [77, [b1.clientId]]])),
    ser(new Map([['u', 'u'], [77, '77']])),
    'i:2;',
    'N;',
    'N;',
    'i:2;',
    ser(new Map([[b1.clientId, b1.clientId], [a2.clientId, a2.clientId]])),
    's:1:"u";',
    'i:1;',
    ser(new Map([['cg', 'cg']])),
  ]);

  // sends reach each connection once (a node's inner command must not also travel the cluster bus)
  await phpSer(target, [
    ['sendToUid', 'u', 'to-u'],
    ['sendToAll', 'to-all'],
    ['sendToGroup', 'cg', 'to-cg'],
    ['sendToClient', a2.clientId, 'to-a2'],
    ['sendToAll', 'to-list', [a1.clientId, a2.clientId]],
  ]);
  await expectTexts(
    cs,
    [
      ['to-u', 'to-all', 'to-list'],
      ['to-all', 'to-cg'],
      ['to-u', 'to-all', 'to-cg', 'to-a2', 'to-list'],
    ],
    'cross-node sends',
  );

  // the native API covers the cluster, with the same ids
  assert.deepEqual(new Set(await gw(n2, 'get_client_id_by_uid', { uid: 'u' })), new Set([a1.clientId, a2.clientId]));
  assert.equal(await gw(n1, 'send_to_client', { client_id: a2.clientId, data: 'native-cross' }), 1);
  assert.equal(await a2.nextText(3000), 'native-cross');
});

test('a BusinessWorker connects to both nodes and gets the events of both', async () => {
  const w = await PhpWorker.start(target, { gateways: 2, register: REGISTER, secret: GW_SECRET });
  after(() => w.stop());
  const [x1] = await open(n1);
  const [x2] = await open(n2);
  for (const [x, inner] of [[x1, INNER[0]], [x2, INNER[1]]]) {
    assert.equal((await x.nextJson(3000)).type, 'init_php');
    const ev = await w.waitFor((l) => l.ev === 'connect' && l.client_id === x.clientId, 3000, 'connect event');
    assert.equal(ev.local, inner);
    assert.equal(ev.gateway, inner);
    x.sendJson({ cmd: 'echo', data: inner });
    assert.deepEqual(await x.nextJson(3000), { type: 'echo', data: inner });
  }
  // a worker on node 2 sends to a group with a member on node 1
  x1.sendJson({ cmd: 'join', group: 'wg' });
  assert.equal((await x1.nextJson(3000)).type, 'joined');
  x2.sendJson({ cmd: 'sendgroup', group: 'wg', data: 'from node 2' });
  assert.equal(await x1.nextText(3000), 'from node 2');
  assert.deepEqual(await drainTexts(x1, 300), [], 'once');
});
