// Attack: read receipts pushed to a stranger (issue #13, item 11). Any user
// could POST /chat/read naming anyone, as often as they liked, and each call
// pushed a {"type":"receipt"} to every device of that user. Now a receipt (and
// the read push to the reader's devices) goes out only when the read read
// something within an existing conversation, so a stranger gets nothing.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { startServer } from '../integration/lib/server.mjs';
import { register, uname } from '../integration/lib/chat.mjs';
import { fmt, sleep, startVictim } from './lib/victim.mjs';

const READS = 2000;
const CONCURRENCY = 8;

const srv = await startServer();
after(() => srv.stop());

test(`${READS} reads naming a stranger push nothing to them; the victim's latency holds`, async () => {
  const victim = await startVictim(srv);
  await sleep(300);
  const calm = victim.snapshot();
  const attacker = await register(srv, uname('reader'));
  // Count what reaches the victim's socket besides its pongs.
  const seen = [];
  const origNext = victim.sock.next.bind(victim.sock);
  victim.sock.next = async (ms) => {
    for (;;) {
      const m = await origNext(ms);
      if (m.type === 'pong') return m;
      seen.push(m);
    }
  };
  const w = new Worker(new URL('./lib/http_flood.mjs', import.meta.url), {
    workerData: { url: srv.url, path: '/chat/read', token: attacker.token, body: { userid: victim.user.id }, count: READS, concurrency: CONCURRENCY },
  });
  const { statuses, ms: elapsed } = await new Promise((resolve, reject) => {
    w.once('message', resolve);
    w.once('error', reject);
  });
  assert.deepEqual(statuses, { 200: READS }, 'every read answered 200 {total}');
  await sleep(200); // anything still queued arrives before the last pongs
  const st = await victim.stop();
  console.log(fmt('victim ping, calm', calm));
  console.log(fmt(`victim ping, during ${READS} reads naming it (${elapsed} ms)`, st));
  console.log(`# pushed to the victim: ${seen.length} (${seen.filter((m) => m.type === 'receipt').length} receipts)`);
  assert.deepEqual(seen, [], 'the victim got no receipt');
  assert.equal(st.lost, 0);
  assert.ok(st.p99 < 100, `victim ping p99 ${st.p99.toFixed(1)} ms`);
});
