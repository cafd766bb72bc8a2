// The sequence model (docs/ARCHITECTURE.md "Sequence model", docs/API.md):
// every message carries seq, its position in its conversation, 1..n without
// holes, independent between conversations, kept by duplicates and across a
// restart; /chat/list carries last_seq; POST /chat/sync answers exactly the
// messages after each conversation's cursor, bounded by limit with `more`.
// Nothing here depends on the storage backend: ids are only compared, never
// predicted, so the suite runs unchanged on SQLite and PostgreSQL.
import { test, after, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  ChatSocket,
  assertMessageShape,
  byKey,
  fails,
  get,
  historyAll,
  must,
  ok,
  post,
  registerAll,
  req,
  restartServer,
  send,
  syncAll,
  syncCursorsAll,
  uname,
} from './lib/chat.mjs';

const PAGE = 6;
const srv = await startServer({ options: { 'page-limit': PAGE, 'login-rate': 1000 } });
let srv2 = null;
after(async () => {
  if (srv2) await srv2.stop();
  await srv.stop();
});

const cursorSync = (u, body) => post(srv, '/chat/sync', body, { token: u.token });
const seqs = (msgs) => msgs.map((m) => m.seq);
const oneTo = (n, from = 1) => Array.from({ length: n - from + 1 }, (_, i) => from + i);
/** The messages of the pair (a, b) among msgs, in seq order. */
const pairOf = (msgs, a, b) =>
  byKey(
    msgs.filter((m) => (m.from_id === a.id && m.to_id === b.id) || (m.from_id === b.id && m.to_id === a.id)),
    'seq',
  );

describe('seq numbering', () => {
  test('1..n per conversation in both directions, independent between conversations, ordered like ids', async () => {
    const [alice, bob, carol] = await registerAll(srv, [uname('sa'), uname('sb'), uname('sc')]);
    const ab = [];
    const ac = [];
    for (let i = 0; i < 5; i++) {
      ab.push(await send(srv, i % 2 ? bob : alice, i % 2 ? alice : bob, `ab ${i}`));
      if (i < 3) ac.push(await send(srv, i % 2 ? carol : alice, i % 2 ? alice : carol, `ac ${i}`));
    }
    for (const m of [...ab, ...ac]) assertMessageShape(m);
    assert.deepEqual(seqs(ab), [1, 2, 3, 4, 5], 'alice-bob, whoever sends');
    assert.deepEqual(seqs(ac), [1, 2, 3], 'alice-carol starts at 1 on its own');
    // History and the chat list say the same.
    assert.deepEqual(await historyAll(srv, bob, alice.id, 2), [...ab].reverse());
    const list = await must(srv, 'GET', '/chat/list', { token: alice.token });
    assert.deepEqual(
      list.map((e) => [e.userid, e.last_message_id, e.last_seq]),
      [
        [bob.id, ab[4].id, 5],
        [carol.id, ac[2].id, 3],
      ],
    );
    const bobList = await must(srv, 'GET', '/chat/list', { token: bob.token });
    assert.deepEqual(bobList.map((e) => e.last_seq), [5], "bob's side of the same conversation");
  });

  test('concurrent senders on both sides, over HTTP and sockets: every seq once, no hole, seq order = id order', async (t) => {
    const [alice, bob] = await registerAll(srv, [uname('ca'), uname('cb')]);
    const sa = await ChatSocket.bound(srv, alice, t);
    const N = 40;
    const acks = [];
    for (let i = 0; i < N / 2; i++) sa.sendMsg(bob, `ws ${i}`, { client_msg_id: `ws-${i}` });
    const http = await Promise.all(oneTo(N / 2).map((i) => send(srv, i % 2 ? alice : bob, i % 2 ? bob : alice, `http ${i}`)));
    while (acks.length < N / 2) {
      const m = await sa.next();
      if (m.type === 'ack') acks.push(m.message);
    }
    const all = [...http, ...acks];
    assert.deepEqual(byKey(all, 'seq').map((m) => m.seq), oneTo(N), 'seq 1..N, each once');
    assert.deepEqual(
      byKey(all, 'seq').map((m) => m.id),
      byKey(all, 'id').map((m) => m.id),
      'within a conversation seq order is id order',
    );
    const stored = await historyAll(srv, alice, bob.id, PAGE);
    assert.deepEqual(byKey(stored, 'seq'), byKey(all, 'seq'), 'stored as answered');
  });

  test('push and ack carry the stored seq', async (t) => {
    const [alice, bob] = await registerAll(srv, [uname('pa'), uname('pb')]);
    const sa = await ChatSocket.bound(srv, alice, t);
    const sb = await ChatSocket.bound(srv, bob, t);
    const m1 = await send(srv, alice, bob, 'over http');
    const push1 = await sb.expect('message');
    assert.deepEqual(push1.message, m1);
    assert.equal(m1.seq, 1);
    assert.deepEqual(await sa.expect('message'), { type: 'message', message: m1 }, "alice's socket gets her HTTP send");
    sb.sendMsg(alice, 'over the socket', { client_msg_id: 'p-1' });
    const ack = await sb.expect('ack');
    assertMessageShape(ack.message);
    assert.equal(ack.message.seq, 2);
    assert.deepEqual(await sa.expect('message'), { type: 'message', message: ack.message });
  });

  test('a repeated client_msg_id answers the stored message with its seq and takes no seq', async (t) => {
    const [alice, bob] = await registerAll(srv, [uname('da'), uname('db')]);
    const m1 = await send(srv, alice, bob, 'one', { client_msg_id: 'dup-1' });
    const m2 = await send(srv, bob, alice, 'two');
    const again = await send(srv, alice, bob, 'one (retry)', { client_msg_id: 'dup-1' });
    assert.deepEqual(again, m1, 'the stored message, seq included');
    const sa = await ChatSocket.bound(srv, alice, t);
    sa.sendMsg(bob, 'one (socket retry)', { client_msg_id: 'dup-1' });
    assert.deepEqual((await sa.expect('ack')).message, m1);
    const m3 = await send(srv, alice, bob, 'three');
    assert.deepEqual([m1.seq, m2.seq, m3.seq], [1, 2, 3], 'the retries left no hole');
  });
});

describe('POST /chat/sync by cursors', () => {
  let alice, bob, carol, dave, erin;
  let ab, ac, ad; // the conversations of alice, in seq order
  before(async () => {
    [alice, bob, carol, dave, erin] = await registerAll(srv, [uname('ka'), uname('kb'), uname('kc'), uname('kd'), uname('ke')]);
    ab = [];
    ac = [];
    ad = [];
    for (let i = 0; i < 5; i++) {
      ab.push(await send(srv, i % 2 ? bob : alice, i % 2 ? alice : bob, `ab ${i}`));
      if (i < 3) ac.push(await send(srv, i % 2 ? alice : carol, i % 2 ? carol : alice, `ac ${i}`));
    }
    // dave's conversation is the most recent one
    ad.push(await send(srv, dave, alice, 'ad 0'));
    ad.push(await send(srv, alice, dave, 'ad 1'));
  });

  test('answers the messages after each cursor, oldest first, the most recent conversation first', async () => {
    const got = ok(await cursorSync(alice, { cursors: { [bob.id]: 3, [carol.id]: 0, [dave.id]: 1 } }));
    assert.deepEqual(Object.keys(got), ['conversations'], 'no other field');
    assert.deepEqual(got.conversations, [
      { userid: dave.id, messages: ad.slice(1), more: false },
      { userid: bob.id, messages: ab.slice(3), more: false },
      { userid: carol.id, messages: ac, more: false },
    ]);
    for (const c of got.conversations) for (const m of c.messages) assertMessageShape(m);
  });

  test('a conversation at its newest seq is left out; one absent from cursors starts at 0; unknown peers are ignored', async () => {
    const got = ok(await cursorSync(alice, { cursors: { [bob.id]: 5, [carol.id]: 3, 987654321: 4 } }));
    assert.deepEqual(got.conversations, [{ userid: dave.id, messages: ad, more: false }]);
    assert.deepEqual(ok(await cursorSync(alice, { cursors: { [bob.id]: 5, [carol.id]: 3, [dave.id]: 2 } })), { conversations: [] });
    assert.deepEqual(ok(await cursorSync(alice, { cursors: { [bob.id]: 99 } })).conversations.map((c) => c.userid), [dave.id, carol.id], 'a cursor past the end is just caught up');
    assert.deepEqual(ok(await cursorSync(erin, { cursors: {} })), { conversations: [] }, 'a user without conversations');
    // cursors may be left out: a new device, every cursor 0
    const fresh = ok(await cursorSync(bob, {}));
    assert.deepEqual(fresh, { conversations: [{ userid: alice.id, messages: ab, more: false }] });
    assert.deepEqual(ok(await cursorSync(bob, { cursors: null })), fresh);
  });

  test('limit bounds the messages of the whole answer; cut conversations say more, later ones come empty with more', async () => {
    // dave (2 after 0), bob (3 after 2), carol (3 after 0): limit 4 takes dave's 2 and 2 of bob's
    const got = ok(await cursorSync(alice, { cursors: { [bob.id]: 2 }, limit: 4 }));
    assert.deepEqual(got.conversations, [
      { userid: dave.id, messages: ad, more: false },
      { userid: bob.id, messages: ab.slice(2, 4), more: true },
      { userid: carol.id, messages: [], more: true },
    ]);
    const one = ok(await cursorSync(alice, { limit: 1 }));
    assert.deepEqual(one.conversations, [
      { userid: dave.id, messages: [ad[0]], more: true },
      { userid: bob.id, messages: [], more: true },
      { userid: carol.id, messages: [], more: true },
    ]);
    // exactly at the limit: nothing is cut
    const exact = ok(await cursorSync(alice, { cursors: { [bob.id]: 5, [carol.id]: 3 }, limit: 2 }));
    assert.deepEqual(exact.conversations, [{ userid: dave.id, messages: ad, more: false }]);
    // without limit the default is --page-limit
    const def = ok(await cursorSync(alice, {}));
    assert.equal(def.conversations.reduce((n, c) => n + c.messages.length, 0), PAGE);
    assert.ok(def.conversations.some((c) => c.more));
  });

  test('following more with the new cursors gives every message exactly once, for any limit', async () => {
    const want = byKey([...ab, ...ac, ...ad], 'id');
    for (const limit of [1, 2, 3, PAGE]) {
      const { messages } = await syncCursorsAll(srv, alice, {}, { limit });
      assert.deepEqual(byKey(messages, 'id'), want, `limit ${limit}`);
      assert.equal(new Set(messages.map((m) => m.id)).size, messages.length, `limit ${limit}: no repeats`);
    }
    // the same for bob, who has one conversation, and from a middle cursor
    const cur = { [alice.id]: 3 };
    const { messages } = await syncCursorsAll(srv, bob, cur, { limit: 1 });
    assert.deepEqual(messages, ab.slice(3));
    assert.deepEqual(cur, { [alice.id]: 5 }, 'the cursors end at the newest seq');
  });

  test('new messages show up after the cursors a sync ended with', async () => {
    const [x, y] = await registerAll(srv, [uname('nx'), uname('ny')]);
    const cur = {};
    assert.deepEqual((await syncCursorsAll(srv, x, cur)).messages, []);
    const m1 = await send(srv, y, x, 'first');
    const m2 = await send(srv, x, y, 'second');
    assert.deepEqual((await syncCursorsAll(srv, x, cur)).messages, [m1, m2]);
    const m3 = await send(srv, y, x, 'third');
    assert.deepEqual((await syncCursorsAll(srv, x, cur)).messages, [m3]);
    assert.deepEqual((await syncCursorsAll(srv, x, cur)).messages, []);
  });

  test('GET /chat/sync?after=<id> still works and carries seq', async () => {
    const all = await syncAll(srv, alice, { limit: 2 });
    assert.deepEqual(all, byKey([...ab, ...ac, ...ad], 'id'));
    const mid = ab[2].id;
    assert.deepEqual(await syncAll(srv, alice, { after: mid }), byKey([...ab, ...ac, ...ad], 'id').filter((m) => m.id > mid));
  });

  test('bad cursors and limits -> 400 bad_field naming the problem; no token -> 401', async () => {
    const bad = async (body, field) => fails(await cursorSync(alice, body), 400, 'bad_field', field, JSON.stringify(body).slice(0, 80));
    for (const cursors of [[], [1, 2], 'x', 5, true]) await bad({ cursors }, 'cursors');
    for (const key of ['abc', '07', '0', '-1', '', ' 1', '1.0', '+3', '99999999999999999999']) await bad({ cursors: { [key]: 1 } }, 'cursors');
    for (const v of [-1, 1.5, '3', null, [], {}, true]) await bad({ cursors: { [bob.id]: v } }, 'cursors');
    const many = {};
    for (let i = 1; i <= 1001; i++) many[i] = 0;
    await bad({ cursors: many }, 'cursors');
    const thousand = {};
    for (let i = 1; i <= 1000; i++) thousand[i] = 0;
    ok(await cursorSync(alice, { cursors: thousand }), '1000 cursors are fine');
    for (const limit of [0, -1, PAGE + 1, 1.5, '2', true, {}]) await bad({ limit }, 'limit');
    fails(await req(srv, 'POST', '/chat/sync', { token: alice.token, body: 'not json' }), 400, 'bad_json');
    fails(await req(srv, 'POST', '/chat/sync', { token: alice.token, body: '[1]' }), 400, 'bad_json');
    fails(await post(srv, '/chat/sync', { cursors: {} }), 401, 'unauthorized');
    fails(await post(srv, '/chat/sync', { cursors: {} }, { token: 'x'.repeat(43) }), 401, 'unauthorized');
  });

  test('a user only ever gets conversations they are in', async () => {
    const got = ok(await cursorSync(carol, { cursors: { [bob.id]: 0, [dave.id]: 0 } }));
    assert.deepEqual(got, { conversations: [{ userid: alice.id, messages: ac, more: false }] });
  });
});

test('a restart keeps the numbering: the next message of a conversation takes the next seq', async () => {
  const [alice, bob, carol] = await registerAll(srv, [uname('ra'), uname('rb'), uname('rc')]);
  const ab = [await send(srv, alice, bob, 'before 1'), await send(srv, bob, alice, 'before 2')];
  const ac = [await send(srv, carol, alice, 'before 3')];
  srv.signal('SIGKILL');
  await srv.exited;
  srv2 = await restartServer(srv);
  const next = await must(srv2, 'POST', '/chat/send', { token: alice.token, body: { to_id: bob.id, type: 'text', data: 'after 1' } });
  assert.equal(next.seq, 3);
  const dup = await must(srv2, 'POST', '/chat/send', { token: carol.token, body: { to_id: alice.id, type: 'text', data: 'after 2' } });
  assert.equal(dup.seq, 2);
  const got = await must(srv2, 'POST', '/chat/sync', { token: alice.token, body: { cursors: { [bob.id]: 2 } } });
  assert.deepEqual(got.conversations, [
    { userid: carol.id, messages: [ac[0], dup], more: false },
    { userid: bob.id, messages: [next], more: false },
  ]);
  assert.deepEqual(seqs(pairOf([...ab, next], alice, bob)), [1, 2, 3]);
});
