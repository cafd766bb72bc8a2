// The push-notification webhook in a cluster (issue #12): a message stored on
// node1 for a user whose only device is on node2 is not announced (the user
// is online, somewhere); once that device is gone, the next message is, once,
// and by the node that stored it (node2 does not announce it again). A recall
// handled by the other node withdraws the storing node's retries of the event.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startCluster, must, register, sleep, uname, waitUntil } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const calls = [];
const rx = http.createServer((req, res) => {
  let raw = '';
  req.on('data', (d) => (raw += d));
  req.on('end', () => {
    const body = JSON.parse(raw);
    calls.push({ node: req.headers['x-test-node'], event: req.headers['x-chatd-event'], body, at: Date.now() });
    // a message whose text starts with "503:" is refused, so its event stays in its node's retries
    res.writeHead(typeof body.preview === 'string' && body.preview.startsWith('503:') ? 503 : 200);
    res.end('ok');
  });
});
await new Promise((r) => rx.listen(0, '127.0.0.1', r));
after(() => new Promise((r) => rx.close(r)));
const url = `http://127.0.0.1:${rx.address().port}/hook`;

const c = await startCluster(after, { n: 2, haproxy: false, nodeOptions: { 'webhook-url': url, 'webhook-secret': 'cl-secret' } });
const [n1, n2] = c.nodes;

test('a recipient online on another node gets no webhook; offline everywhere, exactly one', async () => {
  const alice = await register(n1, uname('wha'));
  const bob = await register(n1, uname('whb'));
  const b2 = await Sock.bound(n2, bob, 'bob@node2');

  const m1 = await must(n1, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'bob is on node2' } });
  await b2.waitFrame((f) => f.type === 'message' && f.message.id === m1.id, 5000);
  await sleep(1500); // past the 1 s the online check may wait for a node
  assert.deepEqual(calls.filter((x) => x.body.message_id === m1.id), [], 'online on node2: no webhook');

  b2.terminate();
  await waitUntil(async () => (await must(n2, 'GET', '/healthz')).uids === 0, { what: 'bob gone from node2' });
  await sleep(400); // the directory forgets node2's hold (deferred unsubscribe)
  const m2 = await must(n1, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'bob is away' } });
  await waitUntil(async () => calls.some((x) => x.body.message_id === m2.id), { timeoutMs: 5000, what: 'the webhook for m2' });
  await sleep(1000);
  const got = calls.filter((x) => x.body.message_id === m2.id);
  assert.equal(got.length, 1, 'exactly one call, from one node');
  assert.equal(got[0].body.recipient, bob.id);
  assert.equal(got[0].body.preview, 'bob is away');
});

test('a recall through the other node withdraws the storing node\'s retries of the message event', async () => {
  const alice = await register(n1, uname('wra'));
  const bob = await register(n1, uname('wrb'));
  const before = (await must(n1, 'GET', '/healthz')).webhook.withdrawn;
  const m = await must(n1, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: '503:secret' } });
  await waitUntil(async () => calls.some((x) => x.body.message_id === m.id), { timeoutMs: 5000, what: 'the first attempt' });
  // node1 now backs off (1 s, then 2 s, ...) before trying again; the recall goes through node2
  await must(n2, 'POST', '/chat/recall', { token: alice.token, body: { message_id: m.id } });
  const recalledAt = Date.now();
  await waitUntil(async () => (await must(n1, 'GET', '/healthz')).webhook.withdrawn > before, { timeoutMs: 3000, what: 'node1 withdrew its event' });
  await sleep(3500); // past the retries the event would have had
  const again = calls.filter((x) => x.body.message_id === m.id && x.event !== 'recall' && x.at > recalledAt + 200);
  assert.deepEqual(again.map((x) => x.body.preview), [], 'no attempt with the text after the recall');
  assert.ok(calls.some((x) => x.event === 'recall' && x.body.message_id === m.id), 'the receiver is told of the recall');
});
