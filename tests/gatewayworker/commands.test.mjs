// GatewayClient's calls against chatd's inner port (--gw-inner, --gw-register,
// no secret), through the PHP client of php/GwClient.php: every command and
// query of the facts file (/work/shared/gatewayworker-protocol.md), the
// replies byte for byte (raw exchanges) and as GatewayClient returns them
// (PHP serialize() of the result, so int/string keys and null/[] differ),
// and the "Behaviours a compatible gateway must match" list: insertion order,
// types, empty and unknown, updateSession's merge, sendToGroup once per
// membership, KICK without a close frame, arrival order on new connections.
// The native /gateway/* API and the init greeting work on the same clients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startGw,
  php,
  php1,
  phpSer,
  phpRaw,
  ser,
  connId,
  clientIdOf,
  openWs,
  drainTexts,
  sleep,
  HOST,
} from './lib/gw.mjs';
import { RawWs } from '../integration/lib/ws.mjs';
import { api, call, healthz } from '../integration/lib/http.mjs';

/** A fresh chatd with n WebSocket clients, stopped after the test. */
async function setup(t, n = 0, cfg = {}) {
  const srv = await startGw(cfg);
  const clients = await openWs(srv, n);
  t.after(async () => {
    for (const c of clients) c.terminate();
    await srv.stop();
  });
  return { srv, clients, ids: clients.map((c) => c.clientId) };
}

/** Asserts each client got exactly `want[i]` (a list of texts) now and nothing more. */
async function expectTexts(clients, want, what) {
  for (let i = 0; i < clients.length; i++) {
    const got = [];
    for (let k = 0; k < want[i].length; k++) got.push(await clients[i].nextText(2000).catch((e) => `(${e.message})`));
    got.push(...(await drainTexts(clients[i], 150)));
    assert.deepEqual(got, want[i], `${what}: client ${i}`);
  }
}

/** The 4-byte length + bytes of a reply, as hex. */
const replyHex = (s) => {
  const b = Buffer.from(s);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length);
  return Buffer.concat([h, b]).toString('hex');
};

/** One raw query on a new connection: the reply as text (asserting the length prefix). */
async function rawQuery(srv, frame, { auth } = {}) {
  const send = [];
  if (auth !== undefined) send.push({ auth });
  send.push({ frame });
  const [r] = await phpRaw([{ address: srv.inner, send, read: 'reply', timeout: 3 }]);
  const b = Buffer.from(r.hex, 'hex');
  assert.ok(b.length >= 4, `a reply to cmd ${frame.cmd}: got ${r.hex} (closed ${r.closed}, timed out ${r.timed_out})`);
  assert.equal(b.readUInt32BE(0), b.length - 4, `length prefix of the reply to cmd ${frame.cmd}: ${r.hex}`);
  return b.subarray(4).toString('latin1');
}

test('client_ids: 20 hex naming the inner address, random non-zero connection ids; the Register lists the inner address', async (t) => {
  const { srv, ids } = await setup(t, 6);
  const prefix = clientIdOf(srv.inner, 0).slice(0, 12);
  for (const id of ids) {
    assert.match(id, /^[0-9a-f]{20}$/);
    assert.equal(id.slice(0, 12), prefix, 'inner IPv4 + inner port');
    assert.notEqual(connId(id), 0);
  }
  assert.equal(new Set(ids).size, ids.length);
  const diffs = ids.slice(1).map((id, i) => connId(id) - connId(ids[i]));
  assert.ok(!diffs.every((d) => d === 1), `connection ids are not a counter: ${ids.map(connId)}`);

  // exactly the line the facts give, and \n
  const [r] = await phpRaw([{ address: srv.register, send: [{ text: '{"event":"worker_connect","secret_key":""}\n' }], read: 'line' }]);
  assert.equal(Buffer.from(r.hex, 'hex').toString(), `{"event":"broadcast_addresses","addresses":["${srv.inner}"]}\n`);
  const rs = await php(srv, [['getAddresses'], ['getAllClientIdCount'], ['isOnline', ids[0]]]);
  assert.deepEqual(rs.map((x) => x.ser), [ser([srv.inner]), 'i:6;', 'i:1;']);
});

test('sendToClient, sendToAll (everyone, client_id_array, exclude) and raw sends', async (t) => {
  const { srv, clients, ids } = await setup(t, 3);
  const [a, b, c] = ids;
  // a text frame "raw!" built by the sender (flag 0x02: sent as is)
  const rawFrame = Buffer.concat([Buffer.from([0x81, 4]), Buffer.from('raw!')]).toString('hex');
  await phpSer(srv, [
    ['sendToClient', a, 'to-a'],
    ['sendToAll', 'to-all'],
    ['sendToAll', 'to-a-c', [a, c]],
    ['sendToAll', 'not-b', null, [b]],
    ['sendToAll', 'not-a-b', null, [a, b]],
    ['sendToClient', b, { $hex: rawFrame }, true],
    ['sendToAll', { $hex: rawFrame }, [c], null, true],
    ['sendToClient', clientIdOf(srv.inner, (connId(a) ^ 0x5a5a5a5a) >>> 0 || 1), 'nobody'],
  ]);
  await expectTexts(
    clients,
    [
      ['to-a', 'to-all', 'to-a-c', 'not-b'],
      ['to-all', 'raw!'],
      ['to-all', 'to-a-c', 'not-b', 'not-a-b', 'raw!'],
    ],
    'sends',
  );
  // a message with bytes that are not UTF-8 text in JSON terms, and an empty one? (GatewayWorker sends '' as an empty text frame)
  await phpSer(srv, [['sendToClient', a, 'ünïcödé ✓']]);
  assert.equal(await clients[0].nextText(), 'ünïcödé ✓');
});

test('bindUid, getClientIdByUid (bind order), getUidByClientId (a string, or null), isUidOnline, unbindUid, sendToUid', async (t) => {
  const { srv, clients, ids } = await setup(t, 3);
  const [a, b, c] = ids;
  const r = await phpSer(srv, [
    ['bindUid', b, '42'],
    ['bindUid', a, 42], // a number is sent as its decimal string
    ['getClientIdByUid', '42'],
    ['getUidByClientId', a],
    ['getUidByClientId', c],
    ['isUidOnline', 42],
    ['isUidOnline', 'nobody'],
    ['getClientIdByUid', 'nobody'],
    ['batchGetClientIdByUid', ['42', 'nobody']],
  ]);
  assert.deepEqual(r.slice(2), [
    ser([b, a]),
    's:2:"42";', // a uid is a string, numeric ones too
    'N;',
    'i:1;',
    'i:0;',
    'a:0:{}',
    ser(new Map([[42, [b, a]]])), // GatewayClient keys by uid: a numeric uid is an integer key
  ]);

  // the replies on the wire
  assert.equal(await rawQuery(srv, { cmd: 15, ext_data: '42' }), ser([connId(b), connId(a)]));
  assert.equal(await rawQuery(srv, { cmd: 15, ext_data: 'nobody' }), 'a:0:{}');
  // one entry per requested uid, [] for the unknown (facts: "batch calls return one entry per requested item")
  assert.equal(
    await rawQuery(srv, { cmd: 16, ext_data: JSON.stringify(['42', 'nobody']) }),
    ser(new Map([[42, [connId(b), connId(a)]], ['nobody', []]])),
  );

  // a connection has one uid: binding again moves it; a uid has many
  const r2 = await phpSer(srv, [
    ['bindUid', a, 'u2'],
    ['getClientIdByUid', '42'],
    ['getClientIdByUid', 'u2'],
    ['getUidByClientId', a],
    ['unbindUid', b, '42'],
    ['getClientIdByUid', '42'],
    ['getUidByClientId', b],
    ['isUidOnline', '42'],
  ]);
  assert.deepEqual(r2, ['N;', ser([b]), ser([a]), 's:2:"u2";', 'N;', 'a:0:{}', 'N;', 'i:0;']);

  await phpSer(srv, [
    ['bindUid', c, 'u2'],
    ['sendToUid', 'u2', 'to-u2'],
    ['sendToUid', ['u2', 'nobody'], 'to-list'],
    ['sendToUid', '42', 'to-42-nobody-now'],
  ]);
  await expectTexts(clients, [['to-u2', 'to-list'], [], ['to-u2', 'to-list']], 'sendToUid');
});

test('arrival order: a command takes effect before a query or send on the next new connection', async (t) => {
  const { srv, clients, ids } = await setup(t, 2);
  const calls = [];
  const want = [];
  for (let i = 0; i < 15; i++) {
    calls.push(['bindUid', ids[i % 2], `ord${i}`], ['getClientIdByUid', `ord${i}`], ['sendToUid', `ord${i}`, `m${i}`]);
    want.push('N;', ser([ids[i % 2]]), 'N;');
    calls.push(['joinGroup', ids[i % 2], `og${i}`], ['getClientIdCountByGroup', `og${i}`]);
    want.push('N;', 'i:1;');
  }
  assert.deepEqual(await phpSer(srv, calls), want);
  await expectTexts(
    clients,
    [0, 1].map((k) => Array.from({ length: 15 }, (_, i) => i).filter((i) => i % 2 === k).map((i) => `m${i}`)),
    'sendToUid right after bindUid',
  );
});

test('groups: join order, counts, uid lists keyed by uid, numeric group ids, sendToGroup once per membership, leave, ungroup', async (t) => {
  const { srv, clients, ids } = await setup(t, 3);
  const [a, b, c] = ids;
  await phpSer(srv, [
    ['bindUid', a, '42'],
    ['bindUid', c, 'alice'],
    ['joinGroup', a, 'g1'],
    ['joinGroup', c, 'g1'],
    ['joinGroup', b, 'g1'],
    ['joinGroup', a, 7],
    ['joinGroup', b, 'g2'],
  ]);
  const r = await phpSer(srv, [
    ['getClientIdListByGroup', 'g1'],
    ['getClientIdCountByGroup', 'g1'],
    ['getClientCountByGroup', 'g1'],
    ['getClientIdCountByGroup', 'nope'],
    ['getUidListByGroup', 'g1'],
    ['getUidCountByGroup', 'g1'],
    ['getAllUidList'],
    ['getAllGroupIdList'],
    ['getAllClientIdCount'],
    ['getClientIdListByGroup', 'nope'],
    ['getUidListByGroup', 'nope'],
    ['batchGetClientCountByGroup', ['g1', 'nope', '7']],
  ]);
  assert.deepEqual(r, [
    ser(new Map([[a, a], [c, c], [b, b]])), // join order
    'i:3;',
    'i:3;',
    'i:0;',
    ser(new Map([[42, '42'], ['alice', 'alice']])), // [42=>"42"]: numeric key, string value
    'i:2;',
    ser(new Map([[42, '42'], ['alice', 'alice']])),
    ser(new Map([['g1', 'g1'], [7, 7], ['g2', 'g2']])), // creation order; a numeric group id is [7=>7]
    'i:3;',
    'a:0:{}',
    'a:0:{}',
    ser(new Map([['g1', 3], ['nope', 0], [7, 1]])),
  ]);
  // on the wire
  assert.equal(await rawQuery(srv, { cmd: 24, ext_data: 'g1' }), 'i:3;');
  assert.equal(await rawQuery(srv, { cmd: 24, ext_data: '' }), 'i:3;'); // empty group: all connections
  assert.equal(await rawQuery(srv, { cmd: 24, ext_data: 'nope' }), 'i:0;');
  assert.equal(
    await rawQuery(srv, { cmd: 28, ext_data: JSON.stringify(['g1', 'nope', '7']) }),
    ser(new Map([['g1', 3], ['nope', 0], [7, 1]])), // one entry per requested group
  );
  // facts: "list of groups that have members"; GatewayClient's [7=>7] means the numeric id comes as an integer.
  // Open in the facts: a list (i:0..) rather than a group=>group array; written as a list here.
  assert.equal(await rawQuery(srv, { cmd: 26 }), ser(['g1', 7, 'g2']));

  await phpSer(srv, [
    ['sendToGroup', 'g1', 'to-g1'],
    ['sendToGroup', ['g1', 'g2'], 'to-g1-g2'], // b is in both: twice
    ['sendToGroup', 'g1', 'g1-not-b', [b]],
    ['sendToGroup', ['g1', '7'], 'g1-7-not-c', [c]],
    ['sendToGroup', 'nope', 'to-nobody'],
  ]);
  await expectTexts(
    clients,
    [
      ['to-g1', 'to-g1-g2', 'g1-not-b', 'g1-7-not-c', 'g1-7-not-c'],
      ['to-g1', 'to-g1-g2', 'to-g1-g2', 'g1-7-not-c'],
      ['to-g1', 'to-g1-g2', 'g1-not-b'],
    ],
    'sendToGroup',
  );

  const r2 = await phpSer(srv, [
    ['leaveGroup', c, 'g1'],
    ['getClientIdListByGroup', 'g1'],
    ['leaveGroup', c, 'g1'], // not a member: nothing
    ['ungroup', 'g1'],
    ['getClientIdCountByGroup', 'g1'],
    ['getAllGroupIdList'],
    ['joinGroup', c, 'g1'],
    ['getClientIdListByGroup', 'g1'],
    ['getAllGroupIdList'], // g1 was emptied, so it is created again: after 7 and g2
  ]);
  assert.deepEqual(r2, [
    'N;',
    ser(new Map([[a, a], [b, b]])),
    'N;',
    'N;',
    'i:0;',
    ser(new Map([[7, 7], ['g2', 'g2']])),
    'N;',
    ser(new Map([[c, c]])),
    ser(new Map([[7, 7], ['g2', 'g2'], ['g1', 'g1']])),
  ]);
});

test('sessions: never set, setSession, updateSession merges recursively, getAllClientSessions, by group, gone', async (t) => {
  const { srv, clients, ids } = await setup(t, 3);
  const [a, b, c] = ids;
  const sa = new Map([['name', 'x'], ['n', 1], ['deep', new Map([['k', 'v'], ['list', [1, 2]]])]]);
  const r = await phpSer(srv, [
    ['getSession', a],
    ['setSession', a, { name: 'x', n: 1, deep: { k: 'v', list: [1, 2] } }],
    ['getSession', a],
    ['updateSession', a, { n: 2, deep: { k2: 'v2', list: [9] }, more: null }],
    ['getSession', a],
    ['updateSession', b, { only: 'b', 5: 'five' }], // empty: stored as given
    ['getSession', b],
    ['getAllClientSessions'],
    ['joinGroup', a, 'sg'],
    ['joinGroup', c, 'sg'],
    ['getClientSessionsByGroup', 'sg'],
    ['getClientSessionsByGroup', 'nope'],
  ]);
  const merged = new Map([['name', 'x'], ['n', 2], ['deep', new Map([['k', 'v'], ['list', [9, 2]], ['k2', 'v2']])], ['more', null]]);
  // JSON.stringify puts the integer-like key first, so PHP receives 5 first
  const sb = new Map([[5, 'five'], ['only', 'b']]);
  assert.deepEqual(r, [
    'a:0:{}', // never set
    'N;',
    ser(sa),
    'N;',
    ser(merged), // array_replace_recursive: lists merge by index
    'N;',
    ser(sb),
    ser(new Map([[a, merged], [b, sb], [c, []]])), // connect order; never set: []
    'N;',
    'N;',
    ser(new Map([[a, merged], [c, []]])),
    'a:0:{}',
  ]);
  // GET_SESSION answers the stored string as is
  assert.equal(await rawQuery(srv, { cmd: 203, connection_id: connId(b) }), ser(sb));
  assert.equal(await rawQuery(srv, { cmd: 203, connection_id: connId(c) }), 'a:0:{}');
  // GET_ALL_CLIENT_SESSIONS: connection_id => stored session string; a session never set is
  // the empty string s:0:""; on the wire (observed on GatewayWorker 4.0.0), which GatewayClient
  // turns into [] (the facts' "[] inside")
  assert.equal(
    await rawQuery(srv, { cmd: 10 }),
    `a:3:{i:${connId(a)};${ser(ser(merged))}i:${connId(b)};${ser(ser(sb))}i:${connId(c)};s:0:"";}`,
  );
  assert.equal(await rawQuery(srv, { cmd: 23, ext_data: 'sg' }), `a:2:{i:${connId(a)};${ser(ser(merged))}i:${connId(c)};s:0:"";}`);
  assert.equal(await rawQuery(srv, { cmd: 23, ext_data: 'nope' }), 'a:0:{}');

  // setSession replaces
  assert.deepEqual(await phpSer(srv, [['setSession', a, { z: 1 }], ['getSession', a]]), ['N;', ser({ z: 1 })]);

  // a connection that is gone: N; and offline
  clients[2].terminate();
  await sleep(200);
  const r3 = await phpSer(srv, [['getSession', c], ['isOnline', c], ['isOnline', a], ['getAllClientIdCount']]);
  assert.deepEqual(r3, ['N;', 'i:0;', 'i:1;', 'i:2;']);
  assert.equal(await rawQuery(srv, { cmd: 203, connection_id: connId(c) }), 'N;');
  const [gone] = await phpRaw([{ address: srv.inner, send: [{ frame: { cmd: 203, connection_id: connId(c) } }] }]);
  assert.equal(gone.hex, '000000024e3b');
  const [online] = await phpRaw([{ address: srv.inner, send: [{ frame: { cmd: 11, connection_id: connId(a) } }] }]);
  assert.equal(online.hex, replyHex('i:1;'));
  const [offline] = await phpRaw([{ address: srv.inner, send: [{ frame: { cmd: 11, connection_id: connId(c) } }] }]);
  assert.equal(offline.hex, replyHex('i:0;'));
});

test('SELECT: fields and where; no match is a:0:{}', async (t) => {
  const { srv, ids } = await setup(t, 3);
  const [a, b, c] = ids;
  await phpSer(srv, [['bindUid', a, '42'], ['bindUid', c, 'zed'], ['joinGroup', c, 'sel']]);
  const sel = (where, fields = ['uid']) => rawQuery(srv, { cmd: 25, ext_data: JSON.stringify({ fields, where }) });
  // facts: array connection_id => {field => value or null}; a uid is a string, none is null
  assert.equal(await sel({ connection_id: [connId(a)] }), `a:1:{i:${connId(a)};a:1:{s:3:"uid";s:2:"42";}}`);
  assert.equal(await sel({ connection_id: [connId(b)] }), `a:1:{i:${connId(b)};a:1:{s:3:"uid";N;}}`);
  assert.equal(await sel({ uid: ['zed'] }), `a:1:{i:${connId(c)};a:1:{s:3:"uid";s:3:"zed";}}`);
  assert.equal(await sel({ groups: ['sel'] }), `a:1:{i:${connId(c)};a:1:{s:3:"uid";s:3:"zed";}}`);
  assert.equal(await sel({ groups: ['nope'] }), 'a:0:{}');
  assert.equal(await sel({ uid: ['nobody'] }), 'a:0:{}');
  // an empty where: every connection, in connect order
  assert.equal(
    await sel({}),
    `a:3:{i:${connId(a)};a:1:{s:3:"uid";s:2:"42";}i:${connId(b)};a:1:{s:3:"uid";N;}i:${connId(c)};a:1:{s:3:"uid";s:3:"zed";}}`,
  );
  const r = await phpSer(srv, [['getUidByClientId', a], ['getUidByClientId', b], ['getAllUidList']]);
  assert.deepEqual(r, ['s:2:"42";', 'N;', ser(new Map([[42, '42'], ['zed', 'zed']]))]);
});

test('several frames on one connection, PING, and unknown ids', async (t) => {
  const { srv, clients, ids } = await setup(t, 1);
  const id = connId(ids[0]);
  const ghost = (id ^ 0x00ff00ff) >>> 0 || 7;
  // a bind, a ping and a query on one connection: the query sees the bind
  const [r] = await phpRaw([
    {
      address: srv.inner,
      send: [
        { frame: { cmd: 12, connection_id: id, ext_data: 'one' } },
        { frame: { cmd: 201 } },
        { frame: { cmd: 5, connection_id: id, body: 'same-conn' } },
        { frame: { cmd: 15, ext_data: 'one' } },
      ],
    },
  ]);
  assert.equal(r.hex, replyHex(ser([id])));
  assert.equal(await clients[0].nextText(), 'same-conn');
  assert.equal(await rawQuery(srv, { cmd: 11, connection_id: ghost }), 'i:0;');
  assert.equal(await rawQuery(srv, { cmd: 203, connection_id: ghost }), 'N;');
  // commands on an unknown connection id do nothing (and the connection is not closed for it)
  const [r2] = await phpRaw([
    {
      address: srv.inner,
      send: [
        { frame: { cmd: 5, connection_id: ghost, body: 'x' } },
        { frame: { cmd: 12, connection_id: ghost, ext_data: 'ghost' } },
        { frame: { cmd: 20, connection_id: ghost, ext_data: 'ghostg' } },
        { frame: { cmd: 204, connection_id: ghost, ext_data: 'a:0:{}' } },
        { frame: { cmd: 7, connection_id: ghost, body: 'x' } },
        { frame: { cmd: 8, connection_id: ghost } },
        { frame: { cmd: 24, ext_data: '' } },
      ],
    },
  ]);
  assert.equal(r2.hex, replyHex('i:1;'));
  assert.deepEqual(await phpSer(srv, [['getClientIdByUid', 'ghost'], ['getAllGroupIdList']]), ['a:0:{}', 'a:0:{}']);
  assert.deepEqual(await drainTexts(clients[0], 150), []);
});

test('closeClient sends the message then closes without a close frame; destroyClient just closes', async (t) => {
  const srv = await startGw();
  t.after(() => srv.stop());
  const k = await RawWs.connectClient(srv.port);
  const d = await RawWs.connectClient(srv.port);
  const e = await RawWs.connectClient(srv.port);
  await phpSer(srv, [['closeClient', k.clientId, 'bye now']]);
  const m = await k.readMessage();
  assert.equal(m.text, 'bye now', 'the last message, as a text frame');
  const kc = await k.readClose();
  assert.equal(kc.noCloseFrame, true, `TCP closed with no close frame (got ${JSON.stringify(kc)})`);
  assert.deepEqual(kc.skipped, []);

  await phpSer(srv, [['destroyClient', d.clientId]]);
  const dc = await d.readClose();
  assert.equal(dc.noCloseFrame, true, `destroy: TCP closed with no close frame (got ${JSON.stringify(dc)})`);
  assert.deepEqual(dc.skipped, [], 'destroy sends nothing');

  // KICK with no message: closed, nothing sent (as GatewayWorker closes with an empty last message)
  await phpSer(srv, [['closeClient', e.clientId]]);
  const ec = await e.readClose();
  assert.equal(ec.noCloseFrame, true, `kick without a message: ${JSON.stringify(ec)}`);
  assert.deepEqual(ec.skipped, []);

  // KICK with an empty string (not null): an empty text frame, then the close (GatewayWorker
  // 4.0.0 sends 81 00 before its FIN)
  const f = await RawWs.connectClient(srv.port);
  await phpRaw([{ address: srv.inner, send: [{ frame: { cmd: 7, connection_id: connId(f.clientId), body: '' } }] }]);
  const fm = await f.readMessage();
  assert.equal(fm.text, '', 'an empty text frame');
  const fc = await f.readClose();
  assert.equal(fc.noCloseFrame, true, `kick with '': ${JSON.stringify(fc)}`);
  await sleep(100);
  assert.deepEqual(await phpSer(srv, [['getAllClientIdCount'], ['isOnline', k.clientId]]), ['i:0;', 'i:0;']);
});

test('the native /gateway/* API and the init greeting work on the same connections, with the 20-hex ids', async (t) => {
  const { srv, clients, ids } = await setup(t, 2);
  const [a, b] = ids;
  for (const c of clients) assert.match(c.bindNonce ?? '', /\S/, 'init still carries bind_nonce');
  assert.equal(await call(srv, 'send_to_client', { client_id: a, data: 'native' }), 1);
  assert.equal(await clients[0].nextText(), 'native');
  const bad = await api(srv, 'send_to_client', { client_id: a, data: 'x' }, { secret: 'wrong' });
  assert.equal(bad.status, 401);

  await phpSer(srv, [['bindUid', a, '42'], ['joinGroup', b, 'ng']]);
  assert.deepEqual(await call(srv, 'get_client_id_by_uid', { uid: '42' }), [a]);
  assert.equal(await call(srv, 'get_client_id_count_by_group', { group: 'ng' }), 1);
  assert.equal(await call(srv, 'is_online', { client_id: b }), true);
  assert.equal(await call(srv, 'get_all_client_id_count', {}), 2);

  assert.equal(await call(srv, 'bind_uid', { client_id: b, uid: 'nat' }), true);
  assert.equal(await call(srv, 'join_group', { client_id: a, group: 'ng' }), true);
  const r = await phpSer(srv, [['getClientIdByUid', 'nat'], ['getUidByClientId', b], ['getClientIdListByGroup', 'ng']]);
  assert.deepEqual(r, [ser([b]), 's:3:"nat";', ser(new Map([[b, b], [a, a]]))]);
  assert.equal(await call(srv, 'send_to_group', { group: 'ng', data: 'both' }), 2);
  await expectTexts(clients, [['both'], ['both']], 'native send_to_group');
  assert.equal((await healthz(srv)) !== undefined, true);
  // a client_id of another inner address is not one of this node's connections
  assert.equal(await call(srv, 'is_online', { client_id: clientIdOf(`${HOST}:1`, connId(a)) }), false);
});
