// Bad input from the bus: anyone who can PUBLISH on the Redis can put
// garbage on chatd's channels. Malformed messages (no header line, empty,
// binary junk, an unparsable header) and an oversized one (larger than
// --max-message and --max-body, + 4 KiB) are published on chatd:all, chatd:n:<tag>,
// chatd:u:<uid> and chatd:g:<group> over a raw RESP connection. The node logs
// and drops each one (/healthz cluster.bad_messages counts them), pushes
// nothing to its sockets, and keeps serving: /healthz, cross-node pushes both
// ways, the chat service.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, gw, healthz, must, register, uname, waitUntil } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const MAX_MESSAGE = 65536;
// the bus bound is the larger of --max-message and --max-body, plus 4 KiB
const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'max-message': MAX_MESSAGE, 'max-body': MAX_MESSAGE } });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

const GARBAGE = [
  Buffer.from('garbage without a header line'),
  Buffer.alloc(0),
  Buffer.from('\n'),
  Buffer.from('\n\n\n{"type":"message"}'),
  Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x00, 0x01, 0x02]),
  Buffer.concat([Buffer.alloc(5000, 0xff), Buffer.from('\n{}')]),
  Buffer.from(`${'x'.repeat(200)} ${'y'.repeat(200)}\n${JSON.stringify({ type: 'message' })}`),
  Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131 + 7) & 255)),
];
// well formed but for its size: a push from a made-up instance; delivered, it would reach s1
const OVERSIZED = Buffer.concat([Buffer.from('P 0123456789abcdef -\n'), Buffer.alloc(MAX_MESSAGE + 4096 + 100000, 0x61)]);

test('malformed and oversized bus messages are logged and dropped; the node keeps serving', async () => {
  const uid = `bb-${uname('u')}`;
  const grp = `bb-${uname('g')}`;
  const s1 = await Sock.open(n1, 's1@node1');
  const s2 = await Sock.open(n2, 's2@node2');
  socks.push(s1, s2);
  assert.equal(await gw(n2, 'bind_uid', { client_id: s1.clientId, uid }), true);
  assert.equal(await gw(n2, 'join_group', { client_id: s1.clientId, group: grp }), true);
  const before = await Promise.all([healthz(n1), healthz(n2)]);
  const errLen = n1.stderr().length;

  // node1 subscribes to all four channels (it holds uid and group); node2 to chatd:all only
  const channels = ['chatd:all', `chatd:n:${n1.tag}`, `chatd:u:${uid}`, `chatd:g:${grp}`];
  const receivers = {};
  let toN1 = 0;
  for (const ch of channels) {
    for (const msg of [...GARBAGE, OVERSIZED]) {
      const r = await c.redis.publish(ch, msg);
      assert.match(r, /^:\d+$/, `PUBLISH ${ch}: ${r}`);
      receivers[ch] = Number(r.slice(1));
      toN1++;
    }
  }
  assert.ok(receivers['chatd:all'] >= 2, `both nodes subscribe to chatd:all (${receivers['chatd:all']} subscribers)`);
  for (const ch of channels.slice(1)) assert.ok(receivers[ch] >= 1, `node1 subscribes to ${ch} (${receivers[ch]} subscribers)`);
  const toN2 = GARBAGE.length + 1;

  const after1 = await waitUntil(async () => {
    const h = await healthz(n1);
    return h.cluster.bad_messages - before[0].cluster.bad_messages >= toN1 ? h : null;
  }, { timeoutMs: 5000, what: `node1 counting ${toN1} bad messages` }).catch(async (e) => {
    const h = await healthz(n1);
    throw new Error(`${e.message}; bad_messages went ${before[0].cluster.bad_messages} -> ${h.cluster.bad_messages}\nnode1 stderr tail:\n${n1.stderr().slice(-2000)}`);
  });
  const after2 = await waitUntil(async () => {
    const h = await healthz(n2);
    return h.cluster.bad_messages - before[1].cluster.bad_messages >= toN2 ? h : null;
  }, { timeoutMs: 5000, what: `node2 counting ${toN2} bad messages` });
  await settle(300);
  const final1 = await healthz(n1);
  const final2 = await healthz(n2);
  assert.equal(final1.cluster.bad_messages - before[0].cluster.bad_messages, toN1, 'node1: each bad message counted once');
  assert.equal(final2.cluster.bad_messages - before[1].cluster.bad_messages, toN2, 'node2: each bad message on chatd:all counted once');
  assert.ok(after1.cluster.received >= before[0].cluster.received, 'received counter does not go back');
  assert.ok(after2 && final1.cluster.redis === 'up' && final2.cluster.redis === 'up', 'both nodes still connected to Redis');
  assert.ok(n1.stderr().length > errLen, 'node1 logged the bad messages');
  assert.equal(s1.frames.length, 1, `nothing reached node1's socket but its init: ${JSON.stringify(s1.frames.slice(1)).slice(0, 300)}`);
  assert.equal(s2.frames.length, 1, 'nothing reached node2\'s socket but its init');
  assert.equal(n1.exitInfo, null, 'node1 is alive');

  // still serving: cross-node pushes both ways, and the chat service
  assert.equal(await gw(n2, 'send_to_uid', { uid, data: 'still-1' }), 1);
  await s1.waitText('still-1', 1, 3000);
  assert.equal(await gw(n1, 'send_to_client', { client_id: s2.clientId, data: 'still-2' }), 1);
  await s2.waitText('still-2', 1, 3000);
  assert.equal(await gw(n2, 'send_to_group', { group: grp, data: 'still-3' }), 1);
  await s1.waitText('still-3', 1, 3000);
  const a = await register(n1, uname('bba'));
  const b = await register(n2, uname('bbb'));
  const bs = await Sock.bound(n2, b, 'b@node2');
  socks.push(bs);
  const m = await must(n1, 'POST', '/chat/send', { token: a.token, body: { to_id: b.id, type: 'text', data: 'after garbage' } });
  await bs.waitFrame((f) => f.type === 'message' && f.message.id === m.id, 3000);
});
