// Recall, delete-for-me, image sizes and GET /chat/config (issue 15): every
// endpoint over HTTP and the socket's call op, their errors, the pushes,
// how a recalled or hidden message appears in history, both syncs and the
// chat list, an offline device learning both through POST /chat/sync,
// groups, and the recall window. Runs on SQLite, and on PostgreSQL with
// CHATD_TEST_STORE (chat_ prefix).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, must, post, registerAll, send, uname } from './lib/chat.mjs';

const srv = await startServer({ options: { 'send-rate': 0 } });
after(() => srv.stop());

const P = (user, path, body) => post(srv, path, body, { token: user.token });
const M = (user, path, body) => must(srv, 'POST', path, { token: user.token, body });
const G = (user, path) => must(srv, 'GET', path, { token: user.token });

async function pair(prefix) {
  return registerAll(srv, [uname(prefix + 'a'), uname(prefix + 'b')]);
}

/** A socket call: sends it and returns the answer (result or error). */
async function call(s, id, path, body) {
  s.sendJson({ type: 'call', id, path, body });
  return s.next();
}

const notOf = (m) => JSON.parse(m.data).message_id;

/** The ten keys of every message, in the order both stores write them (answers are byte-identical). */
const KEYS = ['id', 'seq', 'to_id', 'from_id', 'from_username', 'from_userpic', 'type', 'data', 'time', 'client_msg_id'];

test('GET /chat/config tells clients the limits', async () => {
  const [a] = await pair('cf');
  const c = await G(a, '/chat/config');
  assert.deepEqual(c, {
    recall_window: 120,
    max_text: 4096,
    max_upload: 10485760,
    page_limit: 100,
    message_types: ['text', 'image', 'emoji'],
  });
  fails(await get(srv, '/chat/config'), 401, 'unauthorized');
});

test('recall 1:1: answer, pushes, history, syncs, chat list, unread', async (t) => {
  const [a, b] = await pair('r1');
  const a1 = await ChatSocket.bound(srv, a, t);
  const a2 = await ChatSocket.bound(srv, a, t);
  const b1 = await ChatSocket.bound(srv, b, t);
  const m1 = await send(srv, a, b, 'keep');
  const m2 = await send(srv, a, b, 'secret text');
  for (const s of [a1, a2, b1]) await s.collect();
  assert.equal((await G(b, '/chat/unread')).total, 2);

  const ans = await M(a, '/chat/recall', { message_id: m2.id, client_id: a1.clientId });
  assert.equal(ans.message.id, m2.id);
  assert.equal(ans.message.recalled, true);
  assert.equal(ans.message.data, '');
  assert.equal(ans.message.type, 'text');
  assert.equal(ans.notice.type, 'recall');
  assert.equal(ans.notice.from_id, a.id);
  assert.equal(ans.notice.to_id, b.id);
  assert.equal(ans.notice.seq, m2.seq + 1);
  assert.deepEqual(JSON.parse(ans.notice.data), { message_id: m2.id });

  // the notice is pushed as a message to every device but the caller's
  assert.deepEqual(await a1.collect(), []);
  for (const s of [a2, b1]) assert.deepEqual(await s.collect(), [{ type: 'message', message: ans.notice }]);

  // unread: the notice adds none, the recalled unread message no longer counts
  assert.equal((await G(b, '/chat/unread')).total, 1);

  for (const u of [a, b]) {
    const h = await G(u, `/chat/history?userid=${u === a ? b.id : a.id}`);
    assert.deepEqual(h.map((m) => m.id), [ans.notice.id, m2.id, m1.id]);
    assert.equal(h[1].recalled, true);
    assert.equal(h[1].data, '');
    assert.deepEqual(Object.keys(h[1]), [...KEYS, 'recalled']);
    assert.deepEqual(Object.keys(h[2]), KEYS);
    assert.equal(h[2].recalled, undefined);
    assert.equal(h[2].data, 'keep');
    const s = await G(u, '/chat/sync?after=0');
    assert.equal(s.find((m) => m.id === m2.id).recalled, true);
    const c = await M(u, '/chat/sync', { cursors: {} });
    const msgs = c.conversations[0].messages;
    assert.equal(msgs.find((m) => m.id === m2.id).data, '');
    assert.equal(msgs[msgs.length - 1].type, 'recall');
    const list = await G(u, '/chat/list');
    assert.equal(list[0].type, 'recall');
    assert.equal(list[0].last_message_id, ans.notice.id);
  }
  assert.equal((await G(b, '/chat/list'))[0].noreadnum, 1);

  // idempotent: a retry (the first answer lost) answers the stored notice
  // and pushes it again, so online devices need not wait for a sync
  const again = await M(a, '/chat/recall', { message_id: m2.id, client_id: a1.clientId });
  assert.deepEqual(again.notice, ans.notice);
  assert.deepEqual(again.message, ans.message);
  assert.deepEqual(await a1.collect(), []);
  for (const s of [a2, b1]) assert.deepEqual(await s.collect(), [{ type: 'message', message: ans.notice }]);
  // nothing new stored
  assert.equal((await G(b, `/chat/history?userid=${a.id}`)).length, 3);
  assert.equal((await G(b, '/chat/unread')).total, 1);
});

test('a send retried after its message was recalled answers and pushes it recalled', async (t) => {
  const [a, b] = await pair('rd');
  const b1 = await ChatSocket.bound(srv, b, t);
  const m = await M(a, '/chat/send', { to_id: b.id, type: 'text', data: 'gone soon', client_msg_id: 'rd-1' });
  await M(a, '/chat/recall', { message_id: m.id });
  await b1.collect();
  const dup = await M(a, '/chat/send', { to_id: b.id, type: 'text', data: 'gone soon', client_msg_id: 'rd-1' });
  assert.equal(dup.id, m.id);
  assert.equal(dup.recalled, true);
  assert.equal(dup.data, '');
  assert.deepEqual(Object.keys(dup), [...KEYS, 'recalled']);
  assert.deepEqual(await b1.collect(), [{ type: 'message', message: dup }]);
  // a group's too
  const g = (await M(a, '/group/create', { name: 'rdg', members: [b.id] })).group;
  const gm = await M(a, '/chat/send', { group_id: g.group_id, type: 'text', data: 'group gone', client_msg_id: 'rd-2' });
  await M(a, '/chat/recall', { message_id: gm.id });
  await b1.collect();
  const gdup = await M(a, '/chat/send', { group_id: g.group_id, type: 'text', data: 'group gone', client_msg_id: 'rd-2' });
  assert.equal(gdup.id, gm.id);
  assert.equal(gdup.recalled, true);
  assert.equal(gdup.data, '');
  assert.deepEqual(await b1.collect(), [{ type: 'message', message: gdup }]);
});

test('a repeated image send answers the stored size, not the retry\'s', async () => {
  const [a, b] = await pair('rs');
  const m = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/r.png', width: 640, height: 480, client_msg_id: 'rs-1' });
  const dup = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/r.png', width: 1, height: 2, client_msg_id: 'rs-1' });
  assert.equal(dup.id, m.id);
  assert.deepEqual([dup.width, dup.height], [640, 480]);
  const bare = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/r.png', client_msg_id: 'rs-1' });
  assert.deepEqual([bare.width, bare.height], [640, 480]);
  const g = (await M(a, '/group/create', { name: 'rsg', members: [b.id] })).group;
  const gm = await M(a, '/chat/send', { group_id: g.group_id, type: 'image', data: '/media/g.png', width: 12, height: 34, client_msg_id: 'rs-2' });
  for (const size of [{ width: 5, height: 6 }, {}]) {
    const gdup = await M(a, '/chat/send', { group_id: g.group_id, type: 'image', data: '/media/g.png', ...size, client_msg_id: 'rs-2' });
    assert.equal(gdup.id, gm.id);
    assert.deepEqual([gdup.width, gdup.height], [12, 34]);
  }
});

test('1:1 chat list items name the last message\'s sender (from_id)', async () => {
  const [a, b] = await pair('lf');
  await send(srv, a, b, 'from a');
  for (const u of [a, b]) assert.equal((await G(u, '/chat/list'))[0].from_id, a.id);
  const r = await send(srv, b, a, 'from b');
  for (const u of [a, b]) assert.equal((await G(u, '/chat/list'))[0].from_id, b.id);
  const n = (await M(b, '/chat/recall', { message_id: r.id })).notice;
  for (const u of [a, b]) {
    const item = (await G(u, '/chat/list'))[0];
    assert.equal(item.type, 'recall');
    assert.equal(item.last_message_id, n.id);
    assert.equal(item.from_id, b.id);
  }
});

test('recall errors', async (t) => {
  const [a, b] = await pair('re');
  const [c] = await pair('rc');
  const m = await send(srv, a, b, 'hi');
  fails(await P(a, '/chat/recall', {}), 400, 'missing_field', 'message_id');
  fails(await P(a, '/chat/recall', { message_id: 'x' }), 400, 'bad_field', 'message_id');
  fails(await P(a, '/chat/recall', { message_id: 0 }), 400, 'bad_field', 'message_id');
  fails(await P(a, '/chat/recall', { message_id: m.id, client_id: 5 }), 400, 'bad_field', 'client_id');
  fails(await P(a, '/chat/recall', { message_id: m.id + 1000000 }), 404, 'not_found');
  fails(await P(c, '/chat/recall', { message_id: m.id }), 404, 'not_found');
  fails(await P(b, '/chat/recall', { message_id: m.id }), 403, 'forbidden');
  const n = (await M(a, '/chat/recall', { message_id: m.id })).notice;
  fails(await P(a, '/chat/recall', { message_id: n.id }), 403, 'forbidden');
  fails(await get(srv, '/chat/recall', { token: a.token }), 405, 'method_not_allowed');
  fails(await post(srv, '/chat/recall', { message_id: m.id }), 401, 'unauthorized');
  // clients may not send a recall notice
  fails(await P(a, '/chat/send', { to_id: b.id, type: 'recall', data: JSON.stringify({ message_id: m.id }) }), 400, 'bad_field', 'recall');
  const s = await ChatSocket.bound(srv, a, t);
  s.sendMsg(b, '{"message_id":1}', { type: 'recall', client_msg_id: 'r1' });
  const e = await s.expect('error');
  assert.equal(e.code, 'bad_field');
});

test('recall over the socket call op', async (t) => {
  const [a, b] = await pair('rs');
  const sa = await ChatSocket.bound(srv, a, t);
  const sb = await ChatSocket.bound(srv, b, t);
  const m = await send(srv, a, b, 'sock');
  await sa.collect();
  await sb.collect();
  const r = await call(sa, 'c1', '/chat/recall', { message_id: m.id });
  assert.equal(r.type, 'result');
  assert.equal(r.id, 'c1');
  assert.equal(r.data.message.recalled, true);
  assert.equal(r.data.notice.type, 'recall');
  assert.deepEqual(await sa.collect(), []); // the caller's socket gets the result only
  assert.deepEqual(await sb.collect(), [{ type: 'message', message: r.data.notice }]);
  const e = await call(sb, 'c2', '/chat/recall', { message_id: m.id });
  assert.equal(e.type, 'error');
  assert.equal(e.code, 'forbidden');
  assert.equal(e.id, 'c2');
});

test('delete for me: answer, push to own devices, appearance, sync cursor', async (t) => {
  const [a, b] = await pair('dl');
  const [c] = await pair('dc');
  const a1 = await ChatSocket.bound(srv, a, t);
  const a2 = await ChatSocket.bound(srv, a, t);
  const b1 = await ChatSocket.bound(srv, b, t);
  const m1 = await send(srv, a, b, 'one');
  const m2 = await send(srv, b, a, 'two');
  const other = await send(srv, c, b, 'not for a');
  for (const s of [a1, a2, b1]) await s.collect();

  const d = await M(a, '/chat/delete', { message_ids: [m2.id, other.id, m2.id, 999999999], client_id: a1.clientId });
  assert.deepEqual(d.message_ids, [m2.id]);
  assert.equal(d.cursor, 1);
  assert.deepEqual(await a1.collect(), []);
  assert.deepEqual(await a2.collect(), [{ type: 'deleted', message_ids: [m2.id], cursor: 1 }]);
  assert.deepEqual(await b1.collect(), []);

  const h = await G(a, `/chat/history?userid=${b.id}`);
  assert.equal(h[0].id, m2.id);
  assert.equal(h[0].deleted, true);
  assert.equal(h[0].data, '');
  assert.deepEqual(Object.keys(h[0]), [...KEYS, 'deleted']);
  assert.equal(h[1].deleted, undefined);
  assert.equal((await G(a, '/chat/list'))[0].deleted, true);
  assert.equal((await G(a, '/chat/sync?after=0')).find((m) => m.id === m2.id).deleted, true);
  // only for a
  const hb = await G(b, `/chat/history?userid=${a.id}`);
  assert.equal(hb[0].deleted, undefined);
  assert.equal(hb[0].data, 'two');

  // idempotent: same answer, no push, cursor unchanged
  const again = await M(a, '/chat/delete', { message_ids: [m2.id] });
  assert.deepEqual(again, { message_ids: [m2.id], cursor: 1 });
  assert.deepEqual(await a2.collect(), []);
  const d2 = await call(a1, 'd2', '/chat/delete', { message_ids: [m1.id] });
  assert.equal(d2.type, 'result');
  assert.deepEqual(d2.data, { message_ids: [m1.id], cursor: 2 });
  assert.deepEqual(await a2.collect(), [{ type: 'deleted', message_ids: [m1.id], cursor: 2 }]);

  // an offline device: POST /chat/sync with deleted_after
  const s0 = await M(a, '/chat/sync', { cursors: {}, deleted_after: 0 });
  assert.deepEqual(s0.deleted, { message_ids: [m2.id, m1.id], cursor: 2, more: false });
  const msgs = s0.conversations[0].messages;
  assert.deepEqual(msgs.map((m) => m.deleted === true), [true, true]);
  const s1 = await M(a, '/chat/sync', { cursors: {}, deleted_after: 1 });
  assert.deepEqual(s1.deleted, { message_ids: [m1.id], cursor: 2, more: false });
  const s2 = await M(a, '/chat/sync', { cursors: {}, deleted_after: 2 });
  assert.deepEqual(s2.deleted, { message_ids: [], cursor: 2, more: false });
  assert.equal((await M(a, '/chat/sync', { cursors: {} })).deleted, undefined);

  fails(await P(a, '/chat/sync', { deleted_after: -1 }), 400, 'bad_field', 'deleted_after');
  fails(await P(a, '/chat/sync', { deleted_after: 'x' }), 400, 'bad_field', 'deleted_after');
  fails(await P(a, '/chat/delete', {}), 400, 'missing_field', 'message_ids');
  fails(await P(a, '/chat/delete', { message_ids: 5 }), 400, 'bad_field', 'message_ids');
  fails(await P(a, '/chat/delete', { message_ids: [] }), 400, 'bad_field', 'message_ids');
  fails(await P(a, '/chat/delete', { message_ids: Array.from({ length: 101 }, (_, i) => i + 1) }), 400, 'bad_field', 'message_ids');
  fails(await P(a, '/chat/delete', { message_ids: [1, 'x'] }), 400, 'bad_field', 'message_ids[1]');
  fails(await P(a, '/chat/delete', { message_ids: [0] }), 400, 'bad_field', 'message_ids[0]');
  // ids the caller may not see: not an error, not listed
  assert.deepEqual(await M(c, '/chat/delete', { message_ids: [m1.id] }), { message_ids: [], cursor: 0 });
});

test('an offline device learns a recall through POST /chat/sync', async () => {
  const [a, b] = await pair('off');
  const m = await send(srv, a, b, 'oops');
  const before = await M(b, '/chat/sync', { cursors: {} });
  const cursor = before.conversations[0].messages.at(-1).seq;
  await M(a, '/chat/recall', { message_id: m.id });
  const after = await M(b, '/chat/sync', { cursors: { [a.id]: cursor } });
  const got = after.conversations[0].messages;
  assert.equal(got.length, 1);
  assert.equal(got[0].type, 'recall');
  assert.equal(notOf(got[0]), m.id);
});

test('groups: recall by the sender, pushed to every member; not a member any more', async (t) => {
  const [a, b] = await pair('gr');
  const [c] = await pair('gc');
  const g = (await M(a, '/group/create', { name: 'rg', members: [b.id, c.id] })).group;
  const sb = await ChatSocket.bound(srv, b, t);
  const sc = await ChatSocket.bound(srv, c, t);
  const m = await M(a, '/chat/send', { group_id: g.group_id, type: 'text', data: 'group oops' });
  const keep = await M(b, '/chat/send', { group_id: g.group_id, type: 'text', data: 'stays' });
  await sb.collect();
  await sc.collect();
  assert.equal((await G(c, '/chat/unread')).total, 3); // create, m, keep
  fails(await P(b, '/chat/recall', { message_id: m.id }), 403, 'forbidden');
  const r = await M(a, '/chat/recall', { message_id: m.id });
  assert.equal(r.notice.group_id, g.group_id);
  assert.equal(r.notice.type, 'recall');
  for (const s of [sb, sc]) assert.deepEqual(await s.collect(), [{ type: 'message', message: r.notice }]);
  // a retry: the same notice, pushed to every member again
  const again = await M(a, '/chat/recall', { message_id: m.id });
  assert.deepEqual(again.notice, r.notice);
  for (const s of [sb, sc]) assert.deepEqual(await s.collect(), [{ type: 'message', message: r.notice }]);
  // c had not read it: its count loses it, and the notice adds nothing
  assert.equal((await G(c, '/chat/unread')).total, 2);
  const item = (await G(c, '/chat/list')).find((i) => i.group_id === g.group_id);
  assert.equal(item.noreadnum, 2);
  assert.deepEqual((await G(c, '/chat/unread')).groups, [{ group_id: g.group_id, noreadnum: 2, muted: false }]);
  assert.equal(item.type, 'recall');
  const h = await G(c, `/chat/history?group_id=${g.group_id}`);
  assert.equal(h.find((x) => x.id === m.id).recalled, true);
  assert.equal(h.find((x) => x.id === keep.id).data, 'stays');
  // a member who left cannot recall
  const k2 = await M(b, '/chat/send', { group_id: g.group_id, type: 'text', data: 'b leaves' });
  await M(b, '/group/leave', { group_id: g.group_id });
  fails(await P(b, '/chat/recall', { message_id: k2.id }), 403, 'not_member');
  // delete-for-me of a group message
  const d = await M(c, '/chat/delete', { message_ids: [keep.id] });
  assert.deepEqual(d.message_ids, [keep.id]);
  const hc = await G(c, `/chat/history?group_id=${g.group_id}`);
  assert.equal(hc.find((x) => x.id === keep.id).deleted, true);
  // dissolved
  const m3 = await M(a, '/chat/send', { group_id: g.group_id, type: 'text', data: 'late' });
  await M(a, '/group/dissolve', { group_id: g.group_id });
  fails(await P(a, '/chat/recall', { message_id: m3.id }), 409, 'group_dissolved');
});

test('image width and height', async (t) => {
  const [a, b] = await pair('im');
  const m = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/x.png', width: 640, height: 480 });
  assert.equal(m.width, 640);
  assert.equal(m.height, 480);
  const plain = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/y.png' });
  assert.equal('width' in plain, false);
  const h = await G(b, `/chat/history?userid=${a.id}`);
  assert.deepEqual(Object.keys(h[1]), [...KEYS, 'width', 'height']);
  assert.deepEqual(Object.keys(m), [...KEYS, 'width', 'height']);
  assert.equal(h[1].width, 640);
  assert.equal(h[1].height, 480);
  assert.equal('width' in h[0], false);
  const m2 = await M(a, '/chat/send', { to_id: b.id, type: 'image', data: '/media/z.png', width: 1, height: 65535 });
  const item = (await G(b, '/chat/list'))[0];
  assert.equal(item.width, 1);
  assert.equal(item.height, 65535);
  const sy = await M(b, '/chat/sync', { cursors: {} });
  assert.equal(sy.conversations[0].messages.find((x) => x.id === m2.id).height, 65535);
  for (const bad of [0, 65536, 1.5, '10', -1, true]) {
    fails(await P(a, '/chat/send', { to_id: b.id, type: 'image', data: '/m.png', width: bad }), 400, 'bad_field', 'width');
    fails(await P(a, '/chat/send', { to_id: b.id, type: 'image', data: '/m.png', height: bad }), 400, 'bad_field', 'height');
  }
  fails(await P(a, '/chat/send', { to_id: b.id, type: 'text', data: 'x', width: 5 }), 400, 'bad_field', 'width');
  // over the socket too; and a group image
  const s = await ChatSocket.bound(srv, a, t);
  s.sendJson({ type: 'send', message: { to_id: b.id, type: 'image', data: '/media/s.png', width: 3, height: 4, client_msg_id: 'img1' } });
  const ack = await s.expect('ack');
  assert.equal(ack.message.width, 3);
  assert.equal(ack.message.height, 4);
  s.sendJson({ type: 'send', message: { to_id: b.id, type: 'image', data: '/media/s.png', width: 70000, client_msg_id: 'img2' } });
  const err = await s.expect('error');
  assert.equal(err.code, 'bad_field');
  const g = (await M(a, '/group/create', { name: 'img', members: [b.id] })).group;
  const gm = await M(a, '/chat/send', { group_id: g.group_id, type: 'image', data: '/media/g.png', width: 12, height: 34 });
  assert.equal(gm.width, 12);
  const gh = await G(b, `/chat/history?group_id=${g.group_id}`);
  assert.equal(gh[0].height, 34);
  assert.equal((await G(b, '/chat/list')).find((i) => i.group_id === g.group_id).width, 12);
  // a recalled image loses its size
  const r = await M(a, '/chat/recall', { message_id: m.id });
  assert.equal('width' in r.message, false);
  assert.equal(r.message.data, '');
});

test('recall and delete count against --send-rate', async () => {
  const slow = await startServer({ options: { 'send-rate': 1 } });
  try {
    const [a, b] = await Promise.all([uname('sa'), uname('sb')].map((n) => must(slow, 'POST', '/user/register', { body: { username: n, password: 'pw-' + n } })));
    const m = await must(slow, 'POST', '/chat/send', { token: a.token, body: { to_id: b.user.id, type: 'text', data: 's' } });
    await must(slow, 'POST', '/chat/delete', { token: a.token, body: { message_ids: [m.id] } });
    fails(await post(slow, '/chat/recall', { message_id: m.id }, { token: a.token }), 429, 'rate_limited');
    fails(await post(slow, '/chat/delete', { message_ids: [m.id] }, { token: a.token }), 429, 'rate_limited');
  } finally {
    await slow.stop();
  }
});

test('the recall window, and recall turned off', async () => {
  const short = await startServer({ options: { 'recall-window': 1, 'send-rate': 0 } });
  try {
    const [a, b] = await Promise.all([uname('wa'), uname('wb')].map((n) => must(short, 'POST', '/user/register', { body: { username: n, password: 'pw-' + n } })));
    const m = await must(short, 'POST', '/chat/send', { token: a.token, body: { to_id: b.user.id, type: 'text', data: 'w' } });
    const late = await must(short, 'POST', '/chat/send', { token: a.token, body: { to_id: b.user.id, type: 'text', data: 'late' } });
    await must(short, 'POST', '/chat/recall', { token: a.token, body: { message_id: m.id } });
    await sleep(1300);
    fails(await post(short, '/chat/recall', { message_id: late.id }, { token: a.token }), 409, 'recall_window_passed');
    assert.equal((await must(short, 'GET', '/chat/config', { token: a.token })).recall_window, 1);
  } finally {
    await short.stop();
  }
  const off = await startServer({ options: { 'recall-window': 0 } });
  try {
    const n = uname('wo');
    const a = await must(off, 'POST', '/user/register', { body: { username: n, password: 'pw-' + n } });
    fails(await post(off, '/chat/recall', { message_id: 1 }, { token: a.token }), 403, 'recall_disabled');
  } finally {
    await off.stop();
  }
});
