// The chat service on GatewayWorker client_ids (issue #10): with --gw-inner a
// client_id is 20 hex characters instead of 24 base64url ones, and every part
// of the chat service that keeps or looks up client_ids (socket bind, HTTP
// bind with the nonce, the table that logout uses to close a token's
// sockets) must take them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, freePort } from './lib/server.mjs';
import { register, ChatSocket, req, uname } from './lib/chat.mjs';

const inner = await freePort();
const srv = await startServer({ options: { 'gw-inner': `127.0.0.1:${inner}` } });
after(() => srv.stop());

test('chat on 20-hex ids: socket bind, a message, HTTP bind with the nonce, logout closes the bound socket', async (t) => {
  const a = await register(srv, uname('gwa'));
  const b = await register(srv, uname('gwb'));
  const sa = await ChatSocket.bound(srv, a, t);
  const sb = await ChatSocket.bound(srv, b, t);
  assert.match(sa.clientId, /^[0-9a-f]{20}$/);
  assert.equal(sa.clientId.slice(0, 12), `7f000001${inner.toString(16).padStart(4, '0')}`, 'the inner address');

  sa.sendMsg(b, 'hi', { client_msg_id: 'gw-1' });
  const got = await sb.expect('message');
  assert.equal(got.message?.data ?? got.data, 'hi');

  const c = await ChatSocket.open(srv, t);
  const r = await req(srv, 'POST', '/chat/bind', { token: a.token, body: { client_id: c.clientId, bind_nonce: c.bindNonce } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.data.client_id, c.clientId);

  const out = await req(srv, 'POST', '/user/logout', { token: a.token });
  assert.equal(out.status, 200);
  let m;
  do m = await c.next(3000);
  while (m.type !== 'error');
  assert.equal(m.code, 'logged_out', 'the socket bound over HTTP is told, then closed');
});
