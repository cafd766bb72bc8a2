// WebSocket handshake: a valid upgrade (101, accept key, no extension, init
// first), refusals (400 with a reason, 426 with Sec-WebSocket-Version: 13,
// 403 for --ws-origins), and client_id format and uniqueness.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, waitFor } from './lib/server.mjs';
import { RawConn, rawRequest, healthz } from './lib/http.mjs';
import { RawWs, WsClient, OP, handshakeRequest, acceptFor, newKey, CLIENT_ID_RE } from './lib/ws.mjs';

const GOOD = 'http://good.example';
const [srv, open] = await Promise.all([
  startServer({ options: { 'ws-origins': `${GOOD},http://other.example`, 'echo-path': '/echo' } }),
  startServer(),
]);
after(() => Promise.all([srv.stop(), open.stop()]));

const bystander = await WsClient.open(srv, { origin: GOOD });
after(() => bystander.terminate());

async function handshake(s, opts) {
  const { response } = await rawRequest(s.port, handshakeRequest(opts));
  return response;
}

describe('a valid handshake', () => {
  test('101 with the accept key, no extension, then init', async () => {
    const key = newKey();
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(
        handshakeRequest({
          headers: {
            'Sec-WebSocket-Key': key,
            Origin: GOOD,
            'Sec-WebSocket-Extensions': 'permessage-deflate; client_max_window_bits',
          },
        }),
      );
      const r = await c.readResponse();
      assert.equal(r.status, 101);
      assert.equal((r.headers.upgrade || '').toLowerCase(), 'websocket');
      assert.match(r.headers.connection || '', /\bupgrade\b/i);
      assert.equal(r.headers['sec-websocket-accept'], acceptFor(key));
      assert.equal(r.headers['sec-websocket-extensions'], undefined, 'no extension negotiated');
      const ws = new RawWs(c, r);
      const f = await ws.readFrame();
      assert.equal(f.opcode, OP.TEXT);
      assert.equal(f.fin, true);
      const init = JSON.parse(f.payload.toString());
      assert.deepEqual(Object.keys(init).sort(), ['bind_nonce', 'client_id', 'type']);
      assert.equal(init.type, 'init');
      assert.match(init.client_id, CLIENT_ID_RE);
      assert.match(init.bind_nonce, /^[A-Za-z0-9_-]{22}$/, 'bind_nonce: 128 bits, base64url');
      assert.notEqual(init.bind_nonce, init.client_id);
    } finally {
      c.destroy();
    }
  });

  test('header names and tokens are case-insensitive; Connection may list tokens', async () => {
    const key = newKey();
    const req =
      `GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n` +
      `sec-websocket-key: ${key}\r\nsec-websocket-version: 13\r\norigin: ${GOOD}\r\n\r\n`;
    const c = await RawConn.connect(srv.port);
    try {
      await c.write(req);
      const r = await c.readResponse();
      assert.equal(r.status, 101);
      assert.equal(r.headers['sec-websocket-accept'], acceptFor(key));
    } finally {
      c.destroy();
    }
  });

  test('the ws package connects (and its permessage-deflate offer is declined)', async () => {
    const c = await WsClient.open(srv, { origin: GOOD });
    try {
      assert.match(c.clientId, CLIENT_ID_RE);
      assert.equal(c.ws.extensions, '', 'no extension accepted');
      c.sendJson({ type: 'ping' });
      assert.deepEqual(await c.nextJson(), { type: 'pong' });
    } finally {
      await c.close();
    }
  });

  test('client_ids are 24 URL-safe characters and unique', async () => {
    const clients = await Promise.all(Array.from({ length: 40 }, () => WsClient.open(open)));
    try {
      const ids = clients.map((c) => c.clientId);
      for (const id of ids) assert.match(id, CLIENT_ID_RE);
      assert.equal(new Set(ids).size, ids.length, 'all ids distinct');
      // 18 bytes: a 2-byte node tag (the first 2 characters) and 128 random bits.
      for (const id of ids) assert.equal(Buffer.from(id, 'base64url').length, 18, `${id} decodes to 18 bytes`);
      // one node: every id starts with the same tag, the rest is unique
      assert.equal(new Set(ids.map((id) => id.slice(0, 2))).size, 1, 'one node tag');
      const h = await healthz(open);
      assert.equal(h.clients, 40);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });
});

describe('refusals', () => {
  const key = newKey;
  const cases = [
    ['POST instead of GET', { method: 'POST', headers: { 'Content-Length': '0' } }, 400, /GET|method/i],
    ['no Upgrade header', { headers: { Upgrade: null } }, 400, /upgrade/i],
    ['Upgrade: h2c', { headers: { Upgrade: 'h2c' } }, 400, /upgrade/i],
    ['no Connection header', { headers: { Connection: null } }, 400, /connection|upgrade/i],
    ['Connection without upgrade', { headers: { Connection: 'keep-alive' } }, 400, /connection|upgrade/i],
    ['no Sec-WebSocket-Key', { headers: { 'Sec-WebSocket-Key': null } }, 400, /key/i],
    ['Sec-WebSocket-Key not base64', { headers: { 'Sec-WebSocket-Key': '!!!!!!!!!!!!!!!!!!!!!!==' } }, 400, /key/i],
    ['Sec-WebSocket-Key of 15 bytes', { headers: { 'Sec-WebSocket-Key': Buffer.alloc(15, 1).toString('base64') } }, 400, /key/i],
    ['Sec-WebSocket-Key of 17 bytes', { headers: { 'Sec-WebSocket-Key': Buffer.alloc(17, 1).toString('base64') } }, 400, /key/i],
    ['Sec-WebSocket-Key "abc"', { headers: { 'Sec-WebSocket-Key': 'abc' } }, 400, /key/i],
    ['a request body', { headers: { 'Content-Length': '5' }, body: 'hello' }, 400, /body/i],
  ];
  for (const [name, opts, status, reason] of cases) {
    test(`${name} -> ${status}`, async () => {
      const r = await handshake(srv, { ...opts, headers: { Origin: GOOD, 'Sec-WebSocket-Key': key(), ...opts.headers } });
      assert.equal(r.status, status, `status (body: ${r.body.toString().slice(0, 200)})`);
      assert.match(r.body.toString(), reason, 'the body says why');
    });
  }

  for (const version of ['8', '12', '14', 'abc']) {
    test(`Sec-WebSocket-Version: ${version} -> 426 with Sec-WebSocket-Version: 13`, async () => {
      const r = await handshake(srv, { headers: { Origin: GOOD, 'Sec-WebSocket-Version': version } });
      assert.equal(r.status, 426);
      assert.equal(r.headers['sec-websocket-version'], '13');
    });
  }

  test('missing Sec-WebSocket-Version -> 426 (or 400)', async () => {
    const r = await handshake(srv, { headers: { Origin: GOOD, 'Sec-WebSocket-Version': null } });
    assert.ok([400, 426].includes(r.status), `status ${r.status}`);
    if (r.status === 426) assert.equal(r.headers['sec-websocket-version'], '13');
  });

  test('Origin not in --ws-origins -> 403', async () => {
    for (const origin of ['http://evil.example', 'http://good.example:8080', 'https://good.example']) {
      const r = await handshake(srv, { headers: { Origin: origin } });
      assert.equal(r.status, 403, `status for ${origin}`);
    }
    await assert.rejects(WsClient.open(srv, { origin: 'http://evil.example' }), (e) => e.status === 403);
  });

  test('every origin in --ws-origins is allowed', async () => {
    for (const origin of [GOOD, 'http://other.example']) {
      const r = await handshake(srv, { headers: { Origin: origin } });
      assert.equal(r.status, 101, `status for ${origin}`);
    }
  });

  test('without --ws-origins any Origin is allowed', async () => {
    const c = await WsClient.open(open, { origin: 'http://whatever.example' });
    assert.match(c.clientId, CLIENT_ID_RE);
    await c.close();
  });

  test('an upgrade on an unknown path is 404', async () => {
    const r = await handshake(srv, { path: '/not-a-socket', headers: { Origin: GOOD } });
    assert.equal(r.status, 404);
  });

  test('the echo endpoint is off by default', async () => {
    const r = await handshake(open, { path: '/echo' });
    assert.equal(r.status, 404);
  });
});

test('refused handshakes leave no client behind and the bystander still works', async () => {
  assert.equal(bystander.closeInfo, null);
  await bystander.pingPong();
  const h = await waitFor(async () => {
    const x = await healthz(srv);
    return x.clients === 1 ? x : null;
  });
  assert.ok(h, 'only the bystander is left as a client');
});
