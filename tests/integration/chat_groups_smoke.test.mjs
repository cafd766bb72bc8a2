// Groups, the chat-service side (issue 11): a smoke test of the /group/*
// endpoints, group sends, reads, mute and events over HTTP and the socket
// ("call" op), the pushes they make (one per member device, the origin
// skipped), and the 400s of the validation. The full campaign is
// chat_groups.test.mjs; this one is the chat layer's own check. Runs on
// SQLite, and on PostgreSQL with CHATD_TEST_STORE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, sleep } from './lib/server.mjs';
import { ChatSocket, fails, get, must, ok, post, registerAll, uname } from './lib/chat.mjs';

const MAX = 4;
const srv = await startServer({ options: { 'max-group-members': MAX, 'event-rate': 5 } });
after(() => srv.stop());

const gpost = (user, path, body) => post(srv, path, body, { token: user.token });
const gmust = (user, path, body) => must(srv, 'POST', path, { token: user.token, body });

async function trio(prefix) {
  return registerAll(srv, [uname(prefix + 'a'), uname(prefix + 'b'), uname(prefix + 'c')]);
}

/** The next message of s that is not a presence push, asserted of type. */
async function nextOf(s, type) {
  return s.expect(type);
}

/** A socket call: sends it and returns the answer (result or error). */
async function call(s, id, path, body) {
  s.sendJson({ type: 'call', id, path, body });
  return s.next();
}

test('validation: every field is checked before the store is asked', async () => {
  const [a] = await registerAll(srv, [uname('gv')]);
  fails(await gpost(a, '/group/create', { members: [] }), 400, 'missing_field', 'name');
  fails(await gpost(a, '/group/create', { name: '', members: [] }), 400, 'bad_field', 'name');
  fails(await gpost(a, '/group/create', { name: 'x'.repeat(65), members: [] }), 400, 'bad_field', 'name');
  fails(await gpost(a, '/group/create', { name: 'a\nb', members: [] }), 400, 'bad_field', 'name');
  fails(await gpost(a, '/group/create', { name: 'a\u007fb', members: [] }), 400, 'bad_field', 'name');
  fails(await gpost(a, '/group/create', { name: 'g' }), 400, 'missing_field', 'members');
  fails(await gpost(a, '/group/create', { name: 'g', members: 5 }), 400, 'bad_field', 'members');
  fails(await gpost(a, '/group/create', { name: 'g', members: [1, 2, 3, 4, 5] }), 400, 'bad_field', 'members');
  fails(await gpost(a, '/group/create', { name: 'g', members: [1, 'x'] }), 400, 'bad_field', 'members[1]');
  fails(await gpost(a, '/group/create', { name: 'g', members: [1, 0] }), 400, 'bad_field', 'members[1]');
  fails(await gpost(a, '/group/create', { name: 'g', members: [], avatar: 'javascript:alert(1)' }), 400, 'bad_field', 'avatar');
  fails(await gpost(a, '/group/create', { name: 'g', members: [], avatar: '/x'.repeat(257) }), 400, 'bad_field', 'avatar');
  fails(await gpost(a, '/group/info', {}), 400, 'missing_field', 'group_id');
  fails(await get(srv, '/group/info', { token: a.token }), 400, 'missing_field', 'group_id');
  fails(await get(srv, '/group/info?group_id=x', { token: a.token }), 400, 'bad_field', 'group_id');
  fails(await gpost(a, '/group/add', { group_id: 1, members: [] }), 400, 'bad_field', 'members');
  fails(await gpost(a, '/group/add', { group_id: 'x', members: [2] }), 400, 'bad_field', 'group_id');
  fails(await gpost(a, '/group/remove', { group_id: 1 }), 400, 'missing_field', 'userid');
  fails(await gpost(a, '/group/update', { group_id: 1 }), 400, 'missing_field', 'name or avatar');
  fails(await gpost(a, '/group/role', { group_id: 1, userid: 2, role: 'king' }), 400, 'bad_field', 'role');
  fails(await gpost(a, '/group/mute', { group_id: 1 }), 400, 'missing_field', 'muted');
  fails(await gpost(a, '/group/mute', { group_id: 1, muted: 1 }), 400, 'bad_field', 'muted');
  fails(await gpost(a, '/group/leave', { group_id: -3 }), 400, 'bad_field', 'group_id');
  fails(await get(srv, '/group/nope', { token: a.token }), 404, 'not_found');
  fails(await get(srv, '/group/create', { token: a.token }), 405, 'method_not_allowed');
  fails(await post(srv, '/group/create', { name: 'g', members: [] }), 401, 'unauthorized');
  // sends, history, read, sync
  fails(await gpost(a, '/chat/send', { to_id: 2, group_id: 1, type: 'text', data: 'x' }), 400, 'bad_field', 'group_id');
  fails(await gpost(a, '/chat/send', { group_id: 0, type: 'text', data: 'x' }), 400, 'bad_field', 'group_id');
  fails(await gpost(a, '/chat/send', { group_id: 1, type: 'system', data: '{}' }), 400, 'bad_field', 'system');
  fails(await gpost(a, '/chat/send', { to_id: 2, type: 'system', data: '{}' }), 400, 'bad_field', 'system');
  fails(await get(srv, '/chat/history?userid=2&group_id=1', { token: a.token }), 400, 'bad_field', 'group_id');
  fails(await get(srv, '/chat/history?group_id=0', { token: a.token }), 400, 'bad_field', 'group_id');
  fails(await gpost(a, '/chat/read', { userid: 2, group_id: 1 }), 400, 'bad_field', 'group_id');
  for (const key of ['g', 'g0', 'g07', 'gx', 'G5', 'g-1'])
    fails(await gpost(a, '/chat/sync', { cursors: { [key]: 0 } }), 400, 'bad_field', 'cursors', key);
});

test('socket: call needs a bound socket, an id and a known path; events need one target', async (t) => {
  const [a] = await registerAll(srv, [uname('gs')]);
  const s = await ChatSocket.open(srv, t);
  assert.deepEqual(await call(s, 7, '/group/info', { group_id: 1 }), { type: 'error', code: 'not_bound', msg: 'bind this connection with a token before sending', op: 'call', id: 7 });
  await s.bind(a);
  let e = await call(s, 'q1', '/group/nope', {});
  assert.equal(e.type, 'error');
  assert.equal(e.code, 'not_found');
  assert.equal(e.op, 'call');
  assert.equal(e.id, 'q1');
  e = await call(s, 'q2', '/chat/send', { to_id: 1, type: 'text', data: 'x' });
  assert.equal(e.code, 'not_found', 'send is not a call');
  e = await call(s, 'q3', '/group/create', { members: [] });
  assert.deepEqual([e.code, e.id, e.op], ['missing_field', 'q3', 'call']);
  e = await call(s, undefined, '/group/info', { group_id: 1 });
  assert.deepEqual([e.code, e.op], ['missing_field', 'call']);
  e = await call(s, 'x'.repeat(65), '/group/info', { group_id: 1 });
  assert.deepEqual([e.code, e.op], ['bad_field', 'call']);
  e = await call(s, 'q4', '/group/info', 'nope');
  assert.deepEqual([e.code, e.id], ['bad_field', 'q4']);
  s.sendJson({ type: 'event', to_id: 1, group_id: 1, data: 1 });
  assert.equal((await s.expect('error')).code, 'bad_field');
  s.sendJson({ type: 'send', message: { group_id: 1, type: 'system', data: '{}', client_msg_id: 'c1' } });
  e = await s.expect('error');
  assert.deepEqual([e.code, e.op, e.client_msg_id], ['bad_field', 'send', 'c1']);
  const u = await ChatSocket.open(srv, t);
  u.sendJson({ type: 'event', group_id: 1, data: 1 });
  assert.equal((await u.expect('error')).code, 'not_bound');
  await s.quiet();
});

test('a group: create, pushes to every member device but the origin, send, history, read, mute, events, remove', async (t) => {
  const [a, b, c] = await trio('g1');
  const a1 = await ChatSocket.bound(srv, a, t);
  const a2 = await ChatSocket.bound(srv, a, t);
  const b1 = await ChatSocket.bound(srv, b, t);
  const b2 = await ChatSocket.bound(srv, b, t);
  const c1 = await ChatSocket.bound(srv, c, t);

  // create over HTTP naming a1 as the origin: a1 gets nothing, a2 b1 b2 c1 the "create" message
  const created = await gmust(a, '/group/create', { name: 'Trio', members: [b.id, String(c.id), b.id], client_id: a1.clientId });
  assert.deepEqual(Object.keys(created).sort(), ['group', 'message']);
  const G = created.group.group_id;
  assert.ok(Number.isSafeInteger(G) && G > 0);
  assert.equal(created.message.type, 'system');
  assert.equal(created.message.group_id, G);
  assert.equal(created.message.to_id, undefined);
  for (const s of [a2, b1, b2, c1]) assert.deepEqual(await nextOf(s, 'message'), { type: 'message', message: created.message });
  await a1.quiet('(the origin device)');

  // info, GET and POST and over the socket
  const info = await must(srv, 'GET', `/group/info?group_id=${G}`, { token: b.token });
  assert.equal(info.role, 'member');
  assert.deepEqual(info.members.map((m) => m.userid).sort(), [a.id, b.id, c.id].sort());
  for (const m of info.members) assert.equal(m.online, true, `online of ${m.userid}`);
  assert.deepEqual(await gmust(b, '/group/info', { group_id: G }), info);
  const r = await call(b1, 11, '/group/info', { group_id: G });
  assert.deepEqual(r, { type: 'result', id: 11, data: info });

  // a socket send with group_id: ack to the sender's socket, message to all others
  a1.sendJson({ type: 'send', message: { group_id: G, type: 'text', data: 'hello', client_msg_id: 'm1' } });
  const ack = await a1.expect('ack');
  assert.equal(ack.client_msg_id, 'm1');
  assert.equal(ack.message.group_id, G);
  assert.equal(ack.message.seq, 2);
  for (const s of [a2, b1, b2, c1]) assert.deepEqual(await nextOf(s, 'message'), { type: 'message', message: ack.message });
  // over HTTP, a retry of the same client_msg_id stores nothing new
  const again = await gmust(a, '/chat/send', { group_id: G, type: 'text', data: 'hello', client_msg_id: 'm1', client_id: a1.clientId });
  assert.deepEqual(again, ack.message);
  for (const s of [a2, b1, b2, c1]) await nextOf(s, 'message');
  await a1.quiet();

  const hist = await must(srv, 'GET', `/chat/history?group_id=${G}`, { token: c.token });
  assert.deepEqual(hist.map((m) => m.seq), [2, 1]);

  // list and unread have the group item, without a presence field
  const item = (await must(srv, 'GET', '/chat/list', { token: c.token })).find((i) => i.chat_type === 'group');
  assert.equal(item.group_id, G);
  assert.equal(item.noreadnum, 2);
  assert.equal('online' in item, false, 'group items carry no online');
  const unread = await must(srv, 'GET', '/chat/unread', { token: c.token });
  assert.equal(unread.total, 2);
  assert.deepEqual(unread.groups, [{ group_id: G, noreadnum: 2, muted: false }]);

  // sync with a g<id> cursor
  const sync = await gmust(c, '/chat/sync', { cursors: { [`g${G}`]: 1 } });
  const conv = sync.conversations.find((x) => x.group_id === G);
  assert.deepEqual(conv.messages.map((m) => m.seq), [2]);

  // read: over the socket as a call; c has one device, so nobody else is told
  assert.deepEqual(await call(c1, 'r', '/chat/read', { group_id: G }), { type: 'result', id: 'r', data: { total: 0 } });
  // b reads over HTTP from b1: b2 gets {"type":"read","group_id","total"}
  assert.deepEqual(await gmust(b, '/chat/read', { group_id: G, client_id: b1.clientId }), { total: 0 });
  assert.deepEqual(await b2.expect('read'), { type: 'read', group_id: G, total: 0 });
  assert.deepEqual(await gmust(b, '/chat/read', { group_id: G, client_id: b1.clientId }), { total: 0 });
  await b2.quiet('(a read that changed nothing is not pushed)');
  await b1.quiet();

  // mute: over the socket, b1 gets the result, b2 the push
  const mr = await call(b1, 'm', '/group/mute', { group_id: G, muted: true });
  assert.deepEqual(mr, { type: 'result', id: 'm', data: { group_id: G, muted: true, total: 0 } });
  assert.deepEqual(await b2.expect('mute'), { type: 'mute', group_id: G, muted: true, total: 0 });

  // a group event: the other members' devices, not the sender's own
  b1.sendJson({ type: 'event', group_id: G, data: { typing: true } });
  const ev = { type: 'event', from_id: b.id, group_id: G, data: { typing: true } };
  for (const s of [a1, a2, c1]) assert.deepEqual(await s.expect('event'), ev);
  await b1.quiet();
  await b2.quiet('(the sender gets nothing)');

  // remove c: c gets its removal, and nothing after; c's events are refused
  const removed = await gmust(a, '/group/remove', { group_id: G, userid: c.id, client_id: a1.clientId });
  assert.equal(removed.message.type, 'system');
  assert.equal(JSON.parse(removed.message.data).event, 'remove');
  for (const s of [a2, b1, b2, c1]) assert.deepEqual(await nextOf(s, 'message'), { type: 'message', message: removed.message });
  await a1.quiet();
  await gmust(b, '/chat/send', { group_id: G, type: 'text', data: 'after', client_id: b1.clientId });
  for (const s of [a1, a2, b2]) await nextOf(s, 'message');
  c1.sendJson({ type: 'event', group_id: G, data: 1 });
  const ce = await c1.expect('error');
  assert.deepEqual([ce.code, ce.op], ['not_member', 'event']);
  await c1.quiet('(a removed member gets nothing after its removal)');
  fails(await gpost(c, '/chat/send', { group_id: G, type: 'text', data: 'x' }), 403, 'not_member');
  fails(await get(srv, `/group/info?group_id=${G + 1000000}`, { token: a.token }), 404, 'not_found');
});

test('store errors map to 403/404/409 with the store code', async (t) => {
  const [a, b, c] = await trio('g2');
  const { group } = await gmust(a, '/group/create', { name: 'Two', members: [b.id] });
  const G = group.group_id;
  fails(await gpost(c, '/group/info', { group_id: G }), 403, 'not_member');
  fails(await gpost(b, '/group/add', { group_id: G, members: [c.id] }), 403, 'forbidden');
  fails(await gpost(a, '/group/add', { group_id: G, members: [999999999] }), 404, 'not_found');
  fails(await gpost(a, '/group/remove', { group_id: G, userid: c.id }), 409, 'not_in_group');
  fails(await gpost(a, '/group/create', { name: 'Big', members: [b.id, c.id, 999999997, 999999998] }), [404, 409], ['not_found', 'group_full']);
  const s = await ChatSocket.bound(srv, b, t);
  const e = await call(s, 5, '/group/dissolve', { group_id: G });
  assert.deepEqual([e.type, e.code, e.op, e.id], ['error', 'forbidden', 'call', 5]);
  ok(await gpost(a, '/group/dissolve', { group_id: G }));
  await s.expect('message');
  fails(await gpost(a, '/chat/send', { group_id: G, type: 'text', data: 'x' }), 409, 'group_dissolved');
  s.sendJson({ type: 'event', group_id: G, data: 1 });
  assert.equal((await s.expect('error')).code, 'group_dissolved');
});

test('group events are counted against --event-rate', async (t) => {
  const [a, b] = await registerAll(srv, [uname('g3a'), uname('g3b')]);
  const { group } = await gmust(a, '/group/create', { name: 'Rate', members: [b.id] });
  const sa = await ChatSocket.bound(srv, a, t);
  for (let i = 0; i < 12; i++) sa.sendJson({ type: 'event', group_id: group.group_id, data: i });
  const errs = (await sa.collect()).filter((m) => m.type === 'error');
  assert.ok(errs.length >= 1 && errs.every((e) => e.code === 'rate_limited'), JSON.stringify(errs));
  await sleep(10);
});
