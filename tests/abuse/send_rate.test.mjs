// Attack: one user floods chat messages (issue #13, item 18). Each accepted
// message is a write on the one storage thread and a push to every device of
// the recipient. Now --send-rate caps a user's messages over HTTP and the
// socket together: 2 * rate per 2-second window (rate a second on average,
// bursts of twice that); past it, HTTP answers 429 rate_limited and the socket
// an error frame with code rate_limited and the client_msg_id, and stays open.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from '../integration/lib/server.mjs';
import { ChatSocket, fails, must, post, register, uname } from '../integration/lib/chat.mjs';
import { fmt, sleep, startVictim } from './lib/victim.mjs';

const RATE = 5;
const WINDOW_MS = 2000;
const FLOOD = 3000;

const srv = await startServer({ options: { 'send-rate': RATE } });
after(() => srv.stop());

/**
 * Sends n messages on s, back to back (or `batch` at a time, one batch every
 * pauseMs, so the test's own thread stays free for the victim); returns the
 * client_msg_ids acked and refused.
 */
async function burst(s, to, n, tag, { batch = n, pauseMs = 0 } = {}) {
  for (let i = 0; i < n; i++) {
    s.sendMsg(to, `${tag} ${i}`, { client_msg_id: `${tag}-${i}` });
    if ((i + 1) % batch === 0) await sleep(pauseMs);
  }
  const acked = [];
  const limited = [];
  for (let i = 0; i < n; i++) {
    const m = await s.next(5000);
    if (m.type === 'ack') acked.push(m.client_msg_id);
    else if (m.type === 'error' && m.code === 'rate_limited') {
      assert.equal(m.op, 'send');
      assert.match(m.client_msg_id, new RegExp(`^${tag}-\\d+$`));
      limited.push(m.client_msg_id);
    } else assert.fail(`unexpected ${JSON.stringify(m)}`);
  }
  return { acked, limited };
}

test(`--send-rate ${RATE}: a burst of 30 gets ${RATE * 2} through, the rest rate_limited; the socket stays open; later it works again`, async (t) => {
  const [a, b] = [await register(srv, uname('ra')), await register(srv, uname('rb'))];
  const s = await ChatSocket.bound(srv, a, t);
  const { acked, limited } = await burst(s, b, 30, 'b1');
  console.log(`# burst of 30: ${acked.length} acked, ${limited.length} rate_limited`);
  assert.equal(acked.length, RATE * 2);
  assert.deepEqual(acked, Array.from({ length: RATE * 2 }, (_, i) => `b1-${i}`), 'the first ones go through');
  assert.equal(limited.length, 30 - RATE * 2);
  assert.equal(s.closed, false, 'the socket stays open');
  // HTTP shares the user's allowance.
  fails(await post(srv, '/chat/send', { to_id: b.id, type: 'text', data: 'over http' }, { token: a.token }), 429, 'rate_limited');
  // Another user is not affected.
  const m = await must(srv, 'POST', '/chat/send', { token: b.token, body: { to_id: a.id, type: 'text', data: 'b is fine' } });
  assert.equal(m.from_id, b.id);
  assert.deepEqual(await s.next(), { type: 'message', message: m });
  // Nothing refused was stored: a's side of the conversation holds the 10 acked only.
  const hist = await must(srv, 'GET', `/chat/history?userid=${b.id}&limit=100`, { token: a.token });
  assert.equal(hist.filter((x) => x.from_id === a.id).length, RATE * 2);

  await sleep(WINDOW_MS + 100);
  const again = await burst(s, b, 3, 'b2');
  assert.equal(again.acked.length, 3, 'sending works again after the window');
});

test(`a flood of ${FLOOD} messages over one socket stores at most ${RATE * 2} per window and does not slow a victim`, async (t) => {
  const [a, b] = [await register(srv, uname('fa')), await register(srv, uname('fb'))];
  const victim = await startVictim(srv);
  await sleep(300);
  const calm = victim.snapshot();
  const s = await ChatSocket.bound(srv, a, t);
  const t0 = Date.now();
  const { acked, limited } = await burst(s, b, FLOOD, 'f', { batch: 100, pauseMs: 20 });
  const elapsed = Date.now() - t0;
  const st = await victim.stop();
  console.log(fmt('victim ping, before the flood', calm));
  console.log(fmt(`victim ping, during a flood of ${FLOOD} sends (${elapsed} ms)`, st));
  console.log(`# flood: ${acked.length} acked, ${limited.length} rate_limited`);
  const windows = Math.ceil(elapsed / WINDOW_MS) + 1;
  assert.ok(acked.length <= RATE * 2 * windows, `${acked.length} acked in ${elapsed} ms, bound ${RATE * 2 * windows}`);
  assert.equal(acked.length + limited.length, FLOOD);
  assert.equal(st.lost, 0);
  assert.ok(st.p99 < 100, `victim ping p99 ${st.p99.toFixed(1)} ms`);
});
