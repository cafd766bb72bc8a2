// Bad input on the inner port and on the Register: each case closes that one
// connection, with nothing answered and a log line on chatd's stderr, while an
// unrelated WebSocket client keeps receiving pushes (through the inner port
// and through /gateway/*) and /healthz stays up. Cases: a short header then
// EOF, pack_len < 28, pack_len > --gw-max-frame (closed before the body
// comes), ext_len past pack_len, unknown cmds, bad JSON in ext_data, a bad or
// oversized serialized session (204, 9), a reader too slow for its replies
// (--gw-max-outbuf); with --gw-secret: no auth frame, a wrong key (202 and
// 200), a bad auth body; the Register: a wrong secret (nothing sent), a
// garbage line, a line over 64 KiB, no event for 10 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startGw, phpSer, ser, connId, frame, authFrame, openWs, RawConn, waitLog, sleep } from './lib/gw.mjs';
import { call, healthz } from '../integration/lib/http.mjs';

const MAX_FRAME = 4096;
const SECRET = 'bad-input-secret';
let plain; // no secret
let locked; // --gw-secret
const victims = new Map(); // srv -> victim client
let idleReg; // a Register connection that never says anything
let idleOpenedAt;

before(async () => {
  [plain, locked] = await Promise.all([
    startGw({ options: { 'gw-max-frame': MAX_FRAME } }),
    startGw({ secret: SECRET, options: { 'gw-max-outbuf': 262144 } }),
  ]);
  idleReg = await RawConn.connect(plain.registerPort);
  idleOpenedAt = Date.now();
  for (const srv of [plain, locked]) victims.set(srv, (await openWs(srv, 1))[0]);
});
after(async () => {
  idleReg?.destroy();
  for (const c of victims.values()) c.terminate();
  await Promise.all([plain?.stop(), locked?.stop()]);
});

let marks = 0;
/** The victim still gets pushes (inner port and native API) and /healthz answers. */
async function victimOk(srv, why) {
  const v = victims.get(srv);
  const m1 = `after ${why} #${++marks}`;
  await phpSer(srv, [['sendToClient', v.clientId, m1]]);
  assert.equal(await v.nextText(2000), m1, `${why}: the victim still gets an inner-port push`);
  const m2 = `native ${m1}`;
  assert.equal(await call(srv, 'send_to_client', { client_id: v.clientId, data: m2 }), 1);
  assert.equal(await v.nextText(2000), m2, `${why}: the victim still gets a native push`);
  assert.equal(typeof (await healthz(srv)), 'object');
}

/** Sends bytes on a new connection to port; the server must close it, answer nothing, and log. */
async function mustClose(srv, port, bytes, why, { end = false, closeMs = 3000, answer = '' } = {}) {
  const from = srv.stderr().length;
  const conn = await RawConn.connect(port);
  await conn.write(bytes);
  if (end) conn.socket.end();
  const closed = await conn.waitClosed(closeMs);
  const got = conn.buf;
  conn.destroy();
  assert.ok(closed, `${why}: the connection is closed within ${closeMs} ms`);
  assert.equal(got.toString(), answer, `${why}: answered ${JSON.stringify(answer)} (got ${got.toString('hex').slice(0, 80)})`);
  await waitLog(srv, from, /closed/, 2000).catch((e) => {
    throw new Error(`${why}: ${e.message}`);
  });
  await victimOk(srv, why);
}

const q24 = frame({ cmd: 24, ext: '' });

test('inner port: broken frames', async () => {
  await mustClose(plain, plain.innerPort, q24.subarray(0, 10), 'a short header then EOF', { end: true });
  await mustClose(plain, plain.innerPort, frame({ cmd: 24, packLen: 20 }), 'pack_len 20 (< 28)');
  await mustClose(plain, plain.innerPort, frame({ cmd: 24, packLen: 0 }), 'pack_len 0');
  // only the header: the server must not wait for the body it will refuse
  await mustClose(plain, plain.innerPort, frame({ cmd: 5, packLen: MAX_FRAME + 1 }), 'pack_len past --gw-max-frame');
  await mustClose(plain, plain.innerPort, frame({ cmd: 5, packLen: 0xffffffff }), 'pack_len 4 GiB');
  const extPast = frame({ cmd: 15, ext: 'abc' });
  extPast.writeUInt32BE(100, 24);
  await mustClose(plain, plain.innerPort, extPast, 'ext_len past pack_len');
  await mustClose(plain, plain.innerPort, frame({ cmd: 99 }), 'unknown cmd 99');
  await mustClose(plain, plain.innerPort, frame({ cmd: 0 }), 'unknown cmd 0');
  // a good frame first, then a bad one: still closed (and the good one took effect)
  const v = victims.get(plain);
  await mustClose(plain, plain.innerPort, Buffer.concat([frame({ cmd: 12, connectionId: connId(v.clientId), ext: 'vic' }), frame({ cmd: 250 })]), 'a good frame then cmd 250');
  assert.deepEqual(await phpSer(plain, [['getClientIdByUid', 'vic']]), [ser([v.clientId])]);
});

test('inner port: bad JSON in ext_data', async () => {
  for (const [cmd, ext] of [
    [6, '{not json'],
    [14, 'not json'],
    [16, '["a",'],
    [22, '{"group":'],
    [25, '{"fields":'],
    [28, '['],
  ]) {
    await mustClose(plain, plain.innerPort, frame({ cmd, ext, body: 'x' }), `cmd ${cmd} with ext_data ${ext}`);
  }
  assert.deepEqual(await victims.get(plain).drain(100), [], 'nothing of those sends reached the victim');
});

test('inner port: bad and oversized sessions', async () => {
  const v = victims.get(plain);
  const id = connId(v.clientId);
  await phpSer(plain, [['setSession', v.clientId, { keep: 'me' }]]);
  await mustClose(plain, plain.innerPort, frame({ cmd: 204, connectionId: id, ext: 'a:1:{s:1:"a";' }), '204 with a cut serialized session');
  await mustClose(plain, plain.innerPort, frame({ cmd: 204, connectionId: id, ext: 'garbage' }), '204 with garbage');
  await mustClose(plain, plain.innerPort, frame({ cmd: 9, connectionId: id, ext: 'a:2:{s:1:"a";i:1;}' }), '9 with a wrong count');
  await mustClose(plain, plain.innerPort, frame({ cmd: 204, connectionId: id, ext: 's:5:"abc";' }), '204 with a wrong string length');
  // 65536 bytes at most, serialized (this one is 70000 + a few); on the server with the default --gw-max-frame
  const big = `a:1:{s:3:"big";s:70000:"${'x'.repeat(70000)}";}`;
  await mustClose(locked, locked.innerPort, Buffer.concat([authFrame(SECRET), frame({ cmd: 204, connectionId: connId(victims.get(locked).clientId), ext: big })]), 'a session over 65536 bytes (204)');
  await mustClose(locked, locked.innerPort, Buffer.concat([authFrame(SECRET), frame({ cmd: 9, connectionId: connId(victims.get(locked).clientId), ext: big })]), 'a session over 65536 bytes (9)');
  assert.deepEqual(await phpSer(plain, [['getSession', v.clientId]]), [ser({ keep: 'me' })], 'the stored session is unchanged');
  assert.deepEqual(await phpSer(locked, [['getSession', victims.get(locked).clientId]]), ['a:0:{}'], 'the big session was not stored');
});

test('inner port: a reader too slow for its replies is closed past --gw-max-outbuf', async () => {
  const srv = locked;
  const v = victims.get(srv);
  // a 60000-byte session makes each GET_ALL_CLIENT_SESSIONS reply about 60 KB; 600 of them are 36 MB
  await phpSer(srv, [['setSession', v.clientId, { pad: 'p'.repeat(60000) }]]);
  const from = srv.stderr().length;
  const conn = await RawConn.connect(srv.innerPort);
  conn.socket.pause();
  const q = frame({ cmd: 10 });
  await conn.write(Buffer.concat([authFrame(SECRET), ...Array.from({ length: 600 }, () => q)]));
  await waitLog(srv, from, /\S/, 5000);
  conn.socket.resume();
  assert.ok(await conn.waitClosed(10000), 'closed as a slow reader');
  assert.ok(conn.buf.length < 36 * 1000 * 1000, `it did not get every reply (${conn.buf.length} bytes)`);
  conn.destroy();
  await phpSer(srv, [['setSession', v.clientId, {}]]);
  await victimOk(srv, 'a slow reader');
});

test('inner port with --gw-secret: no auth, a wrong key, a bad auth body', async () => {
  const v = victims.get(locked);
  const id = connId(v.clientId);
  await mustClose(locked, locked.innerPort, q24, 'a query before auth');
  await mustClose(locked, locked.innerPort, frame({ cmd: 5, connectionId: id, body: 'sneak' }), 'a send before auth');
  await mustClose(locked, locked.innerPort, Buffer.concat([authFrame('wrong'), q24]), '202 with a wrong key');
  await mustClose(locked, locked.innerPort, Buffer.concat([authFrame(''), q24]), '202 with an empty key');
  await mustClose(locked, locked.innerPort, Buffer.concat([frame({ cmd: 202, body: '{"secret_key":' }), q24]), '202 with bad JSON');
  await mustClose(locked, locked.innerPort, frame({ cmd: 200, body: JSON.stringify({ worker_key: 'W:0', secret_key: 'wrong' }) }), '200 with a wrong key');
  await mustClose(locked, locked.innerPort, Buffer.concat([frame({ cmd: 201 }), q24]), 'a ping before auth');
  assert.deepEqual(await v.drain(100), [], 'the send before auth did not arrive');
  // the right key works on the same port
  const conn = await RawConn.connect(locked.innerPort);
  await conn.write(Buffer.concat([authFrame(SECRET), q24]));
  const r = await conn.read((b) => (b.length >= 4 && b.length >= 4 + b.readUInt32BE(0) ? { value: b, consumed: b.length } : null), 3000, 'a reply');
  assert.equal(r.subarray(4).toString(), 'i:1;');
  conn.destroy();
});

test('Register: a wrong secret, a garbage line, a line over 64 KiB; then no event for 10 s', async () => {
  const wc = (k) => `${JSON.stringify({ event: 'worker_connect', secret_key: k })}\n`;
  await mustClose(locked, locked.registerPort, wc('wrong'), 'Register: worker_connect with a wrong key');
  await mustClose(locked, locked.registerPort, wc(''), 'Register: worker_connect with no key');
  await mustClose(locked, locked.registerPort, `${JSON.stringify({ event: 'gateway_connect', address: '127.0.0.1:1', secret_key: 'wrong' })}\n`, 'Register: gateway_connect with a wrong key');
  // a line that is not an event gets one text line first, as GatewayWorker's Register answers it
  const bad = 'Bad request for Register service.\n';
  await mustClose(plain, plain.registerPort, 'hello there\n', 'Register: a garbage line', { answer: bad });
  await mustClose(plain, plain.registerPort, Buffer.from([0xff, 0x00, 0xfe, 0x0a]), 'Register: binary junk', { answer: bad });
  await mustClose(plain, plain.registerPort, 'x'.repeat(70 * 1024), 'Register: a line over 64 KiB');
  // the Register still answers
  const conn = await RawConn.connect(locked.registerPort);
  await conn.write(wc(SECRET));
  const line = await conn.read((b) => (b.includes(10) ? { value: b, consumed: b.length } : null), 3000, 'a broadcast_addresses line');
  assert.equal(line.toString(), `{"event":"broadcast_addresses","addresses":["${locked.inner}"]}\n`);
  conn.destroy();

  // the idle connection: open until about 10 s, closed after
  const elapsed = Date.now() - idleOpenedAt;
  if (elapsed < 8500) assert.equal(idleReg.ended, false, `the idle Register connection is still open after ${elapsed} ms`);
  const from = plain.stderr().length;
  const closed = await idleReg.waitClosed(Math.max(0, idleOpenedAt + 13000 - Date.now()));
  assert.ok(closed, 'a Register connection with no event is closed after 10 s');
  const at = idleReg.closedAt - idleOpenedAt;
  assert.ok(at >= 9500, `not before 10 s (closed after ${at} ms)`);
  assert.equal(idleReg.buf.length, 0, 'nothing sent to it');
  await waitLog(plain, Math.min(from, plain.stderr().length), /\S/, 2000).catch(() => {
    // the log line may have come before `from` was taken; look at all of stderr then
    assert.match(plain.stderr(), /regist/i, 'a log line about the Register connection');
  });
  await victimOk(plain, 'the idle Register connection');
});
