// The crash test of issue 3: three users send a steady stream of messages over
// their sockets (a window of several in flight each, every message with a
// unique client_msg_id), chatd is killed with SIGKILL in the middle and
// restarted on the same --data-dir and port. Then every acknowledged message
// is stored exactly once with the same content, nothing is stored twice or
// out of nothing, messages sent but not acknowledged exist at most once and
// a retry with the same client_msg_id stores them exactly once, unread counts
// equal the messages each user received, and each chat list entry shows the
// newest message of its pair. The three are also in a group (issue 11), and
// every third message goes to it: every acknowledged group message is in the
// group's history and sync after the restart, exactly once, with the group's
// seq gapless from the create message on, and each member's computed unread
// count and the group's chat list item agree with what is stored.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, byKey, historyAll, must, registerAll, restartServer, syncAll, uname, dropPresence } from './lib/chat.mjs';

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
function stream(sock, user, peers, rec, window, gid) {
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
        const group = n % 3 === 2;
        const data = kind === 'image' ? `https://example.com/${user.id}/${n}.png` : `msg ${n} from ${user.username} to ${group ? 'g' + gid : to.id} ${'x'.repeat(n % 40)}`;
        const message = group ? { group_id: gid, type: kind, data, client_msg_id: cmid } : { to_id: to.id, type: kind, data, client_msg_id: cmid };
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
  const created = await must(srv, 'POST', '/group/create', { token: users[0].token, body: { name: 'crash group', members: [users[1].id, users[2].id] } });
  const gid = created.group.group_id;
  for (const s of socks.slice(1)) assert.equal((await s.expect('message')).message.id, created.message.id, 'members pushed the create message');
  const isGroup = (k) => rec.sent.get(k).group_id !== undefined;

  const streams = users.map((u, i) => stream(socks[i], u, users.filter((p) => p !== u), rec, WINDOW, gid));
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
    assert.deepEqual([m.from_id, m.to_id, m.group_id, m.type, m.data, m.client_msg_id], [s.from_id, s.to_id, s.group_id, s.type, s.data, s.client_msg_id], `ack of ${key}`);
  }
  const groupAcked = [...rec.acked.keys()].filter(isGroup).length;
  t.diagnostic(`group messages: sent ${[...rec.sent.keys()].filter(isGroup).length}, acked ${groupAcked}`);
  assert.ok(groupAcked >= 10, `group messages in the stream (${groupAcked} acked)`);

  srv2 = await restartServer(srv);
  assert.equal(srv2.port, srv.port);

  // Tokens were committed before they were handed out: they survive the crash.
  for (const u of users) assert.equal((await must(srv2, 'GET', '/user/me', { token: u.token })).id, u.id, `${u.username}'s token after the restart`);

  /** Every message, checked for duplicates and agreement between the two sides. */
  async function stored() {
    const byId = new Map();
    for (const u of users) {
      // The 1:1 messages (GET /chat/sync by id is the 1:1 cursor; the group is checked by groupStored).
      const all = (await syncAll(srv2, u, { limit: PAGE })).filter((m) => m.group_id === undefined);
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

  /**
   * The group's messages, from each member's history and its POST /chat/sync
   * (g cursor, paged): the same for all, seq 1..n gapless and ascending, the
   * create message first, no message twice, each one that was sent.
   */
  async function groupStored() {
    let ref = null;
    for (const u of users) {
      const hist = [];
      for (let before = 0; ; ) {
        const page = await must(srv2, 'GET', `/chat/history?group_id=${gid}&before=${before}&limit=${PAGE}`, { token: u.token });
        if (!page.length) break;
        hist.push(...page);
        before = page[page.length - 1].id;
      }
      hist.reverse();
      // a new device's sync: every cursor 0, paged by limit until nothing says more
      const synced = [];
      const cursors = {};
      for (let guard = 0; ; guard++) {
        assert.ok(guard < 1000, 'the sync ends');
        const ans = await must(srv2, 'POST', '/chat/sync', { token: u.token, body: { cursors, limit: 100 } });
        for (const c of ans.conversations) {
          const key = c.group_id !== undefined ? `g${c.group_id}` : String(c.userid);
          if (c.group_id === gid) synced.push(...c.messages);
          if (c.messages.length) cursors[key] = c.messages.at(-1).seq;
        }
        if (!ans.conversations.some((c) => c.more)) break;
      }
      assert.deepEqual(synced, hist, `${u.username}: sync and history of the group agree`);
      if (ref) assert.deepEqual(hist, ref, `${u.username} sees the same group messages`);
      ref = hist;
    }
    assert.deepEqual(ref.map((m) => m.seq), ref.map((_, i) => i + 1), 'the group\'s seq is gapless from 1');
    assert.deepEqual(ref[0], created.message, 'seq 1 is the create message');
    const byK = new Map();
    for (const m of ref.slice(1)) {
      assert.equal(m.group_id, gid);
      const key = `${m.from_id}/${m.client_msg_id}`;
      assert.ok(!byK.has(key), `group message ${key} stored twice`);
      byK.set(key, m);
      const s = rec.sent.get(key);
      assert.ok(s && s.group_id === gid, `group message ${m.id} (${key}) was sent to the group`);
      assert.deepEqual([m.type, m.data], [s.type, s.data], `stored content of ${key}`);
    }
    return { byK, all: ref };
  }

  const before = await stored();
  const gBefore = await groupStored();
  for (const [key, m] of rec.acked) assert.deepEqual((isGroup(key) ? gBefore.byK : before).get(key), m, `acknowledged ${key} is stored as acknowledged`);
  for (const [key, m] of gBefore.byK) before.set(key, m);
  const unackedStored = unacked.filter((k) => before.has(k));
  t.diagnostic(`after restart: ${before.size} stored; ${unackedStored.length} of ${unacked.length} unacknowledged sends were committed`);

  // Retry every unacknowledged send with its client_msg_id (half over the socket, half over HTTP),
  // and a few acknowledged ones: each answers with the stored message or stores it now, once.
  const newSocks = await Promise.all(users.map((u) => ChatSocket.bound(srv2, u, t)));
  const retryKeys = [...unacked, ...[...rec.acked.keys()].slice(0, 6)];
  for (const [i, key] of retryKeys.entries()) {
    const s = rec.sent.get(key);
    const ui = users.findIndex((u) => u.id === s.from_id);
    const message = s.group_id !== undefined ? { group_id: s.group_id, type: s.type, data: s.data, client_msg_id: s.client_msg_id } : { to_id: s.to_id, type: s.type, data: s.data, client_msg_id: s.client_msg_id };
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
    else assert.deepEqual([got.from_id, got.to_id, got.group_id, got.data, got.client_msg_id], [s.from_id, s.to_id, s.group_id, s.data, s.client_msg_id]);
  }

  const final = await stored();
  const gFinal = await groupStored();
  assert.equal(final.size + gFinal.byK.size, rec.sent.size, 'every sent message is now stored exactly once');
  for (const [key, m] of before) assert.deepEqual((isGroup(key) ? gFinal.byK : final).get(key), m, `${key} unchanged by the retries`);
  const msgs = byKey([...final.values()], 'id');
  const gMsgs = gFinal.all;
  const gLast = gMsgs.at(-1);
  /** A member's computed group unread: after its own newest message in the group (its read position). */
  const groupUnread = (u) => gMsgs.length - Math.max(0, ...gMsgs.filter((m) => m.from_id === u.id).map((m) => m.seq));

  // Unread counts: nobody read anything, so each equals the messages received.
  for (const u of users) {
    const unread = await must(srv2, 'GET', '/chat/unread', { token: u.token });
    const want = users
      .filter((p) => p !== u)
      .map((p) => ({ userid: p.id, noreadnum: msgs.filter((m) => m.from_id === p.id && m.to_id === u.id).length }))
      .filter((c) => c.noreadnum > 0);
    const gu = groupUnread(u);
    assert.equal(unread.total, msgs.filter((m) => m.to_id === u.id).length + gu, `${u.username}'s unread total`);
    assert.deepEqual(byKey(unread.conversations, 'userid'), byKey(want, 'userid'), `${u.username}'s unread per conversation`);
    assert.deepEqual(unread.groups, gu ? [{ group_id: gid, noreadnum: gu, muted: false }] : [], `${u.username}'s group unread`);
  }

  // Chat lists: one entry per peer, showing the pair's newest message, most recent first.
  for (const u of users) {
    const full = await must(srv2, 'GET', '/chat/list', { token: u.token });
    const ids = full.map((c) => c.last_message_id);
    assert.deepEqual(ids, [...ids].sort((x, y) => y - x), `${u.username}'s list: most recent first, groups and 1:1 together`);
    const gi = full.filter((c) => c.chat_type === 'group');
    assert.equal(gi.length, 1, `${u.username}'s list holds the group`);
    assert.deepEqual(
      [gi[0].group_id, gi[0].last_message_id, gi[0].last_seq, gi[0].data, gi[0].from_id, gi[0].noreadnum],
      [gid, gLast.id, gLast.seq, gLast.data, gLast.from_id, groupUnread(u)],
      `${u.username}'s group item`,
    );
    const singles = full.filter((c) => c.chat_type !== 'group');
    for (const c of singles) {
      assert.equal(c.chat_type, 'single');
      delete c.chat_type;
    }
    const list = dropPresence(singles);
    const want = users
      .filter((p) => p !== u)
      .map((p) => {
        const pair = msgs.filter((m) => (m.from_id === u.id && m.to_id === p.id) || (m.from_id === p.id && m.to_id === u.id));
        const last = pair[pair.length - 1];
        return {
          userid: p.id,
          username: p.username,
          userpic: p.userpic,
          type: last.type,
          data: last.data,
          time: last.time,
          noreadnum: pair.filter((m) => m.to_id === u.id).length,
          last_message_id: last.id,
          last_seq: last.seq,
          from_id: last.from_id,
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
