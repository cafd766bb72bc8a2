// The Register (--gw-register): gateway_connect adds an address while its
// connection stays open and removes it when it closes; a worker_connect
// connection gets a broadcast_addresses line at once and again on every
// change (in announcement order); a BusinessWorker (php/worker.php) connects
// to a gateway that appears later; GatewayClient sees the new list.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGw, php, PhpWorker, RawConn, freeServer, stopWorkers, HOST } from './lib/gw.mjs';

const srv = await startGw();
after(async () => {
  await stopWorkers();
  await srv.stop();
});

/** Reads the next \n-terminated line from conn. */
async function nextLine(conn, timeoutMs = 3000) {
  const b = await conn.read((buf) => {
    const i = buf.indexOf(10);
    return i < 0 ? null : { value: buf.subarray(0, i + 1), consumed: i + 1 };
  }, timeoutMs, 'a Register line');
  return b.toString();
}
const line = (addresses) => `${JSON.stringify({ event: 'broadcast_addresses', addresses })}\n`;

test('gateway_connect adds an address while open; workers are told of every change; a worker connects to the new gateway', async () => {
  // a stand-in gateway: records what a worker sends it
  const fake = await freeServer();
  const fakeAddr = `${HOST}:${fake.port}`;
  const watcher = await RawConn.connect(srv.registerPort);
  await watcher.write('{"event":"worker_connect","secret_key":""}\n');
  assert.equal(await nextLine(watcher), line([srv.inner]));

  const w = await PhpWorker.start(srv);
  const gw = await RawConn.connect(srv.registerPort);
  await gw.write(`${JSON.stringify({ event: 'gateway_connect', address: fakeAddr, secret_key: '' })}\n`);
  assert.equal(await nextLine(watcher), line([srv.inner, fakeAddr]), 'the new address, after the first');
  await w.waitFor((l) => l.ev === 'gateway_connected' && l.address === fakeAddr, 3000, 'the worker connecting to the new gateway');
  const hello = await fake.firstData(3000);
  assert.equal(hello.readUInt32BE(0), hello.length, 'one frame');
  assert.equal(hello[4], 200, 'cmd 200');
  const body = JSON.parse(hello.subarray(28 + hello.readUInt32BE(24)).toString());
  assert.deepEqual(body, { worker_key: 'TestWorker:0', secret_key: '' });

  const [r] = await php(srv, [['getAddresses']]);
  assert.deepEqual(r.json, [srv.inner, fakeAddr]);

  gw.destroy();
  assert.equal(await nextLine(watcher), line([srv.inner]), 'the address leaves with its connection');
  assert.equal(gw.buf.length, 0, 'nothing is sent to a gateway_connect connection');
  watcher.destroy();
  await w.stop();
  fake.close();
});
