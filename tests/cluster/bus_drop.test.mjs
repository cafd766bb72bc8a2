// The bus connection dropping under pipelined server-API calls. Redis closes
// a node's subscriber connection (CLIENT KILL TYPE pubsub: as Redis does to a
// subscriber past its output-buffer limit) again and again while clients keep
// two /gateway/* requests in flight on one keep-alive connection (sent in one
// write): the node drops both Redis connections, answers what was waiting
// with its own part, reconnects, and must never touch a connection that is
// going (a pipelined request answered from a freed connection's callbacks
// used to publish on it: a segfault). Also: send_to_all with "client_ids":
// null (as PHP's Gateway::sendToAll sends it) goes to every node.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startCluster, gw, healthz, respCommand, uname, waitUntil, sleep, SECRET, HOST } from './lib/cluster.mjs';
import { Sock } from './lib/sock.mjs';

const c = await startCluster(after, { n: 2, haproxy: false });
const [n1, n2] = c.nodes;
const socks = [];
after(() => socks.forEach((s) => s.terminate()));

/** Keeps `depth` requests in flight on one keep-alive connection until stop(); counts answers. */
function pipeline(node, body, depth = 2) {
  const req = (b) => {
    const text = JSON.stringify(b);
    return `POST /gateway/send_to_uid HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n\r\n${text}`;
  };
  const s = net.connect(node.port, HOST);
  const st = { answers: 0, closed: false, stop: () => s.destroy() };
  let buf = '';
  s.on('connect', () => s.write(req(body).repeat(depth)));
  s.on('data', (d) => {
    buf += d.toString('latin1');
    let i;
    while ((i = buf.indexOf('HTTP/1.1 ', 1)) > 0 || (buf.startsWith('HTTP/1.1 ') && buf.includes('}'))) {
      const end = buf.indexOf('}', buf.indexOf('\r\n\r\n'));
      if (end < 0) break;
      buf = buf.slice(end + 1);
      st.answers++;
      s.write(req(body)); // keep `depth` in flight
      if (i <= 0) break;
    }
  });
  s.on('error', () => {});
  s.on('close', () => (st.closed = true));
  return st;
}

test('the subscriber connection killed again and again under pipelined calls: the node survives and routes again', async () => {
  const uid = `drop-${uname('u')}`;
  const r2 = await Sock.open(n2, 'r2@node2');
  socks.push(r2);
  assert.equal(await gw(n2, 'bind_uid', { client_id: r2.clientId, uid }), true);
  const loads = Array.from({ length: 8 }, (_, i) => pipeline(n1, { uid, data: `p${i}` }, 4));
  const before = (await healthz(n1)).cluster.reconnects;
  for (let i = 0; i < 30; i++) {
    await sleep(40 + (i % 4) * 10);
    await respCommand(c.redis.port, ['CLIENT', 'KILL', 'TYPE', 'pubsub']);
  }
  await sleep(300);
  loads.forEach((l) => l.stop());
  assert.equal(n1.exitInfo, null, `node1 still runs (${n1.stderr().slice(-400)})`);
  assert.equal(n2.exitInfo, null, 'node2 still runs');
  const answers = loads.reduce((a, l) => a + l.answers, 0);
  assert.ok(answers > 50, `the pipelined calls were answered throughout (${answers})`);
  await waitUntil(async () => (await healthz(n1)).cluster.redis === 'up' && (await healthz(n2)).cluster.redis === 'up', {
    timeoutMs: 10000,
    what: 'both nodes back on Redis',
  });
  assert.ok((await healthz(n1)).cluster.reconnects > before, 'node1 did lose and regain the bus');
  // routing works again, both ways
  const from = r2.frames.length;
  await waitUntil(async () => (await gw(n1, 'send_to_uid', { uid, data: 'after' })) === 1, { timeoutMs: 10000, what: 'node1 reaches node2 again' });
  await r2.waitFrame((f, i) => i >= from && f.text === 'after', 3000);
});

test('send_to_all with "client_ids": null reaches every node, as without it', async () => {
  const a = await Sock.open(n1, 'a@node1');
  const b = await Sock.open(n2, 'b@node2');
  socks.push(a, b);
  const all = (await gw(n1, 'get_all_client_id_count'));
  assert.equal(await gw(n1, 'send_to_all', { data: 'to all', client_ids: null }), all);
  await a.waitText('to all');
  await b.waitText('to all');
});
