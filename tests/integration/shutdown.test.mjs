// SIGTERM / SIGINT: every WebSocket connection is closed with 1001 and the
// process exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startServer, HOST } from './lib/server.mjs';
import { RawConn } from './lib/http.mjs';
import { RawWs, WsClient, openClients } from './lib/ws.mjs';

function exitWithin(srv, ms) {
  return Promise.race([
    srv.exited,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`chatd still running ${ms} ms after the signal`)), ms).unref()),
  ]);
}

function refused(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: HOST });
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(true));
  });
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig} closes every WebSocket with 1001 and exits 0`, async (t) => {
    const srv = await startServer({ options: { 'echo-path': '/echo' } });
    t.after(() => srv.stop());
    const clients = await openClients(srv, 3);
    const echo = await WsClient.open(srv, { path: '/echo' });
    const raw = await RawWs.connectClient(srv.port);
    const idleHttp = await RawConn.connect(srv.port);
    await idleHttp.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await idleHttp.readResponse()).status, 200);

    const t0 = Date.now();
    srv.signal(sig);
    const infos = await Promise.all([...clients, echo].map((c) => c.waitClose(4000)));
    for (const info of infos) assert.equal(info.code, 1001, `close code ${info.code} ${info.reason}`);
    const r = await raw.readClose(4000);
    assert.equal(r.code, 1001, 'raw client sees a 1001 close frame');
    const exit = await exitWithin(srv, 5000);
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status after ${Date.now() - t0} ms; stderr tail: ${srv.stderr().slice(-500)}`);
    assert.equal(await idleHttp.waitClosed(500), true, 'idle HTTP connection closed');
    assert.equal(await refused(srv.port), true, 'port no longer accepts connections');
    raw.destroy();
    idleHttp.destroy();
  });
}

test('SIGTERM with no connections exits 0 promptly', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const t0 = Date.now();
  srv.signal('SIGTERM');
  const exit = await exitWithin(srv, 3000);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 2000, `exited after ${Date.now() - t0} ms`);
});

test('a client that never answers the close does not hold the exit back for long', async (t) => {
  const srv = await startServer();
  t.after(() => srv.stop());
  const raw = await RawWs.connectClient(srv.port);
  const t0 = Date.now();
  srv.signal('SIGTERM');
  const f = await raw.readFrame(3000);
  assert.equal(f.opcode, 0x8);
  assert.equal(f.code, 1001);
  // We never send our close frame back.
  const exit = await exitWithin(srv, 8000);
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 8000);
  raw.destroy();
});
