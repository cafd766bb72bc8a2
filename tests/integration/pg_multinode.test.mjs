// Two chatd nodes on one PostgreSQL database (issue 8). Each sender sends on
// four channels at once (a socket and HTTP on each node), so two nodes'
// group-commit transactions write the same conversations concurrently, while
// the recipient syncs with per-conversation cursors, alternating nodes. Then:
// every acknowledged message is synced exactly once, with the seq and content
// of its ack; seq runs 1..n with no hole in each conversation, in id order
// and in commit order (a message sent after another's ack came back has the
// larger seq); and nothing unacknowledged appears. Second: the same
// client_msg_id sent to both nodes at the same instant is stored once and
// both nodes answer with that one message.
//
// Needs CHATD_TEST_STORE=<postgres URI>; skipped on SQLite (one process owns the file).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ON_PG, pgOnly, startServer } from './lib/server.mjs';
import { registerAll, uname } from './lib/chat.mjs';
import { Channel, assertGapless, syncToEnd } from './lib/multinode.mjs';

const PER_CHANNEL = 40;
const WINDOW = 4; // sends in flight per socket
const PAGE = 50;

let nodeA = null;
let nodeB = null;
if (ON_PG) {
  nodeA = await startServer({ options: { 'login-rate': 1000, 'page-limit': 200 } });
  // The second node on the first one's database (the harness drops it when nodeA stops).
  nodeB = await startServer({ options: { store: nodeA.store, 'login-rate': 1000, 'page-limit': 200 } });
}
after(async () => {
  if (nodeB) await nodeB.stop();
  if (nodeA) await nodeA.stop();
});

/** Sends `count` messages on ch to `to`, `window` at a time; records every outcome. */
async function pump(ch, from, to, count, window, out, tag) {
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      const message = { to_id: to.id, type: 'text', data: `${tag} ${n} from ${from.username}`, client_msg_id: `${tag}-${n}` };
      const r = await ch.send(message);
      out.push({ key: `${from.id}/${message.client_msg_id}`, from, message, ...r, channel: ch.name });
    }
  };
  await Promise.all(Array.from({ length: ch.kind === 'ws' ? window : 1 }, worker));
}

test('two nodes, concurrent senders on both: cursor sync returns every acked message once, seq gapless in commit order', pgOnly(), async (t) => {
  const [rcpt, s1, s2] = await registerAll(nodeB, [uname('mr'), uname('ms'), uname('mt')]);
  const senders = [s1, s2];
  const outcomes = [];
  const pumps = [];
  for (const s of senders) {
    // Tokens issued by node B work on node A: users and tokens live in the database.
    const chans = await Promise.all([Channel.open('ws', nodeA, s, t), Channel.open('ws', nodeB, s, t), Channel.open('http', nodeA, s, t), Channel.open('http', nodeB, s, t)]);
    chans.forEach((ch, i) => pumps.push(pump(ch, s, rcpt, PER_CHANNEL, WINDOW, outcomes, `c${i}`)));
  }
  // The recipient syncs with its cursors while the load runs, alternating nodes.
  const state = {};
  let loading = true;
  const all = Promise.all(pumps).finally(() => (loading = false));
  let midSyncs = 0;
  while (loading) {
    await syncToEnd([nodeA, nodeB], rcpt, state, { limit: PAGE });
    midSyncs++;
  }
  await all;
  await syncToEnd([nodeA, nodeB], rcpt, state, { limit: PAGE });

  const failed = outcomes.filter((o) => !o.ok);
  assert.deepEqual(failed.map((o) => `${o.channel} ${o.key}: ${o.status ?? ''} ${o.code} ${o.text ?? ''}`), [], 'every send was acknowledged');
  assert.equal(outcomes.length, senders.length * 4 * PER_CHANNEL);
  t.diagnostic(`${outcomes.length} acked sends on 2 nodes, ${midSyncs} sync rounds during the load (${state.rounds} requests)`);

  for (const s of senders) {
    const got = state.got.get(String(s.id)) ?? [];
    const what = `conversation ${s.username} -> ${rcpt.username}`;
    // syncToEnd checked each page continues its cursor; the whole is 1..n in id order.
    assertGapless(got, what);
    const acked = outcomes.filter((o) => o.from === s);
    assert.equal(got.length, acked.length, `${what}: synced ${got.length} messages, ${acked.length} acknowledged`);
    const byKey = new Map(got.map((m) => [`${m.from_id}/${m.client_msg_id}`, m]));
    assert.equal(byKey.size, got.length, `${what}: no client_msg_id twice`);
    for (const o of acked) assert.deepEqual(byKey.get(o.key), o.message, `${what}: ${o.key} synced as acknowledged (${o.channel})`);
    // Commit order: an ack means committed; whatever was sent after it committed later.
    const order = acked.map((o) => ({ seq: o.message.seq, sentAt: o.sentAt, answeredAt: o.answeredAt })).sort((a, b) => a.answeredAt - b.answeredAt);
    let checked = 0;
    for (const a of order) {
      for (const b of order) {
        if (a.answeredAt < b.sentAt) {
          checked++;
          assert.ok(a.seq < b.seq, `${what}: seq ${b.seq} was sent after seq ${a.seq} was acknowledged, yet ordered before it`);
        }
      }
    }
    assert.ok(checked > acked.length, `${what}: the commit-order check compared ${checked} pairs`);
  }
});

test('the same client_msg_id sent to both nodes at once is stored once, both answer with it', pgOnly(), async (t) => {
  const [rcpt, s] = await registerAll(nodeA, [uname('dr'), uname('ds')]);
  const chans = await Promise.all([Channel.open('ws', nodeA, s, t), Channel.open('ws', nodeB, s, t), Channel.open('http', nodeA, s, t), Channel.open('http', nodeB, s, t)]);
  const N = 24;
  for (let i = 0; i < N; i++) {
    const message = { to_id: rcpt.id, type: 'text', data: `dup ${i}`, client_msg_id: `dup-${i}` };
    // Two channels, one per node, fired together: socket+socket, http+http, socket+http.
    const pair = [
      [chans[0], chans[1]],
      [chans[2], chans[3]],
      [chans[0], chans[3]],
      [chans[2], chans[1]],
    ][i % 4];
    const [a, b] = await Promise.all(pair.map((ch) => ch.send(message)));
    assert.ok(a.ok && b.ok, `dup-${i}: both nodes acknowledged (${JSON.stringify(a).slice(0, 200)} / ${JSON.stringify(b).slice(0, 200)})`);
    assert.deepEqual(a.message, b.message, `dup-${i}: both nodes answer with the one stored message (${pair[0].name}, ${pair[1].name})`);
    assert.equal(a.message.seq, i + 1, `dup-${i}: stored as the ${i + 1}th message of the conversation`);
  }
  const state = {};
  await syncToEnd([nodeB, nodeA], rcpt, state, { limit: 10 });
  const got = state.got.get(String(s.id)) ?? [];
  assertGapless(got, 'duplicate sends');
  assert.deepEqual(
    got.map((m) => m.client_msg_id),
    Array.from({ length: N }, (_, i) => `dup-${i}`),
    'each client_msg_id stored exactly once, in order',
  );
});
