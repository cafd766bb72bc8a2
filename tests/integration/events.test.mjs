// Client messages on /ws: `event` routing between bound uids (every device of
// the target, numeric uids as numbers), not_bound, offline targets, bad input
// answered with `error` while the connection stays open, and --event-rate.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { call } from './lib/http.mjs';
import { WsClient, openClients } from './lib/ws.mjs';

const SECRET = 'events-secret';
const [srv, unlimited] = await Promise.all([
  startServer({ options: { 'api-secret': SECRET, 'event-rate': 5 } }),
  startServer({ options: { 'api-secret': SECRET, 'event-rate': 0 } }),
]);
srv.secret = SECRET;
unlimited.secret = SECRET;
after(() => Promise.all([srv.stop(), unlimited.stop()]));

let uidSeq = 0;
/** Opens clients bound to the given uids (null = unbound); uids get a per-test suffix unless numeric. */
async function clientsFor(t, s, uids) {
  const cs = await openClients(s, uids.length);
  t.after(() => cs.forEach((c) => c.terminate()));
  for (const [i, uid] of uids.entries()) {
    if (uid !== null) await call(s, 'bind_uid', { client_id: cs[i].clientId, uid });
  }
  return cs;
}
const uniq = (name) => `${name}-${++uidSeq}`;

/** Asserts nothing was queued for c: a {"type":"ping"} is answered by the very next message. */
async function assertQuiet(c) {
  c.sendJson({ type: 'ping' });
  assert.deepEqual(await c.nextJson(), { type: 'pong' }, 'nothing else arrived before the pong');
}

describe('event routing', () => {
  test('an event reaches every device of to_id, with from_id, and no one else', async (t) => {
    const alice = uniq('alice');
    const bob = uniq('bob');
    const [a, b1, b2, c] = await clientsFor(t, srv, [alice, bob, bob, uniq('carol')]);
    a.sendJson({ type: 'event', to_id: bob, data: { x: 1, s: 'hé' } });
    const want = { type: 'event', from_id: alice, data: { x: 1, s: 'hé' } };
    assert.deepEqual(await b1.nextJson(), want);
    assert.deepEqual(await b2.nextJson(), want);
    await assertQuiet(a);
    await assertQuiet(c);
  });

  test('data of any JSON type arrives unchanged', async (t) => {
    const alice = uniq('alice');
    const bob = uniq('bob');
    const [a, b] = await clientsFor(t, srv, [alice, bob]);
    for (const data of ['a string', 12.5, [1, [2, { three: 3 }]], { deep: { deeper: [null, true] } }, null, false]) {
      a.sendJson({ type: 'event', to_id: bob, data });
      assert.deepEqual(await b.nextJson(), { type: 'event', from_id: alice, data });
    }
  });

  test('a decimal-integer uid is written as a JSON number; to_id may be a number', async (t) => {
    const [a, b] = await clientsFor(t, srv, ['7001', 7002]);
    a.sendJson({ type: 'event', to_id: 7002, data: 'num' });
    const m1 = await b.nextJson();
    assert.deepEqual(m1, { type: 'event', from_id: 7001, data: 'num' });
    assert.equal(typeof m1.from_id, 'number');
    a.sendJson({ type: 'event', to_id: '7002', data: 'str' });
    assert.deepEqual(await b.nextJson(), { type: 'event', from_id: 7001, data: 'str' });
    b.sendJson({ type: 'event', to_id: 7001, data: 'back' });
    assert.deepEqual(await a.nextJson(), { type: 'event', from_id: 7002, data: 'back' });
  });

  test('a non-numeric uid stays a string', async (t) => {
    const [a, b] = await clientsFor(t, srv, ['u-12', 'u-13']);
    a.sendJson({ type: 'event', to_id: 'u-13', data: 1 });
    const m = await b.nextJson();
    assert.equal(m.from_id, 'u-12');
  });

  test('rebinding changes from_id and who receives', async (t) => {
    const x = uniq('x');
    const y = uniq('y');
    const z = uniq('z');
    const [a, b, c] = await clientsFor(t, srv, [x, y, z]);
    await call(srv, 'bind_uid', { client_id: b.clientId, uid: z }); // b joins z's uid
    a.sendJson({ type: 'event', to_id: z, data: 'to z' });
    assert.deepEqual(await b.nextJson(), { type: 'event', from_id: x, data: 'to z' });
    assert.deepEqual(await c.nextJson(), { type: 'event', from_id: x, data: 'to z' });
    a.sendJson({ type: 'event', to_id: y, data: 'to y' });
    await assertQuiet(b);
    await call(srv, 'bind_uid', { client_id: a.clientId, uid: y });
    c.sendJson({ type: 'event', to_id: y, data: 'to new y' });
    assert.deepEqual(await a.nextJson(), { type: 'event', from_id: z, data: 'to new y' });
  });

  test('an unbound sender gets not_bound and stays connected', async (t) => {
    const bob = uniq('bob');
    const [u, b] = await clientsFor(t, srv, [null, bob]);
    u.sendJson({ type: 'event', to_id: bob, data: 'x' });
    const e = await u.nextJson();
    assert.equal(e.type, 'error');
    assert.equal(e.code, 'not_bound');
    assert.equal(typeof e.msg, 'string');
    await assertQuiet(b);
    await assertQuiet(u);
    assert.equal(u.closeInfo, null);
  });

  test('an event to an offline uid is dropped silently and never delivered later', async (t) => {
    const ghost = uniq('ghost');
    const [a] = await clientsFor(t, srv, [uniq('alice')]);
    a.sendJson({ type: 'event', to_id: ghost, data: 'lost' });
    await assertQuiet(a);
    const [g] = await clientsFor(t, srv, [ghost]);
    await assertQuiet(g);
  });
});

describe('bad client messages get an error and the connection stays open', () => {
  const cases = [
    ['not JSON', 'this is not json', ['bad_json']],
    ['truncated JSON', '{"type":"event"', ['bad_json']],
    ['a JSON array', '[1,2,3]', ['bad_json', 'bad_field']],
    ['a JSON string', '"ping"', ['bad_json', 'bad_field']],
    ['no type', '{"to_id":"x"}', ['bad_field', 'missing_field', 'unknown_type']],
    ['a non-string type', '{"type":5}', ['bad_field', 'unknown_type']],
    ['an unknown type', '{"type":"teleport"}', ['unknown_type']],
    ['an event without to_id', '{"type":"event","data":1}', ['bad_field', 'missing_field']],
    ['an event with a boolean to_id', '{"type":"event","to_id":true,"data":1}', ['bad_field']],
    ['an event with an empty to_id', '{"type":"event","to_id":"","data":1}', ['bad_field']],
  ];
  for (const [name, text, codes] of cases) {
    test(name, async (t) => {
      const [a] = await clientsFor(t, srv, [uniq('bad')]);
      a.send(text);
      const e = await a.nextJson();
      assert.equal(e.type, 'error', JSON.stringify(e));
      assert.ok(codes.includes(e.code), `code ${e.code} in ${codes}`);
      assert.equal(typeof e.msg, 'string');
      await assertQuiet(a);
    });
  }
});

describe('--event-rate', () => {
  test('excess events are dropped with rate_limited (rate 5/s, burst 10)', async (t) => {
    const alice = uniq('alice');
    const bob = uniq('bob');
    const [a, b, a2] = await clientsFor(t, srv, [alice, bob, alice]);
    const N = 30;
    for (let i = 0; i < N; i++) a.sendJson({ type: 'event', to_id: bob, data: i });
    await sleep(600);
    const got = (await b.drain(0)).map((m) => JSON.parse(m.text));
    const errs = (await a.drain(0)).map((m) => JSON.parse(m.text));
    for (const e of errs) {
      assert.equal(e.type, 'error');
      assert.equal(e.code, 'rate_limited');
    }
    assert.ok(got.length >= 10, `at least the burst of 10 delivered, got ${got.length}`);
    assert.ok(got.length <= 14, `no more than the burst plus refill delivered, got ${got.length}`);
    assert.equal(got.length + errs.length, N, `each dropped event answered with rate_limited: ${got.length} delivered + ${errs.length} errors`);
    const seq = got.map((m) => m.data);
    assert.deepEqual(seq, [...seq].sort((x, y) => x - y), 'delivered in order');
    assert.deepEqual(seq.slice(0, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'the burst is the first ten');

    // Another connection of the same uid has its own budget.
    for (let i = 0; i < 5; i++) a2.sendJson({ type: 'event', to_id: bob, data: `a2-${i}` });
    for (let i = 0; i < 5; i++) assert.deepEqual(await b.nextJson(), { type: 'event', from_id: alice, data: `a2-${i}` });
    await assertQuiet(a2);

    // The budget refills.
    await sleep(1100);
    for (let i = 0; i < 4; i++) a.sendJson({ type: 'event', to_id: bob, data: `later-${i}` });
    for (let i = 0; i < 4; i++) assert.deepEqual(await b.nextJson(), { type: 'event', from_id: alice, data: `later-${i}` });
    await assertQuiet(a);
    assert.equal(a.closeInfo, null, 'rate limiting does not close the connection');
  });

  test('pings are not rate limited', async (t) => {
    const [a] = await clientsFor(t, srv, [uniq('pinger')]);
    for (let i = 0; i < 40; i++) a.sendJson({ type: 'ping' });
    for (let i = 0; i < 40; i++) assert.deepEqual(await a.nextJson(), { type: 'pong' });
  });

  test('--event-rate 0 is unlimited', async (t) => {
    const [a, b] = await clientsFor(t, unlimited, ['fast-a', 'fast-b']);
    const N = 300;
    for (let i = 0; i < N; i++) a.sendJson({ type: 'event', to_id: 'fast-b', data: i });
    for (let i = 0; i < N; i++) assert.deepEqual(await b.nextJson(), { type: 'event', from_id: 'fast-a', data: i });
    await assertQuiet(a);
  });
});

test('an event reaches a client bound after it connected', async (t) => {
  const c = await WsClient.open(srv);
  t.after(() => c.terminate());
  await call(srv, 'bind_uid', { client_id: c.clientId, uid: 'late' });
  const [a] = await clientsFor(t, srv, ['early']);
  a.sendJson({ type: 'event', to_id: 'late', data: 'hello' });
  assert.deepEqual(await c.nextJson(), { type: 'event', from_id: 'early', data: 'hello' });
});
