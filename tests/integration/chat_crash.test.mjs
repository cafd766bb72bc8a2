// The crash test of issue 3: three users send a steady stream of messages over
// their sockets (a window of several in flight each, every message with a
// unique client_msg_id), chatd is killed with SIGKILL in the middle and
// restarted on the same --data-dir and port. Then every acknowledged message
// is stored exactly once with the same content, nothing is stored twice or
// out of nothing, messages sent but not acknowledged exist at most once and
// a retry with the same client_msg_id stores them exactly once, unread counts
// equal the messages each user received, and each chat list entry shows the
// newest message of its pair.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, byKey, historyAll, must, registerAll, restartServer, syncAll, uname , dropPresence } from './lib/chat.mjs';

const STREAM_MS = 1500;
const WINDOW = 8;
const PAGE = 1000;

const srv = await startServer({ options: { 'page-limit': PAGE, 'login-rate': 1000 } });
let srv2 = null;
after(async () => {
  if (srv2) await srv2.stop();
  await srv.stop(); // removes the data dir, so last
});

/**
 * Sends over sock until it closes: keeps `window` sends in flight, each to the
 * next peer in turn with a unique client_msg_id. Records what was sent and
 * what was acknowledged.
 */
function stream(sock, user, peers, rec, window) {
  return new Promise((resolve) => {
    const ws = sock.ws.ws;
    let seq = 0;
    let inflight = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        clearTimeout(guard);
        resolve();
      }
    };
    // Bounded: the kill closes the socket long before this.
    const guard = setTimeout(finish, STREAM_MS + 8000);
    const pump = () => {
      while (!done && inflight < window && ws.readyState === ws.OPEN) {
        const n = seq++;
        const to = peers[n % peers.length];
        const cmid = `${user.username}-${n}`;
        const kind = n % 7 === 3 ? 'image' : 'text';
        const data = kind === 'image' ? `https://example.com/${user.id}/${n}.png` : `msg ${n} from ${user.username} to ${to.id} ${'x'.repeat(n % 40)}`;
        const message = { to_id: to.id, type: kind, data, client_msg_id: cmid };
        rec.sent.set(`${user.id}/${cmid}`, { from_id: user.id, ...message });
        inflight++;
        ws.send(JSON.stringify({ type: 'send', message }));
      }
    };
    ws.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.type === 'ack') {
        const key = `${user.id}/${m.client_msg_id}`;
        if (rec.acked.has(key)) rec.problems.push(`two acks for ${key}`);
        rec.acked.set(key, m.message);
        inflight--;
        pump();
      } else if (m.type === 'error') {
        rec.problems.push(`error during the stream: ${JSON.stringify(m)}`);
        inflight--;
        pump();
      }
    });
    ws.on('close', finish);
    pump();
  });
}

test('SIGKILL in the middle of a message stream: acknowledged messages stored exactly once, counts and lists consistent', async (t) => {
  const users = await registerAll(srv, [uname('ka'), uname('kb'), uname('kc')]);
  const socks = await Promise.all(users.map((u) => ChatSocket.bound(srv, u, t)));
  const rec = { sent: new Map(), acked: new Map(), problems: [] };

  const streams = users.map((u, i) => stream(socks[i], u, users.filter((p) => p !== u), rec, WINDOW));
  await sleep(STREAM_MS);
  srv.signal('SIGKILL'); // by PID
  const killedAt = rec.acked.size;
  const exit = await Promise.race([srv.exited, sleep(5000).then(() => null)]);
  assert.ok(exit, 'chatd exited after SIGKILL');
  assert.equal(exit.signal, 'SIGKILL');
  await Promise.all(streams);
  assert.deepEqual(rec.problems, [], 'no errors and no double acks during the stream');
  const unacked = [...rec.sent.keys()].filter((k) => !rec.acked.has(k));
  t.diagnostic(`sent ${rec.sent.size}, acked ${rec.acked.size} (${killedAt} when killed), unacked ${unacked.length}`);
  assert.ok(rec.acked.size >= 30, `a real stream: ${rec.acked.size} messages acknowledged in ${STREAM_MS} ms`);
  assert.ok(unacked.length > 0, 'the kill came with sends in flight');
  // Each ack carried what was sent.
  for (const [key, m] of rec.acked) {
    const s = rec.sent.get(key);
    assert.deepEqual([m.from_id, m.to_id, m.type, m.data, m.client_msg_id], [s.from_id, s.to_id, s.type, s.data, s.client_msg_id], `ack of ${key}`);
  }

  srv2 = await restartServer(srv);
  assert.equal(srv2.port, srv.port);

  // Tokens were committed before they were handed out: they survive the crash.
  for (const u of users) assert.equal((await must(srv2, 'GET', '/user/me', { token: u.token })).id, u.id, `${u.username}'s token after the restart`);

  /** Every message, checked for duplicates and agreement between the two sides. */
  async function stored() {
    const byId = new Map();
    for (const u of users) {
      const all = await syncAll(srv2, u, { limit: PAGE });
      for (let i = 1; i < all.length; i++) assert.ok(all[i].id > all[i - 1].id, `${u.username}'s sync is strictly ascending (no duplicates)`);
      for (const m of all) {
        assert.ok(m.from_id === u.id || m.to_id === u.id, `sync of ${u.username} holds only their messages`);
        const seen = byId.get(m.id);
        if (seen) assert.deepEqual(m, seen, `message ${m.id} is the same for both sides`);
        else byId.set(m.id, m);
      }
    }
    const byKeyMap = new Map();
    for (const m of byId.values()) {
      assert.ok(m.client_msg_id, `message ${m.id} has a client_msg_id`);
      const key = `${m.from_id}/${m.client_msg_id}`;
      assert.ok(!byKeyMap.has(key), `${key} stored twice (ids ${byKeyMap.get(key)?.id} and ${m.id})`);
      byKeyMap.set(key, m);
      const s = rec.sent.get(key);
      assert.ok(s, `message ${m.id} (${key}) was sent by someone`);
      assert.deepEqual([m.to_id, m.type, m.data], [s.to_id, s.type, s.data], `stored content of ${key}`);
    }
    return byKeyMap;
  }

  const before = await stored();
  for (const [key, m] of rec.acked) assert.deepEqual(before.get(key), m, `acknowledged ${key} is stored as acknowledged`);
  const unackedStored = unacked.filter((k) => before.has(k));
  t.diagnostic(`after restart: ${before.size} stored; ${unackedStored.length} of ${unacked.length} unacknowledged sends were committed`);

  // Retry every unacknowledged send with its client_msg_id (half over the socket, half over HTTP),
  // and a few acknowledged ones: each answers with the stored message or stores it now, once.
  const newSocks = await Promise.all(users.map((u) => ChatSocket.bound(srv2, u, t)));
  const retryKeys = [...unacked, ...[...rec.acked.keys()].slice(0, 6)];
  for (const [i, key] of retryKeys.entries()) {
    const s = rec.sent.get(key);
    const ui = users.findIndex((u) => u.id === s.from_id);
    const message = { to_id: s.to_id, type: s.type, data: s.data, client_msg_id: s.client_msg_id };
    let got;
    if (i % 2 === 0) {
      const sock = newSocks[ui];
      sock.sendJson({ type: 'send', message });
      // Pushes from other users' retries may come first.
      for (;;) {
        const m = await sock.next();
        if (m.type === 'message') continue;
        assert.equal(m.type, 'ack', `retry of ${key}: ${JSON.stringify(m)}`);
        assert.equal(m.client_msg_id, s.client_msg_id);
        got = m.message;
        break;
      }
    } else {
      got = await must(srv2, 'POST', '/chat/send', { token: users[ui].token, body: message });
    }
    if (before.has(key)) assert.deepEqual(got, before.get(key), `retry of stored ${key} answers with the stored message`);
    else assert.deepEqual([got.from_id, got.to_id, got.data, got.client_msg_id], [s.from_id, s.to_id, s.data, s.client_msg_id]);
  }

  const final = await stored();
  assert.equal(final.size, rec.sent.size, 'every sent message is now stored exactly once');
  for (const [key, m] of before) assert.deepEqual(final.get(key), m, `${key} unchanged by the retries`);
  const msgs = byKey([...final.values()], 'id');

  // Unread counts: nobody read anything, so each equals the messages received.
  for (const u of users) {
    const unread = await must(srv2, 'GET', '/chat/unread', { token: u.token });
    const want = users
      .filter((p) => p !== u)
      .map((p) => ({ userid: p.id, noreadnum: msgs.filter((m) => m.from_id === p.id && m.to_id === u.id).length }))
      .filter((c) => c.noreadnum > 0);
    assert.equal(unread.total, msgs.filter((m) => m.to_id === u.id).length, `${u.username}'s unread total`);
    assert.deepEqual(byKey(unread.conversations, 'userid'), byKey(want, 'userid'), `${u.username}'s unread per conversation`);
  }

  // Chat lists: one entry per peer, showing the pair's newest message, most recent first.
  for (const u of users) {
    const list = dropPresence(await must(srv2, 'GET', '/chat/list', { token: u.token }));
    const want = users
      .filter((p) => p !== u)
      .map((p) => {
        const pair = msgs.filter((m) => (m.from_id === u.id && m.to_id === p.id) || (m.from_id === p.id && m.to_id === u.id));
        const last = pair[pair.length - 1];
        return {
          chat_type: 'single',
          userid: p.id,
          username: p.username,
          userpic: p.userpic,
          type: last.type,
          data: last.data,
          time: last.time,
          noreadnum: pair.filter((m) => m.to_id === u.id).length,
          last_message_id: last.id,
          last_seq: last.seq,
        };
      })
      .sort((a, b) => b.last_message_id - a.last_message_id);
    assert.deepEqual(list, want, `${u.username}'s chat list`);
  }

  // History of each pair agrees with sync.
  for (const [a, b] of [[users[0], users[1]], [users[1], users[2]], [users[2], users[0]]]) {
    const pair = msgs.filter((m) => (m.from_id === a.id && m.to_id === b.id) || (m.from_id === b.id && m.to_id === a.id));
    assert.deepEqual(await historyAll(srv2, a, b.id, PAGE), [...pair].reverse(), `history of ${a.username} and ${b.username}`);
    // The crash and the retries left no hole and no repeat in the pair's sequence.
    assert.deepEqual(pair.map((m) => m.seq), pair.map((_, i) => i + 1), `seq of ${a.username} and ${b.username}`);
  }
});
