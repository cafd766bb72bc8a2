// Groups (issue 11), the messages: stored then acknowledged, idempotent
// client_msg_id, fan-out to every device of every member exactly once (the
// sending device gets the ack, not the push), history paging, POST
// /chat/sync with "g<id>" cursors and `more` across joins and removals (a
// removed member gets nothing after its removal message: no push, no history,
// no sync; added back it sees from the new add), the chat list mixing 1:1 and
// groups, computed unread counts, /chat/read and /group/mute with their
// pushes to the user's other devices, presence between group members, and
// group typing events. Written from the contract (docs/API.md, src/store/
// store.h "Groups"). Runs on SQLite, and on PostgreSQL with CHATD_TEST_STORE.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { ChatSocket, fails, get, mintJwt, ok, post, send, uname } from './lib/chat.mjs';

const PAGE = 5; // --page-limit
const GRACE = 300; // --presence-grace
const SECRET = crypto.randomBytes(16).toString('hex');
const srv = await startServer({ options: { 'page-limit': PAGE, 'presence-grace': GRACE, 'event-rate': 0, 'jwt-secret': SECRET } });
after(() => srv.stop());

const MSG_KEYS = ['client_msg_id', 'data', 'from_id', 'from_userpic', 'from_username', 'group_id', 'id', 'seq', 'time', 'type'].sort();
const P = (u, path, body) => post(srv, path, body, { token: u.token });
const call = async (u, path, body) => ok(await P(u, path, body), `${path} ${JSON.stringify(body)}`);
/**
 * n new users. Users of HS256 JWTs (--jwt-secret), created on first sight by
 * GET /user/me: no argon2id per user, so the file stays fast on a busy machine.
 */
async function users(n, p) {
  const now = Math.floor(Date.now() / 1000);
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const name = uname(`${p}${i}`);
      const token = mintJwt({ sub: `${name}-sub`, username: name, exp: now + 3600, iat: now }, SECRET);
      const me = ok(await get(srv, '/user/me', { token }));
      assert.equal(me.username, name);
      return { ...me, token };
    }),
  );
}
const ids = (us) => us.map((u) => u.id);
const sys = (m) => JSON.parse(m.data);
const create = (owner, members, name = 'g') => call(owner, '/group/create', { name, members: ids(members) });
const gsend = (u, gid, data, extra = {}) => call(u, '/chat/send', { group_id: gid, type: 'text', data, ...extra });
const history = (u, gid, q = '') => get(srv, `/chat/history?group_id=${gid}${q}`, { token: u.token });
const list = async (u) => ok(await get(srv, '/chat/list', { token: u.token }));
const unread = async (u) => ok(await get(srv, '/chat/unread', { token: u.token }));
const groupItem = async (u, gid) => (await list(u)).find((c) => c.chat_type === 'group' && c.group_id === gid);
const seqs = (ms) => ms.map((m) => m.seq);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** Every message of the group a user may see, oldest first, following history pages of `limit`. */
async function historyAll(u, gid, limit = PAGE) {
  const out = [];
  let before = 0;
  for (let guard = 0; guard < 1000; guard++) {
    const page = ok(await history(u, gid, `&before=${before}&limit=${limit}`));
    if (!page.length) return out.reverse();
    assert.ok(page.length <= limit, 'a page holds at most limit');
    out.push(...page);
    before = page[page.length - 1].id;
  }
  throw new Error('history did not end');
}

/** POST /chat/sync until nothing says more; returns {byKey: key -> [messages], pages}. */
async function syncAll(u, cursors = {}, limit) {
  const byKey = {};
  const pages = [];
  for (let guard = 0; guard < 1000; guard++) {
    const body = { cursors };
    if (limit) body.limit = limit;
    const page = ok(await P(u, '/chat/sync', body), 'sync');
    pages.push(page);
    let more = false;
    let n = 0;
    for (const c of page.conversations) {
      const key = c.group_id !== undefined ? `g${c.group_id}` : String(c.userid);
      for (const m of c.messages) {
        (byKey[key] ||= []).push(m);
        cursors[key] = m.seq;
        n++;
      }
      more ||= c.more;
    }
    if (limit) assert.ok(n <= limit, `a sync answer holds at most limit (${n})`);
    if (!more) return { byKey, pages };
  }
  throw new Error('sync did not end');
}

describe('sending', () => {
  test('HTTP and socket sends: stored before the answer, a group message shape, seq after the create message', async (t) => {
    const [o, a] = await users(2, 'ms');
    const { group, message: created } = await create(o, [a]);
    const gid = group.group_id;
    const m1 = await gsend(a, gid, 'hello group');
    assert.deepEqual(Object.keys(m1).sort(), MSG_KEYS, `keys: ${JSON.stringify(m1)}`);
    assert.deepEqual([m1.group_id, m1.from_id, m1.from_username, m1.type, m1.data, m1.seq, m1.client_msg_id], [gid, a.id, a.username, 'text', 'hello group', 2, null]);
    assert.ok(m1.id > created.id);
    assert.deepEqual(ok(await history(o, gid, '&limit=1')), [m1], 'stored when answered');

    const so = await ChatSocket.bound(srv, o, t);
    so.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'over the socket', client_msg_id: 'sock-1' } });
    const ack = await so.expect('ack');
    assert.equal(ack.client_msg_id, 'sock-1');
    assert.deepEqual([ack.message.group_id, ack.message.seq, ack.message.data, ack.message.from_id], [gid, 3, 'over the socket', o.id]);
    assert.deepEqual(ok(await history(a, gid, '&limit=1')), [ack.message], 'stored when acknowledged');
    const img = await call(a, '/chat/send', { group_id: String(gid), type: 'image', data: '/pic.png' });
    assert.equal(img.seq, 4, 'group_id as a decimal string');
    fails(await P(a, '/chat/send', { group_id: gid, type: 'image', data: 'not a url' }), 400, 'bad_field', 'data');
    fails(await P(a, '/chat/send', { group_id: gid, type: 'text', data: '' }), 400, 'bad_field', 'data');
    fails(await P(a, '/chat/send', { group_id: gid, type: 'nope', data: 'x' }), 400, 'bad_field', 'type');
    assert.equal((await groupItem(o, gid)).last_seq, 4, 'refused sends stored nothing');
  });

  test('a repeated client_msg_id: one stored message, the same answer, over HTTP and the socket', async (t) => {
    const [o, a] = await users(2, 'mi');
    const gid = (await create(o, [a])).group.group_id;
    const m1 = await gsend(a, gid, 'once', { client_msg_id: 'dup-1' });
    const m2 = await gsend(a, gid, 'once', { client_msg_id: 'dup-1' });
    assert.deepEqual(m2, m1, 'the stored message again');
    const sa = await ChatSocket.bound(srv, a, t);
    sa.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'once', client_msg_id: 'dup-1' } });
    assert.deepEqual((await sa.expect('ack')).message, m1);
    // the same client_msg_id of another sender is another message
    const mo = await gsend(o, gid, 'once', { client_msg_id: 'dup-1' });
    assert.notEqual(mo.id, m1.id);
    assert.equal(mo.seq, m1.seq + 1, 'the duplicates took no seq');
    const h = await historyAll(o, gid);
    assert.deepEqual(seqs(h), [1, 2, 3]);
    assert.equal(h.filter((m) => m.client_msg_id === 'dup-1' && m.from_id === a.id).length, 1, 'stored once');
  });

  test('fan-out: every device of every member gets the frame exactly once; the sending device the ack; nobody else anything', async (t) => {
    const [a, b, c, x] = await users(4, 'mf');
    const gid = (await create(a, [b, c])).group.group_id;
    const [a1, a2, b1, b2, b3, c1, x1] = await Promise.all([a, a, b, b, b, c, x].map((u) => ChatSocket.bound(srv, u, t)));
    const all = [a1, a2, b1, b2, b3, c1, x1];

    a1.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'to everyone', client_msg_id: 'f-1' } });
    const ack = await a1.expect('ack');
    for (const s of [a2, b1, b2, b3, c1]) assert.deepEqual(await s.next(), { type: 'message', message: ack.message }, `${s.user.username}'s device`);
    for (const s of all) await s.quiet('(exactly once; the sender device only the ack; the outsider nothing)');

    // HTTP send naming its socket: that one is left out, every other device of the sender gets it
    const m2 = await gsend(b, gid, 'from b over http', { client_id: b2.clientId });
    for (const s of [a1, a2, b1, b3, c1]) assert.deepEqual(await s.next(), { type: 'message', message: m2 });
    for (const s of all) await s.quiet('(after the HTTP send)');

    // a repeated client_msg_id is acked with the stored message and pushed again to the same devices
    c1.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'dup', client_msg_id: 'f-2' } });
    const m3 = (await c1.expect('ack')).message;
    c1.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'dup', client_msg_id: 'f-2' } });
    assert.deepEqual((await c1.expect('ack')).message, m3, 'the retry is acked with the stored message');
    for (const s of [a1, a2, b1, b2, b3]) {
      const got = await s.collect();
      assert.ok(got.length >= 1 && got.length <= 2, `${got.length} pushes of the message and its retry`);
      for (const m of got) assert.deepEqual(m, { type: 'message', message: m3 });
    }
    await c1.quiet();
    await x1.quiet();
    // several messages in a burst arrive in seq order on every device
    for (let i = 0; i < 6; i++) a1.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: `burst ${i}`, client_msg_id: `b-${i}` } });
    const acks = [];
    for (let i = 0; i < 6; i++) acks.push((await a1.expect('ack')).message);
    for (const s of [a2, b1, b2, b3, c1]) {
      const got = [];
      for (let i = 0; i < 6; i++) got.push((await s.expect('message')).message);
      assert.deepEqual(seqs(got), seqs(acks), 'in order');
      assert.deepEqual(seqs(acks), range(m3.seq + 1, m3.seq + 6));
      await s.quiet();
    }
    await x1.quiet();
    // an outsider's socket send is refused, and reaches nobody
    x1.sendJson({ type: 'send', message: { group_id: gid, type: 'text', data: 'let me in', client_msg_id: 'x-1' } });
    const e = await x1.expect('error');
    assert.deepEqual([e.code, e.op, e.client_msg_id], ['not_member', 'send', 'x-1']);
    for (const s of all) await s.quiet('(the refused send reached nobody)');
  });

  test('history: newest first, before/limit paging, only for members, bad query 400', async () => {
    const [o, a, x] = await users(3, 'mh');
    const gid = (await create(o, [a])).group.group_id;
    const sent = [];
    for (let i = 0; i < 11; i++) sent.push(await gsend(i % 2 ? a : o, gid, `h${i}`));
    const page1 = ok(await history(a, gid, `&limit=4`));
    assert.deepEqual(seqs(page1), [12, 11, 10, 9]);
    assert.deepEqual(page1[0], sent[10]);
    const page2 = ok(await history(a, gid, `&before=${page1[3].id}&limit=4`));
    assert.deepEqual(seqs(page2), [8, 7, 6, 5]);
    assert.deepEqual(seqs(ok(await history(a, gid))), [12, 11, 10, 9, 8], 'no limit: --page-limit');
    assert.deepEqual(seqs(ok(await history(a, gid, `&before=${sent[0].id}`))), [1], 'before the first text: the create message');
    const all = await historyAll(o, gid, 3);
    assert.deepEqual(seqs(all), range(1, 12), 'every message, once, gapless');
    assert.deepEqual(all.slice(1), sent);
    fails(await history(x, gid), 403, 'not_member');
    fails(await history(a, gid, `&limit=${PAGE + 1}`), 400, 'bad_field', 'limit');
    fails(await history(a, gid, '&limit=0'), 400, 'bad_field', 'limit');
    fails(await history(a, gid, '&before=-1'), 400, 'bad_field', 'before');
    fails(await get(srv, '/chat/history?group_id=abc', { token: a.token }), 400, 'bad_field', 'group_id');
    fails(await get(srv, '/chat/history?group_id=0', { token: a.token }), 400, 'bad_field', 'group_id');
    const both = await get(srv, `/chat/history?group_id=${gid}&userid=${o.id}`, { token: a.token });
    assert.equal(both.status, 400, `history with both userid and group_id: ${both.status} ${both.text.slice(0, 200)}`);
    const rboth = await P(a, '/chat/read', { group_id: gid, userid: o.id });
    assert.equal(rboth.status, 400, `read with both userid and group_id: ${rboth.status} ${rboth.text.slice(0, 200)}`);
  });
});

describe('client_msg_id reused across conversations', () => {
  test('a client_msg_id already used in another conversation is 409 client_msg_id_reused: nothing stored, nothing pushed', async (t) => {
    const [o, a, b, x] = await users(4, 'cr');
    const gid = (await create(o, [a, b])).group.group_id;
    const gid2 = (await create(o, [a])).group.group_id;
    const sb = await ChatSocket.bound(srv, b, t);
    const sx = await ChatSocket.bound(srv, x, t);
    // 1:1 first, then the same id to the group: the group gets nothing
    const one = ok(await P(o, '/chat/send', { to_id: x.id, type: 'text', data: 'for x only', client_msg_id: 'reuse-1' }));
    await sx.expect('message');
    fails(await P(o, '/chat/send', { group_id: gid, type: 'text', data: 'hello group', client_msg_id: 'reuse-1' }), 409, 'client_msg_id_reused', null, 'group send reusing a 1:1 id');
    await sb.quiet('no push of the 1:1 message to a group member');
    assert.deepEqual(ok(await history(b, gid)).map((m) => m.data).filter((d) => !d.startsWith('{')), [], 'the group holds no text message');
    // a retry of the 1:1 message is still a retry
    assert.equal(ok(await P(o, '/chat/send', { to_id: x.id, type: 'text', data: 'for x only', client_msg_id: 'reuse-1' })).id, one.id);
    assert.equal((await sx.expect('message')).message.id, one.id, 'a retry is pushed again');
    // group first, then the same id 1:1 or to another group
    const g = await gsend(o, gid, 'to the group', { client_msg_id: 'reuse-2' });
    fails(await P(o, '/chat/send', { to_id: x.id, type: 'text', data: 'hi x', client_msg_id: 'reuse-2' }), 409, 'client_msg_id_reused', null, '1:1 send reusing a group id');
    fails(await P(o, '/chat/send', { group_id: gid2, type: 'text', data: 'other group', client_msg_id: 'reuse-2' }), 409, 'client_msg_id_reused', null, 'another group');
    // over the socket too: an error frame with the client_msg_id
    const so = await ChatSocket.bound(srv, o, t);
    so.sendJson({ type: 'send', message: { to_id: x.id, type: 'text', data: 'hi x', client_msg_id: 'reuse-2' } });
    const e = await so.expect('error');
    assert.deepEqual([e.code, e.client_msg_id], ['client_msg_id_reused', 'reuse-2']);
    await sx.quiet('x gets no group message');
    assert.equal((await gsend(o, gid, 'to the group', { client_msg_id: 'reuse-2' })).id, g.id, 'the group retry is a retry');
  });
});

describe('membership ranges', () => {
  test('joins and removals: a removed member gets nothing after its removal message; added back it sees from the new add', async (t) => {
    const [o, b, c] = await users(3, 'mr');
    const gid = (await create(o, [b])).group.group_id;
    const early = [await gsend(o, gid, 'before c 1'), await gsend(b, gid, 'before c 2')]; // seq 2, 3
    const sc = await ChatSocket.bound(srv, c, t);
    const add = await call(o, '/group/add', { group_id: gid, members: [c.id] }); // seq 4
    assert.deepEqual(await sc.next(), { type: 'message', message: add.message }, 'c learns of the group by the add message');
    const during = [await gsend(o, gid, 'with c 1'), await gsend(c, gid, 'c speaks', { client_id: sc.clientId })]; // 5, 6
    assert.deepEqual(await sc.next(), { type: 'message', message: during[0] });
    await sc.quiet();
    assert.equal((await call(c, '/group/info', { group_id: gid })).joined_seq, add.message.seq);
    let h = await historyAll(c, gid);
    assert.deepEqual(seqs(h), [4, 5, 6], 'c sees from its add, nothing before');
    let s = await syncAll(c, {});
    assert.deepEqual(seqs(s.byKey[`g${gid}`]), [4, 5, 6], 'sync: the same range');
    assert.ok(!ok(await history(c, gid, `&before=${add.message.id}`)).length, 'nothing before the add, even by asking');

    const rm = await call(o, '/group/remove', { group_id: gid, userid: c.id }); // 7
    assert.deepEqual(await sc.next(), { type: 'message', message: rm.message }, 'c receives its removal');
    const afterRm = [await gsend(o, gid, 'after c 1'), await gsend(b, gid, 'after c 2')]; // 8, 9
    await call(o, '/group/update', { group_id: gid, name: 'renamed without c' }); // 10
    await sc.quiet('(nothing after the removal)');
    h = await historyAll(c, gid);
    assert.deepEqual(seqs(h), [4, 5, 6, 7], 'history ends at the removal');
    s = await syncAll(c, { [`g${gid}`]: 6 });
    assert.deepEqual(seqs(s.byKey[`g${gid}`]), [7], 'sync ends at the removal');
    s = await syncAll(c, { [`g${gid}`]: 7 });
    assert.equal(s.byKey[`g${gid}`], undefined, 'caught up: nothing');
    assert.equal(s.pages[0].conversations.find((x) => x.group_id === gid), undefined, 'not even an empty item');
    fails(await P(c, '/chat/send', { group_id: gid, type: 'text', data: 'let me back' }), 403, 'not_member');
    const ic = await call(c, '/group/info', { group_id: gid });
    assert.equal(ic.left, true);
    assert.deepEqual(ic.members, [], 'a removed member does not see the member list');
    const item = await groupItem(c, gid);
    assert.equal(item.left, true, 'the list item stays, read-only');
    assert.equal(item.last_seq, 7, 'the newest it may see');
    assert.equal(item.last_message_id, rm.message.id);
    assert.equal(item.noreadnum, 1, 'unread: its removal only (its own send at 6 read up to there), nothing after');

    const again = await call(o, '/group/add', { group_id: gid, members: [c.id] }); // 11
    assert.deepEqual(await sc.next(), { type: 'message', message: again.message });
    const last = await gsend(b, gid, 'welcome back'); // 12
    assert.deepEqual(await sc.next(), { type: 'message', message: last });
    h = await historyAll(c, gid);
    const seen = seqs(h);
    for (const m of [...early, ...afterRm]) assert.ok(!seen.includes(m.seq), `c never sees seq ${m.seq} (${m.data})`);
    assert.ok(!seen.includes(10), 'nor the rename made while it was out');
    assert.deepEqual(seen.filter((q) => q >= 11), [11, 12], 'from the new add on');
    s = await syncAll(c, { [`g${gid}`]: 7 });
    assert.deepEqual(seqs(s.byKey[`g${gid}`]), [11, 12], 'sync after re-add: from the new add, the gap skipped');
    // a new device of c, one message per answer: paged by more, never into the gap
    s = await syncAll(c, {}, 1);
    const paged = seqs(s.byKey[`g${gid}`]);
    assert.ok(paged.length >= 2 && s.pages.length >= paged.length, `paged: ${s.pages.length} answers for ${paged.length} messages`);
    assert.deepEqual([...paged].sort((x, y) => x - y), paged, 'ascending');
    assert.equal(new Set(paged).size, paged.length, 'each once');
    assert.deepEqual(paged.filter((q) => q >= 8), [11, 12], `from the new add on, nothing of 8..10: ${paged}`);
    assert.deepEqual(paged.filter((q) => q < 8 && q < 4), [], 'nothing before its first add');
    assert.equal((await call(c, '/group/info', { group_id: gid })).joined_seq, 11);
    const back = await groupItem(c, gid);
    assert.equal(back.left, false);
    assert.equal(back.noreadnum, 2, 'unread: the new add and the message after it, not the gap');
    // the members who stayed see everything
    assert.deepEqual(seqs(await historyAll(b, gid)), range(1, 12));
  });

  test('POST /chat/sync: "g<id>" cursors, limit and more across 1:1 and groups; bad keys 400', async () => {
    const [o, a, b] = await users(3, 'my');
    const g1 = (await create(o, [a])).group.group_id;
    const g2 = (await create(b, [a])).group.group_id;
    for (let i = 0; i < 7; i++) await gsend(o, g1, `g1 ${i}`);
    for (let i = 0; i < 3; i++) await send(srv, b, a, `1:1 ${i}`);
    for (let i = 0; i < 4; i++) await gsend(b, g2, `g2 ${i}`);
    const { byKey, pages } = await syncAll(a, {}, 3);
    assert.deepEqual(seqs(byKey[`g${g1}`]), range(1, 8));
    assert.deepEqual(seqs(byKey[`g${g2}`]), range(1, 5));
    assert.deepEqual(seqs(byKey[String(b.id)]), range(1, 3));
    assert.ok(pages.length >= 6, `paged by the limit: ${pages.length} answers`);
    // the first answer: most recent conversation first, each group item {group_id, messages, more}
    const first = pages[0].conversations;
    assert.equal(first[0].group_id, g2, 'g2 has the newest message');
    assert.equal(first[0].userid, undefined);
    assert.deepEqual(Object.keys(first[0]).sort(), ['group_id', 'messages', 'more']);
    assert.equal(first[0].more, true);
    for (const m of first[0].messages) assert.equal(m.group_id, g2);
    // caught up
    const cursors = { [`g${g1}`]: 8, [`g${g2}`]: 5, [b.id]: 3 };
    assert.deepEqual(ok(await P(a, '/chat/sync', { cursors })), { conversations: [] });
    const one = ok(await P(a, '/chat/sync', { cursors: { ...cursors, [`g${g1}`]: 6 } }));
    assert.deepEqual(one.conversations.map((c) => [c.group_id, seqs(c.messages), c.more]), [[g1, [7, 8], false]]);
    // a group the user is no member of is ignored, like a 1:1 key of no conversation
    const [x] = await users(1, 'myx');
    const gx = (await create(x, [])).group.group_id;
    assert.deepEqual(ok(await P(a, '/chat/sync', { cursors: { ...cursors, [`g${gx}`]: 0 } })), { conversations: [] });
    for (const key of ['gx', 'g', 'g0', 'g-1', 'g01', 'G1', 'g1.5', `g ${g1}`]) {
      fails(await P(a, '/chat/sync', { cursors: { [key]: 0 } }), 400, 'bad_field', null, `cursor key ${JSON.stringify(key)}`);
    }
    fails(await P(a, '/chat/sync', { cursors: { [`g${g1}`]: -1 } }), 400, 'bad_field', null, 'a negative group cursor');
    fails(await P(a, '/chat/sync', { cursors: { [`g${g1}`]: 'x' } }), 400, 'bad_field', null, 'a string group cursor');
  });
});

describe('chat list, unread, read, mute', () => {
  test('one list of 1:1 and groups in recency order, with chat_type, the last sender, computed unread', async () => {
    const [me, p, o, q] = await users(4, 'cl');
    await send(srv, p, me, '1:1 first');
    const g1 = (await create(o, [me, q], 'first group')).group.group_id;
    await send(srv, me, q, 'me to q');
    const g2 = (await create(me, [o], 'second group')).group.group_id;
    await gsend(q, g1, 'q in g1');
    await gsend(o, g1, 'o in g1');
    let l = await list(me);
    assert.deepEqual(
      l.map((c) => [c.chat_type, c.chat_type === 'group' ? c.group_id : c.userid]),
      [['group', g1], ['group', g2], ['single', q.id], ['single', p.id]],
      'most recent first, 1:1 and groups mixed',
    );
    const it = l[0];
    for (const k of ['group_id', 'name', 'avatar', 'type', 'data', 'time', 'noreadnum', 'last_message_id', 'last_seq', 'from_id', 'from_username', 'muted', 'role', 'member_count', 'dissolved', 'left']) {
      assert.ok(k in it, `group item has ${k}: ${JSON.stringify(it)}`);
    }
    assert.equal(it.userid, undefined, 'a group item has no userid');
    assert.deepEqual(
      [it.name, it.type, it.data, it.from_id, it.from_username, it.last_seq, it.role, it.member_count, it.muted, it.dissolved, it.left],
      ['first group', 'text', 'o in g1', o.id, o.username, 3, 'member', 3, false, false, false],
    );
    assert.equal(it.noreadnum, 3, 'create + two messages, none by me');
    assert.equal(l[1].noreadnum, 0, 'my own group: its create message is mine');
    assert.equal(l[1].role, 'owner');
    assert.equal(l[1].from_username, me.username);
    assert.equal(typeof l[2].online, 'boolean', '1:1 items keep online');
    assert.equal(l[3].noreadnum, 1);
    let u = await unread(me);
    assert.equal(u.total, 4, '1:1 and groups together');
    assert.deepEqual(u.conversations, [{ userid: p.id, noreadnum: 1 }]);
    assert.deepEqual(u.groups, [{ group_id: g1, noreadnum: 3, muted: false }]);

    // sending moves my read position: my own message is not unread, and the older ones are read
    await gsend(me, g1, 'me in g1');
    await gsend(q, g1, 'q again');
    l = await list(me);
    assert.equal(l[0].group_id, g1);
    assert.equal(l[0].noreadnum, 1, 'only what came after my own message');
    assert.equal(l[0].from_username, q.username);
    // a 1:1 message moves its conversation to the top
    await send(srv, p, me, '1:1 again');
    l = await list(me);
    assert.deepEqual(l.map((c) => c.group_id ?? c.userid).slice(0, 2), [p.id, g1]);
    assert.equal(l[0].chat_type, 'single');
    // a system message moves a group too, and names its actor
    await call(me, '/group/role', { group_id: g2, userid: o.id, role: 'admin' }); // mine: nothing unread
    await call(o, '/group/update', { group_id: g2, name: 'renamed' });
    l = await list(me);
    assert.deepEqual([l[0].group_id, l[0].name, l[0].type, l[0].from_id, l[0].noreadnum], [g2, 'renamed', 'system', o.id, 1]);
  });

  test('/chat/read {group_id} clears the count and pushes read to the other devices; mute leaves it out of the total', async (t) => {
    const [me, o] = await users(2, 'rd');
    const gid = (await create(o, [me])).group.group_id;
    for (let i = 0; i < 3; i++) await gsend(o, gid, `u${i}`);
    await send(srv, o, me, 'a 1:1 too');
    const [d1, d2] = await Promise.all([ChatSocket.bound(srv, me, t), ChatSocket.bound(srv, me, t)]);
    const so = await ChatSocket.bound(srv, o, t);
    assert.equal((await groupItem(me, gid)).noreadnum, 4);
    assert.equal((await unread(me)).total, 5);

    // mute: the count stays on the item, the total leaves it out; other devices told
    const mu = await call(me, '/group/mute', { group_id: gid, muted: true });
    assert.deepEqual(mu, { group_id: gid, muted: true, total: 1 });
    const pushes = await Promise.all([d1.next(), d2.next()]);
    for (const p of pushes) assert.deepEqual(p, { type: 'mute', group_id: gid, muted: true, total: 1 });
    let u = await unread(me);
    assert.equal(u.total, 1, 'a muted group is not in the total');
    assert.deepEqual(u.groups, [{ group_id: gid, noreadnum: 4, muted: true }]);
    const item = await groupItem(me, gid);
    assert.deepEqual([item.noreadnum, item.muted], [4, true]);
    assert.equal((await call(me, '/group/info', { group_id: gid })).muted, true);
    assert.equal((await call(o, '/group/info', { group_id: gid })).muted, false, 'mute is per member');
    await gsend(o, gid, 'while muted');
    for (const d of [d1, d2]) assert.equal((await d.expect('message')).message.data, 'while muted', 'a muted group still pushes messages');
    assert.equal((await unread(me)).total, 1);
    assert.equal((await call(me, '/chat/read', { userid: o.id })).total, 0, 'a 1:1 read: total without the muted group');
    for (const d of [d1, d2]) await d.collect();
    assert.deepEqual(await call(me, '/group/mute', { group_id: gid, muted: false }), { group_id: gid, muted: false, total: 5 });
    for (const d of [d1, d2]) assert.deepEqual(await d.next(), { type: 'mute', group_id: gid, muted: false, total: 5 });

    // read from d1: d2 is told, d1 is not, the sender gets nothing
    const r = await call(me, '/chat/read', { group_id: gid, client_id: d1.clientId });
    assert.deepEqual(r, { total: 0 });
    assert.deepEqual(await d2.next(), { type: 'read', group_id: gid, total: 0 });
    await d1.quiet('(the reading device is not told)');
    await d2.quiet();
    await so.collect(); // the sender's own pushes so far
    assert.equal((await groupItem(me, gid)).noreadnum, 0);
    u = await unread(me);
    assert.deepEqual(u, { total: 0, conversations: [], groups: [] });
    // a read with nothing new pushes nothing
    assert.deepEqual(await call(me, '/chat/read', { group_id: String(gid) }), { total: 0 });
    await d1.quiet('(nothing was unread)');
    await d2.quiet('(nothing was unread)');
    await so.quiet('(no receipt-like push to the group)');
    // new messages count again, from the read position
    await gsend(o, gid, 'after the read');
    await gsend(o, gid, 'and another');
    assert.equal((await groupItem(me, gid)).noreadnum, 2);
    assert.equal((await unread(me)).total, 2);
  });
});

test('mute and read over a socket call: the calling socket gets the result, the user\'s other device the push', async (t) => {
  const [me, o] = await users(2, 'rc');
  const gid = (await create(o, [me])).group.group_id;
  await gsend(o, gid, 'one');
  const [d1, d2] = await Promise.all([ChatSocket.bound(srv, me, t), ChatSocket.bound(srv, me, t)]);
  d1.sendJson({ type: 'call', id: 'm', path: '/group/mute', body: { group_id: gid, muted: true } });
  assert.deepEqual(await d1.expect('result'), { type: 'result', id: 'm', data: { group_id: gid, muted: true, total: 0 } });
  assert.deepEqual(await d2.next(), { type: 'mute', group_id: gid, muted: true, total: 0 });
  await d1.quiet('(the calling socket is not pushed its own mute)');
  d1.sendJson({ type: 'call', id: 'r', path: '/chat/read', body: { group_id: gid } });
  assert.deepEqual(await d1.expect('result'), { type: 'result', id: 'r', data: { total: 0 } });
  assert.deepEqual(await d2.next(), { type: 'read', group_id: gid, total: 0 });
  await d1.quiet('(the calling socket is not pushed its own read)');
  await d2.quiet();
  assert.equal((await groupItem(me, gid)).noreadnum, 0);
});

describe('presence and events', () => {
  test('a group member with no 1:1 conversation sees another member come and go; a non-member does not', async (t) => {
    const [a, b, x] = await users(3, 'pr');
    await create(a, [b]);
    const sa = (await ChatSocket.bound(srv, a, t)).watchPresence();
    const sx = (await ChatSocket.bound(srv, x, t)).watchPresence();
    const sb = await ChatSocket.bound(srv, b, t);
    assert.deepEqual(await sa.next(), { type: 'presence', uid: b.id, online: true, last_seen: null });
    const before = Date.now();
    sb.terminate();
    const off = await sa.next(GRACE + 3000);
    assert.deepEqual([off.type, off.uid, off.online], ['presence', b.id, false]);
    assert.ok(off.last_seen >= before - 50, 'last_seen is when the socket closed');
    await sa.quiet();
    await sx.quiet('(a non-member is not told)');
    const info = await call(a, '/group/info', { group_id: (await list(a))[0].group_id });
    const mb = info.members.find((m) => m.userid === b.id);
    assert.deepEqual([mb.online, mb.last_seen], [false, off.last_seen], 'info carries online and last_seen');
  });

  test('a user sharing two groups and a 1:1 conversation with another is told of it once per change', async (t) => {
    const [a, b] = await users(2, 'po');
    await create(a, [b]);
    await create(b, [a]);
    await send(srv, b, a, 'and a 1:1');
    const sa = (await ChatSocket.bound(srv, a, t)).watchPresence();
    await sa.collect();
    const sb = await ChatSocket.bound(srv, b, t);
    assert.deepEqual(await sa.next(), { type: 'presence', uid: b.id, online: true, last_seen: null });
    sb.terminate();
    assert.equal((await sa.next(GRACE + 3000)).online, false);
    await sa.quiet('(one push per change, not one per shared conversation)');
  });

  test('a removed member is no longer told of presence', async (t) => {
    const [a, b, c] = await users(3, 'pq');
    const gid = (await create(a, [b, c])).group.group_id;
    await call(a, '/group/remove', { group_id: gid, userid: c.id });
    const sc = (await ChatSocket.bound(srv, c, t)).watchPresence();
    const sa = (await ChatSocket.bound(srv, a, t)).watchPresence();
    const sb = await ChatSocket.bound(srv, b, t);
    assert.deepEqual(await sa.next(), { type: 'presence', uid: b.id, online: true, last_seen: null });
    sb.terminate();
    assert.equal((await sa.next(GRACE + 3000)).online, false);
    const got = (await sc.collect()).filter((m) => m.type === 'presence' && m.uid === b.id);
    assert.deepEqual(got, [], 'c, removed, hears nothing of b');
  });

  test('group events (typing) reach every other member\'s devices, not the sender\'s; a non-member gets not_member', async (t) => {
    const [a, b, c, x] = await users(4, 'ev');
    const gid = (await create(a, [b, c])).group.group_id;
    const [a1, a2, b1, b2, c1, x1] = await Promise.all([a, a, b, b, c, x].map((u) => ChatSocket.bound(srv, u, t)));
    a1.sendJson({ type: 'event', group_id: gid, data: { typing: true } });
    const want = { type: 'event', from_id: a.id, group_id: gid, data: { typing: true } };
    for (const s of [b1, b2, c1]) assert.deepEqual(await s.next(), want);
    for (const s of [a1, a2, b1, b2, c1, x1]) await s.quiet('(one event each, none to the sender\'s devices or outsiders)');
    b2.sendJson({ type: 'event', group_id: String(gid), data: 'typing' });
    for (const s of [a1, a2, c1]) assert.deepEqual(await s.next(), { type: 'event', from_id: b.id, group_id: gid, data: 'typing' });
    await b1.quiet();
    x1.sendJson({ type: 'event', group_id: gid, data: { typing: true } });
    const e = await x1.expect('error');
    assert.equal(e.code, 'not_member');
    for (const s of [a1, b1, c1]) await s.quiet('(the outsider\'s event went nowhere)');
    x1.sendJson({ type: 'event', group_id: 987654321, data: 1 });
    const e2 = await x1.expect('error');
    assert.ok(['not_member', 'not_found'].includes(e2.code), `no such group: ${e2.code}`);
    // removed: refused too
    await call(a, '/group/remove', { group_id: gid, userid: c.id });
    for (const s of [a1, a2, b1, b2, c1]) await s.expect('message'); // the removal
    c1.sendJson({ type: 'event', group_id: gid, data: { typing: true } });
    assert.equal((await c1.expect('error')).code, 'not_member');
    a1.sendJson({ type: 'event', group_id: gid, data: 'after' });
    for (const s of [b1, b2]) assert.deepEqual(await s.next(), { type: 'event', from_id: a.id, group_id: gid, data: 'after' });
    await c1.quiet('(a removed member gets no events)');
    // unbound
    const raw = await ChatSocket.open(srv, t);
    raw.sendJson({ type: 'event', group_id: gid, data: 1 });
    assert.equal((await raw.expect('error')).code, 'not_bound');
    // dissolved
    await call(a, '/group/dissolve', { group_id: gid });
    for (const s of [a1, a2, b1, b2]) await s.expect('message');
    b1.sendJson({ type: 'event', group_id: gid, data: 'anyone?' });
    assert.equal((await b1.expect('error')).code, 'group_dissolved');
    await a1.quiet('(no events in a dissolved group)');
  });

  test('group events count against --event-rate like 1:1 events', async (t) => {
    const SECRET2 = crypto.randomBytes(16).toString('hex');
    const own = await startServer({ options: { 'event-rate': 2, 'jwt-secret': SECRET2 } });
    t.after(() => own.stop());
    const now = Math.floor(Date.now() / 1000);
    const [a, b] = await Promise.all(
      ['era', 'erb'].map(async (p) => {
        const token = mintJwt({ sub: uname(p), exp: now + 600, iat: now }, SECRET2);
        return { ...ok(await get(own, '/user/me', { token })), token };
      }),
    );
    const gid = ok(await post(own, '/group/create', { name: 'rate', members: [b.id] }, { token: a.token })).group.group_id;
    const [sa, sb] = await Promise.all([ChatSocket.bound(own, a, t), ChatSocket.bound(own, b, t)]);
    for (let i = 0; i < 10; i++) sa.sendJson({ type: 'event', group_id: gid, data: i });
    // a group event is checked against the store first: wait until each of the ten is delivered or refused
    const errs = [];
    const got = [];
    for (let deadline = Date.now() + 3000; errs.length + got.length < 10 && Date.now() < deadline; ) {
      errs.push(...(await sa.collect()).filter((m) => m.type === 'error'));
      got.push(...(await sb.collect()).filter((m) => m.type === 'event'));
      if (errs.length + got.length < 10) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(errs.length >= 1 && errs.every((e) => e.code === 'rate_limited'), `rate_limited past the rate: ${JSON.stringify(errs).slice(0, 200)}`);
    assert.ok(got.length >= 1 && got.length <= 6, `some events got through, bounded by the rate (${got.length} of 10)`);
    assert.equal(got.length + errs.length, 10, 'each event delivered or refused');
  });
});
