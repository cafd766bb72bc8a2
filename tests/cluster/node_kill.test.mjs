// One node SIGKILLed in the middle of a send load. alice sends 300 messages
// to bob through haproxy (4 in flight; a failed send is retried with its
// client_msg_id, as a client does) and more on her socket on the node that
// dies (4 in flight; those without an answer when it dies are sent again over
// HTTP with their client_msg_id); bob has a device on each node. When 100 are acknowledged node3 is killed. Its
// sockets reconnect through haproxy (landing on a live node), bind again and
// sync from the cursor their pushes gave them. Then every device of bob has
// every acknowledged message exactly once (pushes merged with the cursor sync
// by id, seq 1..N without a hole), a message acknowledged by a live node and
// never retried was pushed to the live devices exactly once, and /chat/list's
// unread count is N.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, must, register, uname, waitUntil, sleep } from './lib/cluster.mjs';
import { Sock, settle } from './lib/sock.mjs';
import { sendLoad, socketLoad, retryOverHttp, checkDevice } from './lib/load.mjs';

const COUNT = 300; // over HTTP through haproxy
const WS_COUNT = 200; // at most, over alice's socket on node3 (until it dies)
const KILL_AT = 100;

const c = await startCluster(after, { n: 3 });
const [n1, n2, n3] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

/** Opens and binds through haproxy, retrying while haproxy still tries the dead node. */
async function reconnect(user, name) {
  let last;
  for (let i = 0; i < 40; i++) {
    try {
      const s = await Sock.bound(c.lb, user, name);
      socks.push(s);
      return s;
    } catch (e) {
      last = e;
      await sleep(100);
    }
  }
  throw new Error(`${name}: could not reconnect through haproxy: ${last?.message}`);
}

test('SIGKILL of a node under load: its clients reconnect through haproxy, sync, and have every acknowledged message once', async () => {
  const alice = await register(c.lb, uname('ka'));
  const bob = await register(c.lb, uname('kb'));
  const b1 = await Sock.bound(n1, bob, 'b1@node1');
  const b2 = await Sock.bound(n2, bob, 'b2@node2');
  const b3 = await Sock.bound(n3, bob, 'b3@node3');
  const a3 = await Sock.bound(n3, alice, 'a3@node3');
  socks.push(b1, b2, b3, a3);

  let killed = null;
  const t0 = Date.now();
  // alice also sends on her socket on node3: sends in flight when it dies get no answer
  const wsDone = socketLoad(a3, bob, { count: WS_COUNT, window: 4, tag: 'ws', node: 'node3' });
  const httpResults = await sendLoad({
    from: alice,
    to: bob,
    count: COUNT,
    concurrency: 4,
    tag: 'kill',
    pick: () => c.lb,
    onAck: async (n) => {
      if (n === KILL_AT && !killed) {
        killed = n3.kill();
        await killed;
      }
    },
  });
  assert.ok(killed, 'node3 was killed during the load');
  const wsResults = await wsDone;
  const lost = wsResults.filter((r) => !r.ok).length;
  // as a client does: what got no answer is sent again (over HTTP, through haproxy) with its client_msg_id
  await retryOverHttp(wsResults, alice, bob, () => c.lb);
  const results = [...httpResults, ...wsResults];
  const failed = results.filter((r) => !r.ok);
  assert.deepEqual(failed.map((r) => `${r.cmid}: ${r.errors.slice(-2).join('; ')}`), [], 'every send was acknowledged after retries (two nodes are alive)');
  const acked = results.filter((r) => r.ok);
  assert.ok(acked.some((r) => r.node === 'node3'), 'some sends were acknowledged by node3 before it died');
  assert.ok(httpResults.some((r) => r.ok && r.node !== 'node3' && r.i > KILL_AT + 8), 'later sends were served by the live nodes');
  assert.ok(wsResults.some((r) => r.via === 'ws' && r.attempts === 1 && r.ok), 'the socket on node3 had sends acknowledged before it died');
  assert.equal(new Set(acked.map((r) => r.message.id)).size, acked.length, 'every client_msg_id was stored as its own message');

  // node3's sockets were cut; they reconnect through haproxy to a live node
  await waitUntil(() => b3.closeInfo && a3.closeInfo, { timeoutMs: 5000, what: 'the sockets of node3 closed' });
  const b3b = await reconnect(bob, 'b3-again');
  const a3b = await reconnect(alice, 'a3-again');
  for (const s of [b3b, a3b]) assert.notEqual(c.nodeOf(s.clientId), n3, `${s.name} landed on a live node (${s.clientId})`);

  await settle(600);
  // /chat/list: unread = every message of the conversation (bob read nothing)
  const list = await must(c.lb, 'GET', '/chat/list', { token: bob.token });
  const conv = list.find((x) => x.userid === alice.id);
  const total = conv.last_seq;
  assert.ok(total >= acked.length, `last_seq ${total} covers the ${acked.length} acknowledged messages`);
  assert.equal(total, acked.length, 'nothing unacknowledged was stored (every send ended acknowledged; retries store once)');
  assert.equal(conv.noreadnum, total, 'unread count = messages in the conversation');

  // every device of bob: pushes + cursor sync = every acknowledged message once
  const checks = {};
  for (const s of [b1, b2, b3, b3b]) checks[s.name] = await checkDevice(s, c.lb, bob, alice, acked, { expectTotal: total });
  // alice's device that was on node3 catches up too
  await checkDevice(a3, c.lb, alice, bob, acked, { expectTotal: total });
  await checkDevice(a3b, c.lb, alice, bob, acked, { expectTotal: total });

  // live devices, messages acknowledged by a live node on the first attempt: pushed exactly once
  for (const s of [b1, b2]) {
    const bad = acked.filter((r) => r.attempts === 1 && r.node !== 'node3').filter((r) => s.count((f) => f.type === 'message' && f.message.id === r.message.id) !== 1);
    assert.deepEqual(bad.map((r) => `${r.cmid} by ${r.node}: ${s.count((f) => f.type === 'message' && f.message.id === r.message.id)} pushes`), [], `${s.name}: one push per message a live node acknowledged`);
    // nothing pushed more often than it was sent (a retry may push again)
    const over = acked.filter((r) => s.count((f) => f.type === 'message' && f.message.id === r.message.id) > r.attempts);
    assert.deepEqual(over.map((r) => r.cmid), [], `${s.name}: no message pushed more often than it was sent`);
  }
  console.log(`# node kill: ${acked.length} acknowledged in ${Date.now() - t0} ms (${wsResults.length} on node3's socket, ${lost} of them unanswered when it died), ${acked.filter((r) => r.attempts > 1).length} retried; synced after reconnect: ${checks['b3-again'].synced}, b3 (cut) cursor ${checks['b3@node3'].cursor}`);
});
