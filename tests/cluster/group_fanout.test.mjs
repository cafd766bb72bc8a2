// A group message to many members held by another node is ONE bus publish
// (cluster_push_uids), not one per member: the sending node's "published"
// count grows by about one per message, while every member device on the
// other node gets every message exactly once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, healthz, must, register, uname, waitUntil } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';

const MEMBERS = 12; // besides the sender, all on node2
const MESSAGES = 5;

// Small request limits, so the bus's message bound (max(--max-body,
// --max-message) + 4096 = 20 KB) is within reach of one chat message.
const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'max-body': 16384, 'max-message': 16384, 'max-text': 8000 } });
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

test('a group message to members on another node is one bus publish, delivered once to each', async () => {
  const [n1, n2] = c.nodes;
  const sender = await register(n1, uname('gs'));
  const members = [];
  for (let i = 0; i < MEMBERS; i++) members.push(await register(n1, uname('gm')));
  const devs = [];
  for (const m of members) {
    const s = await Sock.bound(n2, m, `${m.username}@node2`);
    socks.push(s);
    devs.push(s);
  }
  const out = await Sock.bound(n1, sender, 'sender@node1');
  socks.push(out);
  const made = await must(n1, 'POST', '/group/create', {
    token: sender.token,
    body: { name: 'fan-out', members: members.map((m) => m.id) },
  });
  const gid = made.group.group_id;
  // the create push reached every member on node2
  await waitUntil(() => devs.every((s) => s.pushed().some((m) => m.group_id === gid)), { what: 'the create message on node2' });
  await settle(300);

  const before = (await healthz(n1)).cluster.published;
  const ids = [];
  for (let i = 0; i < MESSAGES; i++) {
    const m = await must(n1, 'POST', '/chat/send', {
      token: sender.token,
      body: { group_id: gid, type: 'text', data: `fan ${i}`, client_msg_id: `fan-${i}` },
    });
    ids.push(m.id);
  }
  await waitUntil(() => devs.every((s) => ids.every((id) => s.pushed().some((m) => m.id === id))), {
    timeoutMs: 10000,
    what: 'every group message on every member device',
  });
  const published = (await healthz(n1)).cluster.published - before;
  // One publish per message; a heartbeat or two may fall in the window. Per
  // member it would be MEMBERS * MESSAGES = 60.
  assert.ok(published >= MESSAGES && published <= MESSAGES + 4, `node1 published ${published} bus messages for ${MESSAGES} group messages to ${MEMBERS} remote members`);
  await settle(300);
  for (const s of devs) {
    const got = s.pushed().filter((m) => ids.includes(m.id)).map((m) => m.id);
    assert.deepEqual(got, ids, `${s.name}: each message once, in order`);
  }
  // the sender's own socket was not the origin (HTTP send): it gets each once too
  await waitUntil(() => ids.every((id) => out.pushed().some((m) => m.id === id)), { what: 'the sender device' });
});

test('a group message too big for one push.uids publish still reaches every remote member', async () => {
  // The bus drops messages over its bound (20 KB here). A text of quotes is
  // escaped twice in push.uids (about 4x its size): one publish for all
  // members would be ~32 KB.
  const [n1, n2] = c.nodes;
  const sender = await register(n1, uname('bs'));
  const members = [];
  for (let i = 0; i < 6; i++) members.push(await register(n1, uname('bm')));
  const devs = [];
  for (const m of members) {
    const s = await Sock.bound(n2, m, `${m.username}@node2`);
    socks.push(s);
    devs.push(s);
  }
  const gid = (await must(n1, 'POST', '/group/create', { token: sender.token, body: { name: 'big', members: members.map((m) => m.id) } })).group.group_id;
  await waitUntil(() => devs.every((s) => s.pushed().some((m) => m.group_id === gid)), { what: 'the create message on node2' });
  const data = '"'.repeat(7900);
  const m = await must(n1, 'POST', '/chat/send', { token: sender.token, body: { group_id: gid, type: 'text', data } });
  await waitUntil(() => devs.every((s) => s.pushed().some((p) => p.id === m.id && p.data === data)), {
    timeoutMs: 5000,
    what: 'the big message on every member device of node2',
  });
  assert.equal((await healthz(n1)).cluster.dropped, 0, 'nothing dropped by the sender');
  assert.equal((await healthz(n2)).cluster.bad_messages, 0, 'nothing refused as oversized by the receiver');
});
