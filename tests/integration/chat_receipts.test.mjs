// Read receipts are news only when something was read (issue #13, item 11):
// POST /chat/read for a user you never talked to, or a read with nothing new,
// pushes nothing to anyone; a read of new messages pushes one receipt to the
// peer and one read to the reader's other devices.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { ChatSocket, must, registerAll, send, uname } from './lib/chat.mjs';

const srv = await startServer();
after(() => srv.stop());

const read = (user, peer, body = {}) => must(srv, 'POST', '/chat/read', { token: user.token, body: { userid: peer.id, ...body } });

test('a read of a stranger pushes nothing to them, however often', async (t) => {
  const [reader, stranger] = await registerAll(srv, [uname('rr'), uname('rs')]);
  const target = await ChatSocket.bound(srv, stranger, t);
  const other = await ChatSocket.bound(srv, reader, t);
  for (let i = 0; i < 20; i++) assert.deepEqual(await read(reader, stranger), { total: 0 });
  await target.quiet('(no conversation: no receipt)');
  await other.quiet('(no conversation: no read on the reader\'s devices)');
});

test('only a read that reads something pushes, once', async (t) => {
  const [a, b] = await registerAll(srv, [uname('ra'), uname('rb')]);
  const sa = await ChatSocket.bound(srv, a, t);
  const sa2 = await ChatSocket.bound(srv, a, t);
  const sb = await ChatSocket.bound(srv, b, t);

  // a wrote to b; b never wrote to a: a's reads read nothing.
  const m1 = await send(srv, a, b, 'hello b');
  assert.deepEqual(await sb.next(), { type: 'message', message: m1 });
  for (const s of [sa, sa2]) assert.deepEqual(await s.next(), { type: 'message', message: m1 });
  for (let i = 0; i < 5; i++) assert.deepEqual(await read(a, b), { total: 0 });
  await sb.quiet('(a read nothing)');
  await sa.quiet();
  await sa2.quiet();

  // b reads a's message: one receipt to a's devices, one read to b's (none here besides sb, which named itself).
  assert.deepEqual(await read(b, a, { client_id: sb.clientId }), { total: 0 });
  for (const s of [sa, sa2]) assert.deepEqual(await s.next(), { type: 'receipt', userid: b.id, last_read_id: m1.id });
  // Again and again: nothing new, nothing pushed.
  for (let i = 0; i < 5; i++) assert.deepEqual(await read(b, a), { total: 0 });
  for (const s of [sa, sa2, sb]) await s.quiet('(repeated read)');

  // A new message makes the next read news again.
  const m2 = await send(srv, a, b, 'again');
  assert.deepEqual(await sb.next(), { type: 'message', message: m2 });
  assert.deepEqual(await sa2.next(), { type: 'message', message: m2 });
  assert.deepEqual(await sa.next(), { type: 'message', message: m2 });
  assert.deepEqual(await read(b, a), { total: 0 });
  assert.deepEqual(await sb.next(), { type: 'read', userid: a.id, total: 0 });
  for (const s of [sa, sa2]) assert.deepEqual(await s.next(), { type: 'receipt', userid: b.id, last_read_id: m2.id });
  for (const s of [sa, sa2, sb]) await s.quiet();
});
