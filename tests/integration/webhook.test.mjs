// Push-notification webhook (issue #12): with --webhook-url, a message stored
// for a user with no connected device is POSTed as a signed JSON event to the
// URL. A Node HTTP server in this file is the receiver: it records every call
// (headers, raw body, arrival time) and answers as each test tells it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, must, registerAll, send, uname } from './lib/chat.mjs';
import { healthz } from './lib/http.mjs';

const SECRET = 'whsec-test-' + crypto.randomBytes(8).toString('hex');

/** A receiver on 127.0.0.1: answer(call, n) returns a status, or null to never answer. */
async function receiver() {
  const r = {
    calls: [],
    answer: () => 200,
    held: [],
  };
  r.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (d) => chunks.push(d));
    req.on('end', () => {
      const call = { method: req.method, url: req.url, headers: req.headers, raw: Buffer.concat(chunks).toString('utf8'), at: Date.now() };
      try {
        call.body = JSON.parse(call.raw);
      } catch {
        call.body = undefined;
      }
      r.calls.push(call);
      const status = r.answer(call, r.calls.length);
      if (status === null) {
        r.held.push(res); // never answered: chatd times out
        return;
      }
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise((resolve) => r.server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${r.server.address().port}/hook?key=abc`;
  r.reset = (answer = () => 200) => {
    r.calls = [];
    r.answer = answer;
  };
  /** Waits until n calls arrived (or fails after timeoutMs). */
  r.waitFor = async (n, timeoutMs = 4000) => {
    const deadline = Date.now() + timeoutMs;
    while (r.calls.length < n) {
      if (Date.now() > deadline) assert.fail(`expected ${n} webhook call(s) within ${timeoutMs} ms, got ${r.calls.length}`);
      await sleep(20);
    }
    return r.calls;
  };
  r.close = async () => {
    for (const res of r.held) res.destroy();
    r.server.closeAllConnections();
    await new Promise((resolve) => r.server.close(resolve));
  };
  return r;
}

/** Checks the X-Chatd-Signature of a call the way a site would (docs/API.md). */
function verifySignature(call, secret = SECRET) {
  const ts = call.headers['x-chatd-timestamp'];
  assert.match(ts, /^\d{10}$/, 'X-Chatd-Timestamp is Unix seconds');
  assert.ok(Math.abs(Date.now() / 1000 - Number(ts)) < 60, 'the timestamp is now');
  const expected = 'sha256=' + crypto.createHmac('sha256', secret).update(`${ts}.${call.raw}`).digest('hex');
  const got = call.headers['x-chatd-signature'] || '';
  assert.equal(got.length, expected.length, `signature ${got}`);
  assert.ok(crypto.timingSafeEqual(Buffer.from(got), Buffer.from(expected)), 'the signature verifies');
}

const rx = await receiver();
after(() => rx.close());

const srv = await startServer({ options: { 'webhook-url': rx.url, 'webhook-secret': SECRET }, args: ['--metrics'] });
after(() => srv.stop());

test('a message to an offline user: exactly one signed call with the event', async () => {
  rx.reset();
  const [a, b] = await registerAll(srv, [uname('wa'), uname('wb')]);
  const m = await send(srv, a, b, 'hello offline b');
  const [call] = await rx.waitFor(1);
  await sleep(300);
  assert.equal(rx.calls.length, 1, 'exactly one call');
  assert.equal(call.method, 'POST');
  assert.equal(call.url, '/hook?key=abc', 'the URL as given, query included');
  assert.equal(call.headers['content-type'], 'application/json');
  assert.equal(call.headers['x-chatd-event'], 'message');
  assert.match(call.headers['x-chatd-delivery'], /^[0-9a-f]{32}$/);
  verifySignature(call);
  assert.throws(() => verifySignature(call, SECRET + 'x'), 'another secret does not verify');
  assert.deepEqual(call.body, {
    type: 'message',
    recipient: b.id,
    sender: a.id,
    sender_name: a.username,
    conversation: a.id,
    message_id: m.id,
    seq: m.seq,
    message_type: 'text',
    created_at: m.time,
    preview: 'hello offline b',
    preview_truncated: false,
  });
  const h = (await healthz(srv)).webhook;
  assert.ok(h, '/healthz has a webhook object');
  assert.ok(h.queued >= 1 && h.delivered >= 1, JSON.stringify(h));
});

test('a message to an online user: no call; once the device is gone, one', async (t) => {
  rx.reset();
  const [a, b] = await registerAll(srv, [uname('wc'), uname('wd')]);
  const uidsBefore = (await healthz(srv)).uids;
  const sb = await ChatSocket.bound(srv, b, t);
  const m = await send(srv, a, b, 'you are online');
  assert.deepEqual(await sb.next(), { type: 'message', message: m });
  await sleep(500);
  assert.equal(rx.calls.length, 0, 'no webhook for a user with a connected device');

  sb.terminate();
  for (let i = 0; (await healthz(srv)).uids > uidsBefore; i++) {
    assert.ok(i < 100, 'the socket is gone from the registry');
    await sleep(20);
  }
  const m2 = await send(srv, a, b, 'now offline');
  const [call] = await rx.waitFor(1);
  assert.equal(call.body.message_id, m2.id);
  assert.equal(call.body.recipient, b.id);
});

test('500, 500, then 200: three attempts with the same delivery id, backing off', async () => {
  rx.reset((call, n) => (n <= 2 ? 500 : 200));
  const before = (await healthz(srv)).webhook;
  const [a, b] = await registerAll(srv, [uname('we'), uname('wf')]);
  const m = await send(srv, a, b, 'retry me');
  const calls = await rx.waitFor(3, 8000);
  await sleep(1500);
  assert.equal(rx.calls.length, 3, 'no attempt after the 200');
  const ids = new Set(calls.map((c) => c.headers['x-chatd-delivery']));
  assert.equal(ids.size, 1, 'one delivery id for every attempt');
  for (const c of calls) {
    assert.equal(c.body.message_id, m.id);
    assert.equal(c.raw, calls[0].raw, 'the same body');
    verifySignature(c);
  }
  const gap1 = calls[1].at - calls[0].at;
  const gap2 = calls[2].at - calls[1].at;
  assert.ok(gap1 >= 900 && gap1 < 1900, `first retry after ~1 s (${gap1} ms)`);
  assert.ok(gap2 >= 1900 && gap2 < 3500, `second retry after ~2 s (${gap2} ms)`);
  const h = (await healthz(srv)).webhook;
  assert.equal(h.retried - before.retried, 2);
  assert.equal(h.delivered - before.delivered, 1);
  assert.equal(h.pending, 0);
});

test('a recall stops the retries of its message event; the receiver gets a recall event', async () => {
  // 503 for the message event: it would be retried for ~15 s with its preview
  rx.reset((call) => (call.body?.type === 'message' ? 503 : 200));
  const before = (await healthz(srv)).webhook;
  const [a, b] = await registerAll(srv, [uname('wr'), uname('ws')]);
  const m = await send(srv, a, b, 'take this back');
  const [first] = await rx.waitFor(1);
  assert.equal(first.body.preview, 'take this back');
  const r = await must(srv, 'POST', '/chat/recall', { token: a.token, body: { message_id: m.id } });
  const calls = await rx.waitFor(2);
  await sleep(2500); // past the first retry's 1 s, and the second's 2 s
  assert.deepEqual(rx.calls.map((c) => c.body.type), ['message', 'recall'], 'no retry of the message event');
  const rc = calls[1];
  assert.equal(rc.headers['x-chatd-event'], 'recall');
  verifySignature(rc);
  assert.deepEqual(rc.body, { type: 'recall', recipient: b.id, sender: a.id, conversation: a.id, message_id: m.id, created_at: r.notice.time });
  assert.equal(rc.raw.includes('take this back'), false);
  const h = (await healthz(srv)).webhook;
  assert.equal(h.withdrawn - before.withdrawn, 1);
  assert.equal(h.pending, 0);
  const metrics = await (await fetch(`${srv.url}/metrics`)).text();
  assert.match(metrics, new RegExp(`^chatd_webhook_withdrawn_total ${h.withdrawn}$`, 'm'), '/metrics counts it too');
});

test('a send retried after its message was recalled calls no webhook', async () => {
  rx.reset();
  const [a, b] = await registerAll(srv, [uname('wt'), uname('wu')]);
  const m = await send(srv, a, b, 'once', { client_msg_id: 'wt-1' });
  await rx.waitFor(1);
  await must(srv, 'POST', '/chat/recall', { token: a.token, body: { message_id: m.id } });
  await rx.waitFor(2); // the recall event: the message event was delivered
  const dup = await send(srv, a, b, 'once', { client_msg_id: 'wt-1' });
  assert.equal(dup.id, m.id);
  assert.equal(dup.recalled, true);
  await sleep(500);
  assert.deepEqual(rx.calls.map((c) => c.body.type), ['message', 'recall']);
});

test('400 is not retried and counts as failed', async () => {
  rx.reset(() => 400);
  const before = (await healthz(srv)).webhook;
  const [a, b] = await registerAll(srv, [uname('wg'), uname('wh')]);
  await send(srv, a, b, 'refused');
  await rx.waitFor(1);
  await sleep(2000); // past the first retry's backoff
  assert.equal(rx.calls.length, 1, 'one attempt only');
  const h = (await healthz(srv)).webhook;
  assert.equal(h.failed - before.failed, 1);
  assert.equal(h.retried - before.retried, 0);
  assert.equal(h.pending, 0);
});

test('a receiver that hangs is timed out (5 s) and retried', async () => {
  rx.reset((call, n) => (n === 1 ? null : 200));
  const before = (await healthz(srv)).webhook;
  const [a, b] = await registerAll(srv, [uname('wi'), uname('wj')]);
  const m = await send(srv, a, b, 'are you there');
  const calls = await rx.waitFor(2, 10000);
  const gap = calls[1].at - calls[0].at;
  assert.ok(gap >= 5500 && gap < 8000, `retried after the 5 s timeout and a 1 s backoff (${gap} ms)`);
  assert.equal(calls[1].headers['x-chatd-delivery'], calls[0].headers['x-chatd-delivery']);
  assert.equal(calls[1].body.message_id, m.id);
  await sleep(200);
  const h = (await healthz(srv)).webhook;
  assert.equal(h.retried - before.retried, 1);
  assert.equal(h.delivered - before.delivered, 1);
});

test('--webhook-preview: the first N characters, never half a character', async (t) => {
  const r2 = await receiver();
  t.after(() => r2.close());
  const s2 = await startServer({ options: { 'webhook-url': r2.url, 'webhook-secret': SECRET, 'webhook-preview': 5 } });
  t.after(() => s2.stop());
  const [a, b] = await registerAll(s2, [uname('wk'), uname('wl')]);
  const cases = [
    ['abcd🎉ef', 'abcd🎉', true],
    ['日本語テキストです', '日本語テキ', true],
    ['héllo', 'héllo', false],
    ['hi', 'hi', false],
  ];
  for (const [text] of cases) await send(s2, a, b, text);
  const calls = await r2.waitFor(cases.length);
  const got = new Map(calls.map((c) => [c.body.message_id, c.body]));
  assert.equal(got.size, cases.length);
  const sorted = [...got.values()].sort((x, y) => x.seq - y.seq);
  cases.forEach(([, preview, truncated], i) => {
    assert.equal(sorted[i].preview, preview, `preview of case ${i}`);
    assert.equal(sorted[i].preview_truncated, truncated, `preview_truncated of case ${i}`);
  });
});

test('queue overflow: --webhook-queue 2, a receiver that never answers: dropped and counted, acks stay fast', async (t) => {
  const r3 = await receiver();
  r3.reset(() => null);
  t.after(() => r3.close());
  const s3 = await startServer({
    options: { 'webhook-url': r3.url, 'webhook-secret': SECRET, 'webhook-queue': 2, 'webhook-preview': 0 },
    args: ['--metrics'],
  });
  t.after(() => s3.stop());
  const [a, b] = await registerAll(s3, [uname('wm'), uname('wn')]);
  const sa = await ChatSocket.bound(s3, a, t);
  const acks = [];
  for (let i = 0; i < 20; i++) {
    const t0 = process.hrtime.bigint();
    sa.sendMsg(b, `m${i}`, { client_msg_id: `c${i}` });
    const ack = await sa.expect('ack');
    acks.push(Number(process.hrtime.bigint() - t0) / 1e6);
    assert.equal(ack.client_msg_id, `c${i}`);
  }
  const worst = Math.max(...acks);
  assert.ok(worst < 250, `every send acked fast while the receiver hangs (worst ${worst.toFixed(1)} ms)`);
  await r3.waitFor(2);
  await sleep(300);
  assert.equal(r3.calls.length, 2, 'only the queued events were sent');
  for (const c of r3.calls) assert.ok(!('preview' in c.body), '--webhook-preview 0: no preview');
  const h = (await healthz(s3)).webhook;
  assert.equal(h.queued, 2);
  assert.equal(h.dropped, 18);
  assert.equal(h.pending, 2);
  assert.match(s3.stderr(), /webhook: the queue is full/);
  const metrics = await (await fetch(`${s3.url}/metrics`)).text();
  assert.match(metrics, /^chatd_webhook_dropped_total 18$/m);
  assert.match(metrics, /^chatd_webhook_queued_total 2$/m);
  assert.match(metrics, /^chatd_webhook_pending 2$/m);
  // the loop is not blocked: /healthz answered, and a plain HTTP send too
  const t0 = Date.now();
  await send(s3, a, b, 'still fast');
  assert.ok(Date.now() - t0 < 250);
});

test('off by default: no --webhook-url, no calls and no webhook in /healthz', async (t) => {
  const r4 = await receiver();
  t.after(() => r4.close());
  // control: the same set-up with the URL calls the receiver
  const on = await startServer({ options: { 'webhook-url': r4.url } });
  t.after(() => on.stop());
  const [a, b] = await registerAll(on, [uname('wo'), uname('wp')]);
  await send(on, a, b, 'control');
  const [call] = await r4.waitFor(1);
  assert.equal(call.headers['x-chatd-signature'], undefined, 'no secret: unsigned');

  r4.reset();
  const off = await startServer();
  t.after(() => off.stop());
  const [c, d] = await registerAll(off, [uname('wq'), uname('wr')]);
  await send(off, c, d, 'nobody is told');
  await sleep(500);
  assert.equal(r4.calls.length, 0);
  assert.equal((await healthz(off)).webhook, undefined);
});
