// The late-commit interleaving of issue 8, forced in PostgreSQL itself: a
// psql session opens a transaction and calls the backend's own send function
// (chatd_send, created by the store's migrations) for conversation X, so it
// holds message id N and X's counter row, and keeps the transaction open.
// Meanwhile chatd stores a message of conversation Y: it gets an id above N
// and commits first (and is not held up: Y's counter is another row). The
// recipient syncs and holds Y's message. Then the held transaction commits:
// the next cursor sync (POST /chat/sync) returns X's message, while the old
// id cursor (GET /chat/sync?after=<largest id seen>) skips it for good.
//
// Needs CHATD_TEST_STORE=<postgres URI>; skipped on SQLite (one writer: ids commit in order).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ON_PG, pgOnly, startServer } from './lib/server.mjs';
import { must, registerAll, send, uname } from './lib/chat.mjs';
import { syncCursors } from './lib/multinode.mjs';
import { PsqlSession } from './lib/pg.mjs';

const srv = ON_PG ? await startServer({ options: { 'login-rate': 1000 } }) : null;
after(async () => {
  if (srv) await srv.stop();
});

test('a transaction that took its id first but commits last is still returned by the cursor sync', pgOnly(), async (t) => {
  const [rcpt, x, y] = await registerAll(srv, [uname('lr'), uname('lx'), uname('ly')]);
  const x1 = await send(srv, x, rcpt, 'x one', { client_msg_id: 'x1' });
  const y1 = await send(srv, y, rcpt, 'y one', { client_msg_id: 'y1' });
  assert.deepEqual([x1.seq, y1.seq], [1, 1], 'the first message of each conversation has seq 1');

  // The client is up to date: its cursors, and the old id cursor.
  let data = await syncCursors(srv, rcpt, {});
  const cursors = {};
  for (const c of data.conversations) cursors[c.userid] = c.messages[c.messages.length - 1].seq;
  assert.deepEqual(cursors, { [x.id]: 1, [y.id]: 1 });
  const oldAfter = Math.max(x1.id, y1.id);

  // Transaction A: holds conversation X's counter and message id N, uncommitted.
  const held = new PsqlSession(srv.store);
  t.after(() => held.close());
  await held.run('BEGIN;');
  const out = await held.run(`SELECT o_status, o_id, o_seq, o_dup FROM chatd_send(${x.id}, ${rcpt.id}, 'text', 'x late', ${Date.now()}, 'x-late');`);
  const [status, idN, seqN, dup] = out.split('|');
  assert.deepEqual([status, seqN, dup], ['0', '2', 'f'], `chatd_send in the held transaction: ${out}`);
  const n = Number(idN);
  assert.ok(n > oldAfter, `the held message took id ${n}`);

  // Transaction B: chatd stores Y's message meanwhile; it commits first, with a larger id.
  const t0 = Date.now();
  const y2 = await send(srv, y, rcpt, 'y two', { client_msg_id: 'y2' });
  t.diagnostic(`Y's send took ${Date.now() - t0} ms while X's conversation was held`);
  assert.ok(y2.id > n, `Y's message id ${y2.id} is above the held id ${n}`);
  assert.equal(y2.seq, 2);

  // The client syncs between the two commits: it gets Y's message, not the uncommitted one.
  data = await syncCursors(srv, rcpt, cursors);
  assert.deepEqual(
    data.conversations.map((c) => [c.userid, c.messages.map((m) => m.id)]),
    [[y.id, [y2.id]]],
    'cursor sync between the commits: only Y has something new',
  );
  cursors[y.id] = 2;
  const oldPage = await must(srv, 'GET', `/chat/sync?after=${oldAfter}`, { token: rcpt.token });
  assert.deepEqual(oldPage.map((m) => m.id), [y2.id], 'the old id sync sees the same');
  const oldCursor = y2.id; // where an id-cursor client continues from

  // Transaction A commits last.
  await held.run('COMMIT;');
  await held.close();

  data = await syncCursors(srv, rcpt, cursors);
  assert.equal(data.conversations.length, 1, `after the late commit: ${JSON.stringify(data)}`);
  const [conv] = data.conversations;
  assert.equal(conv.userid, x.id);
  assert.deepEqual(
    conv.messages.map((m) => [m.id, m.seq, m.from_id, m.data, m.client_msg_id]),
    [[n, 2, x.id, 'x late', 'x-late']],
    'the cursor sync returns the message that committed late',
  );
  // The old id cursor has moved past id N: it never returns the message.
  const skipped = await must(srv, 'GET', `/chat/sync?after=${oldCursor}`, { token: rcpt.token });
  assert.deepEqual(skipped, [], `GET /chat/sync?after=${oldCursor} skips message ${n} (committed after ${oldCursor} was read)`);
  // A retry of the late message through chatd answers with it: stored once.
  const again = await send(srv, x, rcpt, 'x late', { client_msg_id: 'x-late' });
  assert.deepEqual([again.id, again.seq], [n, 2], 'the retry of x-late answers with the committed message');
});
