// Attack: a BusinessWorker that stops reading (issue #10). Every client
// message becomes an event queued to its worker; GatewayWorker drops what
// does not fit its 1 MB buffer, silently. chatd bounds the worker's queue
// with --gw-max-outbuf and closes the worker when it passes it, with a log
// line; the loop never waits on it, so other clients' pushes keep flowing,
// and the clients fall back to native handling once no worker is left.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { freePort, startServer, sleep } from '../integration/lib/server.mjs';
import { WsClient } from '../integration/lib/ws.mjs';
import { summarize, fmt } from './lib/victim.mjs';

const MAX_OUTBUF = 65536;
const MESSAGES = 1000;
const SIZE = 16384;

const innerPort = await freePort();
const srv = await startServer({
  options: { 'api-secret': 's', 'gw-inner': `127.0.0.1:${innerPort}`, 'gw-max-outbuf': MAX_OUTBUF },
});
after(() => srv.stop());

/** A worker that says hello (cmd 200) and then never reads. */
function stuckWorker() {
  return new Promise((resolve, reject) => {
    const body = Buffer.from(JSON.stringify({ worker_key: 'Stuck:0', secret_key: '' }));
    const h = Buffer.alloc(28);
    h.writeUInt32BE(28 + body.length, 0);
    h[4] = 200;
    h[21] = 1;
    const s = net.connect(innerPort, '127.0.0.1', () => {
      s.write(Buffer.concat([h, body]));
      s.pause(); // the kernel buffers fill, then chatd's queue grows
      resolve(s);
    });
    s.on('error', reject);
  });
}

async function health() {
  const r = await fetch(`${srv.url}/healthz`);
  return (await r.json()).data.gatewayworker;
}

test(`a worker that never reads is closed past --gw-max-outbuf ${MAX_OUTBUF}; other clients are not slowed`, async () => {
  const worker = await stuckWorker();
  // a paused socket never reads its EOF: chatd's log says when it closed it
  // (closed either past --gw-max-outbuf, or, once its clients are paused by the back-pressure,
  // after 5 s without taking a byte)
  const closedRe =
    /inner connection from .* closed: more than --gw-max-outbuf 65536 bytes queued \(a slow BusinessWorker|BusinessWorker Stuck:0 closed: it took no byte/;
  const workerClosed = () => closedRe.test(srv.stderr());
  await sleep(200);
  assert.equal((await health()).workers, 1);

  const victim = await WsClient.open(srv); // reads the init greeting
  const attacker = await WsClient.open(srv);
  const victimId = victim.clientId;
  assert.match(victimId, /^[0-9a-f]{20}$/, 'GatewayWorker client_ids with --gw-inner');

  // The victim's probe: a push through the native server API, timed to arrival.
  const samples = [];
  let lost = 0;
  let probing = true;
  const probe = (async () => {
    while (probing) {
      const t0 = performance.now();
      const r = await fetch(`${srv.url}/gateway/send_to_client`, {
        method: 'POST',
        headers: { authorization: 'Bearer s', 'content-type': 'application/json' },
        body: JSON.stringify({ client_id: victimId, data: 'probe' }),
      });
      const answer = await r.text();
      if (r.status !== 200) console.log(`# probe push: ${r.status} ${answer}`);
      try {
        const m = await victim.nextText(2000);
        assert.equal(m, 'probe');
        samples.push(performance.now() - t0);
      } catch (e) {
        console.log(`# probe lost: ${e.message}`);
        lost++;
      }
      await sleep(10);
    }
  })();

  await sleep(300); // calm samples first
  const payload = 'x'.repeat(SIZE);
  for (let i = 0; i < MESSAGES && !workerClosed(); i++) {
    attacker.send(payload);
    if (i % 50 === 49) await sleep(5);
  }
  for (let i = 0; i < 200 && !workerClosed(); i++) await sleep(50);
  await sleep(300); // and after
  probing = false;
  await probe;

  assert.ok(workerClosed(), 'the stuck worker was closed, with a log line');
  const h = await health();
  assert.equal(h.workers, 0);
  assert.ok(h.slow_closes >= 1, `slow_closes ${h.slow_closes}`);

  const st = summarize(samples, lost);
  console.log(fmt('victim push latency while the worker was stuck', st));
  assert.equal(st.lost, 0);
  assert.ok(st.p99 < 100, `victim push p99 ${st.p99.toFixed(1)} ms`);

  // No worker left: the attacker's messages are chatd's again (ping -> pong).
  attacker.sendJson({ type: 'ping' });
  let m;
  do m = await attacker.nextJson(2000);
  while (m.type !== 'pong');
  assert.equal(m.type, 'pong');
  victim.close();
  attacker.close();
  worker.destroy();
});

test('a client that floods a slowly reading worker is paused, not the worker closed; nothing is lost', async () => {
  // a second chatd with a 1 MiB bound, so the test moves a few MB, not tens
  const inner2 = await freePort();
  const srv2 = await startServer({ options: { 'api-secret': 's', 'gw-inner': `127.0.0.1:${inner2}`, 'gw-max-outbuf': 1 << 20 } });
  try {
    const body = Buffer.from(JSON.stringify({ worker_key: 'Slow:0', secret_key: '' }));
    const h = Buffer.alloc(28);
    h.writeUInt32BE(28 + body.length, 0);
    h[4] = 200;
    h[21] = 1;
    const w = new net.Socket({ readableHighWaterMark: 1 << 18 });
    await new Promise((resolve, reject) => {
      w.once('error', reject);
      w.connect(inner2, '127.0.0.1', resolve);
    });
    w.write(Buffer.concat([h, body]));
    w.pause();
    // the worker takes 256 KiB every 20 ms (about 13 MB/s) and counts ON_MESSAGE frames
    let buf = Buffer.alloc(0);
    let messages = 0;
    let closed = false;
    w.on('close', () => (closed = true));
    const reader = setInterval(() => {
      const d = w.read();
      if (!d) return;
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 28 && buf.length >= buf.readUInt32BE(0)) {
        if (buf[4] === 3) messages++;
        buf = buf.subarray(buf.readUInt32BE(0));
      }
    }, 20);
    await sleep(200);
    const attacker = await WsClient.open(srv2);
    const N = 100;
    const payload = 'y'.repeat(64 * 1024);
    for (let i = 0; i < N; i++) attacker.send(payload);
    for (let i = 0; i < 400 && messages < N; i++) await sleep(50);
    clearInterval(reader);
    const hr = await fetch(`${srv2.url}/healthz`);
    const gwh = (await hr.json()).data.gatewayworker;
    console.log(`# worker got ${messages}/${N} messages; clients_paused ${gwh.clients_paused}, slow_closes ${gwh.slow_closes}`);
    assert.equal(messages, N, 'every message reached the worker');
    assert.equal(closed, false);
    assert.equal(gwh.workers, 1, 'the worker was not closed');
    assert.equal(gwh.slow_closes, 0);
    assert.ok(gwh.clients_paused >= 1, 'the flooding client was paused');
    attacker.close();
    w.destroy();
  } finally {
    await srv2.stop();
  }
});
