// BusinessWorkers (php/worker.php) on chatd's inner port, with a secret
// (--gw-secret): a worker asks the Register, connects with cmd 200, and gets
// cmd 1 and 205 (get/server/cookie) after each client's handshake, 3 per
// message (payload as the body, flag 0x01) and 4 at close, each carrying the
// client's address, connection id, the ports and its current session. Its
// replies go back as commands; its session changes as 204; it reads a session
// over a one-off 202 connection. One worker per client, sticky, least
// connections first. While a worker is connected chatd does not interpret
// client messages; with none, native behaviour.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startGw, phpSer, ser, connId, PhpWorker, WsClient, drainTexts, sleep, waitUntil } from './lib/gw.mjs';
import { call } from '../integration/lib/http.mjs';

const SECRET = 'worker-secret-xyz';

async function setup(t, cfg = {}) {
  const srv = await startGw({ secret: SECRET, ...cfg });
  const clients = [];
  const workers = [];
  t.after(async () => {
    for (const c of clients) c.terminate();
    for (const w of workers) await w.stop();
    await srv.stop();
  });
  const open = async (opts) => {
    const c = await WsClient.open(srv, opts);
    clients.push(c);
    return c;
  };
  const worker = async (o = {}) => {
    const w = await PhpWorker.start(srv, o);
    workers.push(w);
    return w;
  };
  return { srv, open, worker, clients, workers };
}

const json = (c) => c.nextJson(3000);

test('no worker: native behaviour; with a worker: events with headers, sessions, replies by commands', async (t) => {
  const { srv, open, worker } = await setup(t);
  // no worker connected: chatd answers its own protocol
  const n = await open();
  n.sendJson({ type: 'ping' });
  assert.deepEqual(await json(n), { type: 'pong' });

  const w = await worker();
  const wsPath = '/ws?foo=bar&n=1';
  const c = await open({ path: wsPath, init: true, headers: { Cookie: 'sid=abc; x=y' } });
  // init (chatd's) came first; then the worker's onConnect greeting
  assert.deepEqual(await json(c), { type: 'init_php', client_id: c.clientId });
  const conn = await w.waitFor((l) => l.ev === 'connect' && l.client_id === c.clientId, 3000, 'connect event');
  const wsc = await w.waitFor((l) => l.ev === 'websocket_connect' && l.client_id === c.clientId, 3000, 'websocket_connect event');
  for (const l of [conn, wsc]) {
    assert.equal(l.local, srv.inner, 'local_ip/local_port: the announced inner address');
    assert.equal(l.gateway_port, srv.port, 'gateway_port: the public port');
    assert.equal(l.connection_id, connId(c.clientId));
    assert.match(l.client, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(l.client, '127.0.0.1:0');
    assert.equal(l.session, '', 'no session yet: empty ext_data');
    assert.equal(l.gateway, srv.inner);
  }
  assert.equal(wsc.data_ok, true, `205 body is a serialized array: ${JSON.stringify(wsc.body)}`);
  assert.deepEqual(wsc.data.get, { foo: 'bar', n: '1' });
  assert.deepEqual(wsc.data.cookie, { sid: 'abc', x: 'y' });
  // `server` as GatewayWorker 4.0.0 builds it (observed): the request line's three parts, every
  // header as HTTP_* in arrival order with SERVER_NAME and SERVER_PORT right after HTTP_HOST,
  // QUERY_STRING last; no REMOTE_ADDR (the worker has the address in the frame header)
  const server = wsc.data.server;
  assert.equal(typeof server, 'object');
  const keys = Object.keys(server);
  assert.deepEqual(keys.slice(0, 3), ['REQUEST_METHOD', 'REQUEST_URI', 'SERVER_PROTOCOL']);
  assert.equal(keys[keys.length - 1], 'QUERY_STRING');
  const host = keys.indexOf('HTTP_HOST');
  assert.deepEqual(keys.slice(host, host + 3), ['HTTP_HOST', 'SERVER_NAME', 'SERVER_PORT']);
  assert.equal(server.SERVER_NAME, '127.0.0.1');
  assert.equal(server.SERVER_PORT, server.HTTP_HOST.split(':')[1], 'the port, as a string');
  assert.equal(server.REQUEST_METHOD, 'GET');
  assert.equal(server.REQUEST_URI, wsPath);
  assert.equal(server.QUERY_STRING, 'foo=bar&n=1');
  assert.equal(server.HTTP_COOKIE, 'sid=abc; x=y');
  assert.equal(server.REMOTE_ADDR, undefined);
  assert.deepEqual(w.eventsOf(c.clientId).map((l) => l.cmd), [1, 205], 'ON_CONNECT then ON_WEBSOCKET_CONNECT');
  // the earlier client (before the worker) is not reported
  assert.deepEqual(w.eventsOf(n.clientId), []);

  // a message: cmd 3, the payload as body with flag 0x01; the reply comes back through SEND_TO_ONE
  const msg = JSON.stringify({ cmd: 'echo', data: 'héllo' });
  c.send(msg);
  assert.deepEqual(await json(c), { type: 'echo', data: 'héllo' });
  const ev = await w.waitFor((l) => l.ev === 'message' && l.client_id === c.clientId, 3000, 'message event');
  assert.equal(ev.body, msg);
  assert.ok(ev.flag & 1, `flag 0x01 on ON_MESSAGE (${ev.flag})`);
  // chatd does not interpret messages while a worker is connected
  c.sendJson({ type: 'ping' });
  assert.deepEqual(await json(c), { type: 'unknown', data: '{"type":"ping"}' });
  assert.deepEqual(await drainTexts(c, 200), [], 'no pong from chatd');

  // sessions: written back with 204, attached to the next event, readable over a 202 connection and by GatewayClient
  c.sendJson({ cmd: 'setsession', key: 'a', value: 1 });
  assert.deepEqual(await json(c), { type: 'setsession', ok: true });
  c.sendJson({ cmd: 'whoami' });
  assert.deepEqual(await json(c), { type: 'whoami', client_id: c.clientId, session: { a: 1 } });
  const who = await w.waitFor((l) => l.ev === 'message' && l.client_id === c.clientId && l.body.includes('whoami'), 3000, 'the whoami event');
  assert.equal(who.session, 'a:1:{s:1:"a";i:1;}', 'ext_data of the event: the stored session string');
  c.sendJson({ cmd: 'getsession' });
  assert.deepEqual(await json(c), { type: 'getsession', session: { a: 1 } });
  assert.deepEqual(await phpSer(srv, [['getSession', c.clientId]]), [ser({ a: 1 })]);
  await phpSer(srv, [['setSession', c.clientId, { b: 'two' }]]);
  c.sendJson({ cmd: 'whoami' });
  assert.deepEqual(await json(c), { type: 'whoami', client_id: c.clientId, session: { b: 'two' } }, 'a session set by GatewayClient reaches the next event');

  // commands from the worker: bind, join, send to a group
  c.sendJson({ cmd: 'bind', uid: 'w1' });
  assert.deepEqual(await json(c), { type: 'bound', uid: 'w1' });
  assert.deepEqual(await phpSer(srv, [['getClientIdByUid', 'w1']]), [ser([c.clientId])]);
  const c2 = await open();
  assert.equal((await json(c2)).type, 'init_php');
  for (const x of [c, c2]) {
    x.sendJson({ cmd: 'join', group: 'wg' });
    assert.deepEqual(await json(x), { type: 'joined', group: 'wg' });
  }
  c2.sendJson({ cmd: 'sendgroup', group: 'wg', data: 'to the group' });
  assert.equal(await c.nextText(), 'to the group');
  assert.equal(await c2.nextText(), 'to the group');
  c.sendJson({ cmd: 'senduid', uid: 'w1', data: 'to w1' });
  assert.equal(await c.nextText(), 'to w1');
  // the native API still reaches these clients
  assert.equal(await call(srv, 'send_to_uid', { uid: 'w1', data: 'native' }), 1);
  assert.equal(await c.nextText(), 'native');

  // close: cmd 4 with the session
  c2.close();
  const cl = await w.waitFor((l) => l.ev === 'close' && l.client_id === c2.clientId, 3000, 'close event');
  assert.equal(cl.cmd, 4);
  assert.deepEqual(w.eventsOf(c2.clientId).map((l) => l.cmd), [1, 205, 3, 3, 4]);

  // a kick from the worker: the message, then the socket closes
  c.sendJson({ cmd: 'kick', data: 'kicked' });
  assert.equal(await c.nextText(), 'kicked');
  await c.closed;
  await w.waitFor((l) => l.ev === 'close' && l.client_id === c.clientId, 3000, 'close event after kick');

  // the worker goes: native behaviour again
  await w.stop();
  await sleep(200);
  const c3 = await open();
  c3.sendJson({ type: 'ping' });
  assert.deepEqual(await json(c3), { type: 'pong' });
  n.sendJson({ type: 'ping' });
  assert.deepEqual(await json(n), { type: 'pong' });
});

test('two workers: each client sticks to one, least connections first', async (t) => {
  const { open, worker } = await setup(t);
  const w1 = await worker({ index: 0 });
  const w2 = await worker({ index: 1 });
  const cs = [];
  for (let i = 0; i < 4; i++) {
    const c = await open();
    assert.equal((await json(c)).type, 'init_php');
    cs.push(c);
  }
  const owner = (c) => [w1, w2].filter((w) => w.eventsOf(c.clientId).length > 0);
  // the worker's stdout may lag behind its reply to the client
  await waitUntil(() => cs.every((c) => owner(c).length > 0), { what: 'a connect event of every client' });
  await sleep(100);
  for (const c of cs) assert.equal(owner(c).length, 1, 'events of a client go to one worker');
  const on1 = cs.filter((c) => owner(c)[0] === w1).length;
  assert.equal(on1, 2, 'least connections first: two clients each');
  for (let r = 0; r < 3; r++) {
    for (const c of cs) {
      c.sendJson({ cmd: 'echo', data: r });
      assert.deepEqual(await json(c), { type: 'echo', data: r });
    }
  }
  for (const c of cs) {
    const [w] = owner(c);
    await waitUntil(() => w.eventsOf(c.clientId).length >= 5, { what: 'the message events' });
    assert.equal(owner(c).length, 1, 'sticky');
    assert.deepEqual(w.eventsOf(c.clientId).map((l) => l.cmd), [1, 205, 3, 3, 3]);
  }
});

test('worker_connect with the wrong secret is refused; a worker with it gets no events', async (t) => {
  const { srv, open } = await setup(t);
  const bad = new PhpWorker({ register: srv.register, secret: 'nope', name: 'Bad', index: 0 });
  t.after(() => bad.stop());
  await bad.waitFor((l) => l.ev === 'register_closed', 3000, 'the Register closing a wrong secret');
  assert.equal(bad.lines.filter((l) => l.ev === 'addresses').length, 0);
  // clients are served natively (no worker), and the refused worker hears of nothing
  const c = await open();
  c.sendJson({ type: 'ping' });
  assert.deepEqual(await json(c), { type: 'pong' });
  assert.equal(bad.lines.filter((l) => l.ev === 'connect').length, 0);
});
