// Groups (issue 11), the endpoints: every /group/* call, the role rules
// (owner / admin / member, owner handover, the owner leaving passes
// ownership, the last member leaving dissolves), every error code (400 field
// errors, 403 not_member / forbidden, 404, 409 group_full / group_dissolved /
// not_in_group), the system messages each change stores, "system" refused as
// a client's message type, and the socket "call" op. Written from the
// contract (docs/API.md, src/store/store.h "Groups"), driving the real
// binary. Messages, sync, lists and pushes are in chat_groups_messages.
// Runs on SQLite, and on PostgreSQL with CHATD_TEST_STORE.
import { test, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startServer } from './lib/server.mjs';
import { ChatSocket, fails, get, mintJwt, must, ok, post, uname } from './lib/chat.mjs';

const MAX = 5; // --max-group-members
const SECRET = crypto.randomBytes(16).toString('hex');
const API_SECRET = crypto.randomBytes(16).toString('hex');
const srv = await startServer({ options: { 'max-group-members': MAX, 'jwt-secret': SECRET, 'api-secret': API_SECRET } });
after(() => srv.stop());

const GROUP_KEYS = ['avatar', 'created_at', 'dissolved', 'group_id', 'last_seq', 'member_count', 'name', 'owner_id'];
const MSG_KEYS = ['client_msg_id', 'data', 'from_id', 'from_userpic', 'from_username', 'group_id', 'id', 'seq', 'time', 'type'].sort();

const P = (u, path, body) => post(srv, path, body, { token: u.token });
const call = async (u, path, body) => ok(await P(u, path, body), `${path} ${JSON.stringify(body)}`);
/**
 * n new users. Users of HS256 JWTs (--jwt-secret), created on first sight by
 * GET /user/me: no argon2id per user, so the file stays fast on a busy machine.
 */
async function users(n, p, s = srv) {
  const now = Math.floor(Date.now() / 1000);
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const name = uname(`${p}${i}`);
      const token = mintJwt({ sub: `${name}-sub`, username: name, exp: now + 3600, iat: now }, SECRET);
      const me = ok(await get(s, '/user/me', { token }));
      assert.equal(me.username, name);
      return { ...me, token };
    }),
  );
}
const ids = (us) => us.map((u) => u.id);
/** The system message's data, parsed. */
const sys = (m) => {
  assert.equal(m.type, 'system', `a system message: ${JSON.stringify(m)}`);
  return JSON.parse(m.data);
};
const userRef = (u) => ({ userid: u.id, username: u.username });
/** A system message about nobody in particular (update, dissolve): users [] (or left out). */
const sysAbout = (m) => {
  const s = sys(m);
  assert.ok(s.users === undefined || (Array.isArray(s.users) && s.users.length === 0), `users of ${m.data}`);
  delete s.users;
  return s;
};

async function create(owner, members, body = {}) {
  return call(owner, '/group/create', { name: 'grp ' + owner.username, members: ids(members), ...body });
}
const info = async (u, gid) => call(u, '/group/info', { group_id: gid });
const roleOf = (inf, u) => inf.members.find((m) => m.userid === u.id)?.role;

function assertGroup(g, what = 'group') {
  assert.deepEqual(Object.keys(g).sort(), GROUP_KEYS, `${what} keys: ${JSON.stringify(g)}`);
  assert.ok(Number.isSafeInteger(g.group_id) && g.group_id > 0, `${what} group_id`);
  assert.ok(Number.isSafeInteger(g.created_at), `${what} created_at`);
  assert.equal(typeof g.dissolved, 'boolean');
}
function assertMsg(m, gid, what = 'message') {
  assert.deepEqual(Object.keys(m).sort(), MSG_KEYS, `${what} keys (group_id, no to_id): ${JSON.stringify(m)}`);
  assert.equal(m.group_id, gid, `${what} group_id`);
}

describe('create and info', () => {
  test('create answers {group, message}: the group, the "create" system message at seq 1; info and GET info agree', async (t) => {
    const [o, a, b] = await users(3, 'cr');
    const sb = await ChatSocket.bound(srv, b, t);
    const before = Date.now();
    const d = await create(o, [a, b], { name: 'Café crew', avatar: 'https://example.com/g.png' });
    assertGroup(d.group);
    const gid = d.group.group_id;
    assert.equal(d.group.name, 'Café crew');
    assert.equal(d.group.avatar, 'https://example.com/g.png');
    assert.equal(d.group.owner_id, o.id);
    assert.equal(d.group.member_count, 3);
    assert.equal(d.group.dissolved, false);
    assert.equal(d.group.last_seq, 1);
    assert.ok(d.group.created_at >= before - 1000 && d.group.created_at <= Date.now() + 1000, 'created_at is now, in ms');
    assertMsg(d.message, gid, 'create message');
    assert.equal(d.message.seq, 1);
    assert.equal(d.message.from_id, o.id);
    const s = sys(d.message);
    assert.equal(s.event, 'create');
    assert.equal(s.actor, o.id);
    assert.equal(s.name, 'Café crew');
    assert.deepEqual(
      [...s.users].sort((x, y) => x.userid - y.userid),
      [userRef(a), userRef(b)].sort((x, y) => x.userid - y.userid),
      'create names the initial members',
    );
    // a new member learns of the group from the pushed system message
    assert.deepEqual(await sb.next(), { type: 'message', message: d.message });
    await sb.quiet('(the create message once)');

    const io = await info(o, gid);
    for (const k of GROUP_KEYS) assert.deepEqual(io[k], d.group[k], `info ${k}`);
    assert.equal(io.role, 'owner');
    assert.equal(io.muted, false);
    assert.equal(io.joined_seq, 1);
    assert.equal(io.left, false);
    assert.deepEqual(
      io.members.map((m) => [m.userid, m.username, m.userpic, m.role]),
      [
        [o.id, o.username, o.userpic, 'owner'],
        [a.id, a.username, a.userpic, 'member'],
        [b.id, b.username, b.userpic, 'member'],
      ],
      'members in join order with their roles',
    );
    for (const m of io.members) {
      assert.equal(typeof m.online, 'boolean', 'member online');
      assert.ok(m.last_seen === null || Number.isInteger(m.last_seen), 'member last_seen');
    }
    assert.equal(io.members.find((m) => m.userid === b.id).online, true, 'b has a bound socket');
    const ia = await info(a, gid);
    assert.equal(ia.role, 'member');
    assert.deepEqual(ia.members, io.members);
    const viaGet = ok(await get(srv, `/group/info?group_id=${gid}`, { token: a.token }));
    assert.deepEqual(viaGet, ia, 'GET /group/info?group_id= answers as POST');
    const viaString = await call(a, '/group/info', { group_id: String(gid) });
    assert.deepEqual(viaString, ia, 'group_id as a decimal string');
  });

  test('the owner and repeats in members are ignored; an owner-only group; avatar optional', async () => {
    const [o, a] = await users(2, 'cs');
    const d = await create(o, [a, a, o, a]);
    assert.equal(d.group.member_count, 2);
    assert.deepEqual((await info(o, d.group.group_id)).members.map((m) => m.userid), [o.id, a.id]);
    const solo = await create(o, []);
    assert.equal(solo.group.member_count, 1);
    assert.equal(solo.group.avatar, '', 'no avatar: ""');
    const withString = await call(o, '/group/create', { name: 'strings', members: [String(a.id)] });
    assert.equal(withString.group.member_count, 2, 'member ids as decimal strings');
  });

  test('400 field errors of create, 401 without a token, 404 for a member that is no user', async () => {
    const [o, a] = await users(2, 'cv');
    const good = { name: 'ok', members: [a.id] };
    const bad = async (body, code, field, what) => fails(await P(o, '/group/create', body), 400, code, field, what);
    const cases = [
      [{ members: [a.id] }, ['missing_field', 'bad_field'], 'name', 'name missing'],
      [{ ...good, name: '' }, 'bad_field', 'name', 'name empty'],
      [{ ...good, name: 'x'.repeat(65) }, 'bad_field', 'name', 'name 65 bytes'],
      [{ ...good, name: 'é'.repeat(32) + 'x' }, 'bad_field', 'name', 'name 65 bytes of UTF-8'],
      [{ ...good, name: 'a\u0001b' }, 'bad_field', 'name', 'name with 0x01'],
      [{ ...good, name: 'a\nb' }, 'bad_field', 'name', 'name with a newline'],
      [{ ...good, name: 'a\u007fb' }, 'bad_field', 'name', 'name with 0x7f'],
      [{ ...good, name: 42 }, 'bad_field', 'name', 'name a number'],
      [{ ...good, avatar: 'javascript:alert(1)' }, 'bad_field', 'avatar', 'avatar javascript:'],
      [{ ...good, avatar: 'https://example.com/' + 'a'.repeat(493) }, 'bad_field', 'avatar', 'avatar 513 bytes'],
      [{ ...good, avatar: 7 }, 'bad_field', 'avatar', 'avatar a number'],
      [{ ...good, members: a.id }, 'bad_field', 'members', 'members not an array'],
      [{ ...good, members: [0] }, 'bad_field', 'members', 'member id 0'],
      [{ ...good, members: [-3] }, 'bad_field', 'members', 'member id -3'],
      [{ ...good, members: ['abc'] }, 'bad_field', 'members', 'member id abc'],
      [{ ...good, members: [1.5] }, 'bad_field', 'members', 'member id 1.5'],
      [{ ...good, members: Array.from({ length: MAX + 1 }, () => a.id) }, 'bad_field', 'members', `members longer than --max-group-members`],
    ];
    for (const [body, code, field, what] of cases) await bad(body, code, field, what);
    fails(await post(srv, '/group/create', '{"name":', { token: o.token }), 400, 'bad_json', null, 'not JSON');
    fails(await post(srv, '/group/create', good), 401, 'unauthorized');
    fails(await P(o, '/group/create', { name: 'x', members: [a.id, 999999999] }), 404, 'not_found', null, 'a member that is no user');
    // edges that are fine
    assert.equal((await create(o, [a], { name: 'é'.repeat(32) })).group.name, 'é'.repeat(32), 'a name of 64 bytes');
    assert.equal((await create(o, [a], { avatar: '/pics/g.png' })).group.avatar, '/pics/g.png', 'avatar a /path');
    assert.equal((await create(o, [a], { avatar: 'https://example.com/' + 'a'.repeat(492) })).group.avatar.length, 512, 'avatar of 512 bytes');
    // nothing was made by the refused calls
    const list = ok(await get(srv, '/chat/list', { token: a.token }));
    assert.equal(list.filter((c) => c.chat_type === 'group').length, 3, 'only the three good creates made groups');
  });

  test('a disabled account cannot be made a member (404 not_found on create and add)', async () => {
    const [o, a, d] = await users(3, 'cd');
    ok(await post(srv, '/admin/users/disable', { uid: d.id }, { token: API_SECRET }), 'disable');
    fails(await P(o, '/group/create', { name: 'x', members: [a.id, d.id] }), 404, 'not_found', null, 'create with a disabled member');
    const gid = (await create(o, [a])).group.group_id;
    fails(await P(o, '/group/add', { group_id: gid, members: [d.id] }), 404, 'not_found', null, 'adding a disabled user');
    assert.equal((await info(o, gid)).member_count, 2);
  });

  test(`409 group_full past --max-group-members (${MAX}) on create and add`, async () => {
    const us = await users(MAX + 1, 'cf');
    const [o, ...rest] = us;
    fails(await P(o, '/group/create', { name: 'full', members: ids(rest.slice(0, MAX)) }), 409, 'group_full', null, `${MAX} others and the owner`);
    const d = await create(o, rest.slice(0, MAX - 1));
    assert.equal(d.group.member_count, MAX, 'exactly the limit is fine');
    const gid = d.group.group_id;
    fails(await P(o, '/group/add', { group_id: gid, members: [rest[MAX - 1].id] }), 409, 'group_full', null, 'one more');
    assert.equal((await info(o, gid)).member_count, MAX, 'nobody added');
    // room again after a removal
    await call(o, '/group/remove', { group_id: gid, userid: rest[0].id });
    const add = await call(o, '/group/add', { group_id: gid, members: [rest[MAX - 1].id] });
    assert.deepEqual(add.added, [rest[MAX - 1].id]);
    assert.equal(add.group.member_count, MAX);
  });

  test('404 for an unknown group on every endpoint; 400 for a bad group_id', async () => {
    const [o, a] = await users(2, 'cn');
    const g = 987654321;
    const calls = [
      ['/group/info', { group_id: g }],
      ['/group/add', { group_id: g, members: [a.id] }],
      ['/group/remove', { group_id: g, userid: a.id }],
      ['/group/leave', { group_id: g }],
      ['/group/update', { group_id: g, name: 'n' }],
      ['/group/role', { group_id: g, userid: a.id, role: 'admin' }],
      ['/group/dissolve', { group_id: g }],
      ['/group/mute', { group_id: g, muted: true }],
      ['/chat/read', { group_id: g }],
      ['/chat/send', { group_id: g, type: 'text', data: 'hi' }],
    ];
    for (const [path, body] of calls) {
      fails(await P(o, path, body), 404, 'not_found', null, `${path} of an unknown group`);
      fails(await P(o, path, { ...body, group_id: 0 }), 400, 'bad_field', 'group_id', `${path} group_id 0`);
      fails(await P(o, path, { ...body, group_id: 'abc' }), 400, 'bad_field', 'group_id', `${path} group_id abc`);
      fails(await post(srv, path, body), 401, 'unauthorized', null, `${path} without a token`);
    }
    fails(await get(srv, `/group/info?group_id=${g}`, { token: o.token }), 404, 'not_found');
    fails(await get(srv, `/chat/history?group_id=${g}`, { token: o.token }), 404, 'not_found');
    fails(await get(srv, `/group/info?group_id=x`, { token: o.token }), 400, 'bad_field', 'group_id');
    const { group } = await create(o, [a]);
    fails(await P(o, '/group/add', { group_id: group.group_id, members: [999999999] }), 404, 'not_found', null, 'adding no user');
    fails(await P(o, '/group/add', { group_id: group.group_id, members: 'x' }), 400, 'bad_field', 'members');
    fails(await P(o, '/group/remove', { group_id: group.group_id }), 400, ['missing_field', 'bad_field'], 'userid');
    fails(await P(o, '/group/mute', { group_id: group.group_id, muted: 'yes' }), 400, 'bad_field', 'muted');
    fails(await P(o, '/group/mute', { group_id: group.group_id }), 400, ['missing_field', 'bad_field'], 'muted');
  });
});

describe('roles', () => {
  test('a non-member gets 403 not_member everywhere', async () => {
    const [o, a, x] = await users(3, 'rn');
    const gid = (await create(o, [a])).group.group_id;
    const calls = [
      ['/group/info', { group_id: gid }],
      ['/group/add', { group_id: gid, members: [x.id] }],
      ['/group/remove', { group_id: gid, userid: a.id }],
      ['/group/leave', { group_id: gid }],
      ['/group/update', { group_id: gid, name: 'mine' }],
      ['/group/role', { group_id: gid, userid: a.id, role: 'admin' }],
      ['/group/dissolve', { group_id: gid }],
      ['/group/mute', { group_id: gid, muted: true }],
      ['/chat/read', { group_id: gid }],
      ['/chat/send', { group_id: gid, type: 'text', data: 'let me in' }],
    ];
    for (const [path, body] of calls) fails(await P(x, path, body), 403, 'not_member', null, `${path} by a non-member`);
    fails(await get(srv, `/group/info?group_id=${gid}`, { token: x.token }), 403, 'not_member');
    fails(await get(srv, `/chat/history?group_id=${gid}`, { token: x.token }), 403, 'not_member');
    const i = await info(o, gid);
    assert.equal(i.name, 'grp ' + o.username);
    assert.equal(i.last_seq, 1, 'nothing happened');
    assert.deepEqual(i.members.map((m) => m.userid), [o.id, a.id]);
  });

  test('a member may not add, remove, update, change roles or dissolve (403 forbidden)', async () => {
    const [o, m1, m2, x] = await users(4, 'rm');
    const gid = (await create(o, [m1, m2])).group.group_id;
    const calls = [
      ['/group/add', { group_id: gid, members: [x.id] }],
      ['/group/remove', { group_id: gid, userid: m2.id }],
      ['/group/remove', { group_id: gid, userid: o.id }],
      ['/group/update', { group_id: gid, name: 'renamed' }],
      ['/group/update', { group_id: gid, avatar: '/a.png' }],
      ['/group/role', { group_id: gid, userid: m2.id, role: 'admin' }],
      ['/group/role', { group_id: gid, userid: m1.id, role: 'owner' }],
      ['/group/dissolve', { group_id: gid }],
    ];
    for (const [path, body] of calls) fails(await P(m1, path, body), 403, 'forbidden', null, `${path} ${JSON.stringify(body)} by a member`);
    const i = await info(o, gid);
    assert.equal(i.last_seq, 1, 'nothing happened');
    assert.deepEqual(i.members.map((m) => [m.userid, m.role]), [[o.id, 'owner'], [m1.id, 'member'], [m2.id, 'member']]);
    // but a member may mute, read, send and leave
    await call(m1, '/group/mute', { group_id: gid, muted: true });
    await call(m1, '/chat/read', { group_id: gid });
    await call(m1, '/chat/send', { group_id: gid, type: 'text', data: 'hi' });
    await call(m1, '/group/leave', { group_id: gid });
  });

  test('an admin adds and removes members, renames; cannot remove an admin or the owner, change roles or dissolve', async () => {
    const [o, ad, ad2, m1, x] = await users(5, 'ra');
    const gid = (await create(o, [ad, ad2, m1])).group.group_id;
    const r = await call(o, '/group/role', { group_id: gid, userid: ad.id, role: 'admin' });
    assertGroup(r.group);
    assertMsg(r.message, gid, 'role message');
    assert.deepEqual(sys(r.message), { event: 'role', actor: o.id, users: [userRef(ad)], role: 'admin' });
    await call(o, '/group/role', { group_id: gid, userid: ad2.id, role: 'admin' });
    assert.equal(roleOf(await info(o, gid), ad), 'admin');
    assert.equal((await info(ad, gid)).role, 'admin');

    const add = await call(ad, '/group/add', { group_id: gid, members: [x.id] });
    assert.deepEqual(add.added, [x.id]);
    assert.deepEqual(sys(add.message), { event: 'add', actor: ad.id, users: [userRef(x)] });
    const rm = await call(ad, '/group/remove', { group_id: gid, userid: x.id });
    assert.deepEqual(sys(rm.message), { event: 'remove', actor: ad.id, users: [userRef(x)] });
    fails(await P(ad, '/group/remove', { group_id: gid, userid: ad2.id }), 403, 'forbidden', null, 'an admin removing an admin');
    fails(await P(ad, '/group/remove', { group_id: gid, userid: o.id }), 403, 'forbidden', null, 'an admin removing the owner');
    fails(await P(ad, '/group/role', { group_id: gid, userid: m1.id, role: 'admin' }), 403, 'forbidden', null, 'an admin making an admin');
    fails(await P(ad, '/group/role', { group_id: gid, userid: ad2.id, role: 'member' }), 403, 'forbidden', null, 'an admin demoting an admin');
    fails(await P(ad, '/group/role', { group_id: gid, userid: ad.id, role: 'owner' }), 403, 'forbidden', null, 'an admin taking ownership');
    fails(await P(ad, '/group/dissolve', { group_id: gid }), 403, 'forbidden', null, 'an admin dissolving');
    const up = await call(ad, '/group/update', { group_id: gid, name: 'by admin' });
    assert.deepEqual(sysAbout(up.message), { event: 'update', actor: ad.id, name: 'by admin' });
    assert.equal(up.group.name, 'by admin');
    const rmm = await call(ad, '/group/remove', { group_id: gid, userid: m1.id });
    assert.equal(rmm.group.member_count, 3);
    // the owner removes an admin; an admin demoted is a member again
    await call(o, '/group/role', { group_id: gid, userid: ad2.id, role: 'member' });
    assert.equal(roleOf(await info(o, gid), ad2), 'member');
    fails(await P(ad2, '/group/add', { group_id: gid, members: [x.id] }), 403, 'forbidden', null, 'a demoted admin adding');
    await call(o, '/group/remove', { group_id: gid, userid: ad.id });
    assert.deepEqual((await info(o, gid)).members.map((m) => [m.userid, m.role]), [[o.id, 'owner'], [ad2.id, 'member']]);
  });

  test('role errors: 400 bad role, 409 not_in_group, the owner cannot change its own role', async () => {
    const [o, a, x] = await users(3, 'rr');
    const gid = (await create(o, [a])).group.group_id;
    for (const role of ['superuser', '', 'Owner', 1, null]) {
      fails(await P(o, '/group/role', { group_id: gid, userid: a.id, role }), 400, ['bad_field', 'missing_field'], 'role', `role ${JSON.stringify(role)}`);
    }
    fails(await P(o, '/group/role', { group_id: gid, userid: a.id }), 400, ['missing_field', 'bad_field'], 'role');
    fails(await P(o, '/group/role', { group_id: gid, userid: x.id, role: 'admin' }), 409, 'not_in_group', null, 'role of a non-member');
    fails(await P(o, '/group/remove', { group_id: gid, userid: x.id }), 409, 'not_in_group', null, 'removing a non-member');
    const nobody = await P(o, '/group/role', { group_id: gid, userid: 999999999, role: 'admin' });
    assert.ok([404, 409].includes(nobody.status) && ['not_found', 'not_in_group'].includes(nobody.body?.code), `role of no user: ${nobody.status} ${nobody.text}`);
    const own = await P(o, '/group/role', { group_id: gid, userid: o.id, role: 'member' });
    assert.ok(own.status >= 400 && own.status < 500, `the owner demoting itself is refused: ${own.status} ${own.text}`);
    const self = await P(o, '/group/remove', { group_id: gid, userid: o.id });
    assert.ok(self.status >= 400 && self.status < 500, `the owner removing itself is refused: ${self.status} ${self.text}`);
    const i = await info(o, gid);
    assert.deepEqual(i.members.map((m) => [m.userid, m.role]), [[o.id, 'owner'], [a.id, 'member']]);
    assert.equal(i.owner_id, o.id);
    assert.equal(i.last_seq, 1, 'no system message for refused calls');
  });

  test('owner handover: the peer becomes owner, the old owner an admin with an admin\'s rights only', async (t) => {
    const [o, a, b] = await users(3, 'rh');
    const gid = (await create(o, [a, b])).group.group_id;
    const sb = await ChatSocket.bound(srv, b, t);
    const r = await call(o, '/group/role', { group_id: gid, userid: a.id, role: 'owner' });
    assert.equal(r.group.owner_id, a.id);
    assert.deepEqual(sys(r.message), { event: 'role', actor: o.id, users: [userRef(a)], role: 'owner' });
    assert.deepEqual(await sb.next(), { type: 'message', message: r.message }, 'members are told');
    const i = await info(b, gid);
    assert.equal(i.owner_id, a.id);
    assert.deepEqual(i.members.map((m) => [m.userid, m.role]), [[o.id, 'admin'], [a.id, 'owner'], [b.id, 'member']]);
    assert.equal((await info(o, gid)).role, 'admin');
    fails(await P(o, '/group/dissolve', { group_id: gid }), 403, 'forbidden', null, 'the old owner dissolving');
    fails(await P(o, '/group/role', { group_id: gid, userid: b.id, role: 'admin' }), 403, 'forbidden', null, 'the old owner changing roles');
    fails(await P(o, '/group/remove', { group_id: gid, userid: a.id }), 403, 'forbidden', null, 'the old owner removing the new one');
    await call(a, '/group/role', { group_id: gid, userid: o.id, role: 'member' });
    const d = await call(a, '/group/dissolve', { group_id: gid });
    assert.equal(d.group.dissolved, true);
  });
});

describe('leave, update, add, dissolve', () => {
  test('the owner leaving passes ownership to the earliest-joined admin, else the earliest-joined member; the last leaving dissolves', async (t) => {
    const [o, m1, m2, ad] = await users(4, 'lv');
    const gid = (await create(o, [m1, m2, ad])).group.group_id;
    await call(o, '/group/role', { group_id: gid, userid: ad.id, role: 'admin' });
    const s1 = await ChatSocket.bound(srv, m1, t);
    const so = await ChatSocket.bound(srv, o, t);
    const l1 = await call(o, '/group/leave', { group_id: gid });
    assert.deepEqual(await so.next(), { type: 'message', message: l1.message }, 'the leaver\'s devices get its leave message too');
    assert.equal(l1.dissolved, false);
    assert.equal(l1.group.owner_id, ad.id, 'the admin, though it joined with the others');
    assert.deepEqual(sys(l1.message), { event: 'leave', actor: o.id, users: [userRef(o)], owner: ad.id });
    assert.deepEqual(await s1.next(), { type: 'message', message: l1.message });
    let i = await info(m1, gid);
    assert.deepEqual(i.members.map((m) => [m.userid, m.role]), [[m1.id, 'member'], [m2.id, 'member'], [ad.id, 'owner']]);
    // the one who left keeps the group, read-only: left true, no member list, no sending
    const io = await info(o, gid);
    assert.equal(io.left, true);
    assert.deepEqual(io.members, []);
    fails(await P(o, '/chat/send', { group_id: gid, type: 'text', data: 'still here?' }), 403, 'not_member');
    fails(await P(o, '/group/leave', { group_id: gid }), 403, 'not_member', null, 'leaving twice');

    const l2 = await call(ad, '/group/leave', { group_id: gid });
    assert.equal(l2.group.owner_id, m1.id, 'no admin left: the earliest-joined member');
    assert.equal(sys(l2.message).owner, m1.id);
    const l3 = await call(m2, '/group/leave', { group_id: gid });
    assert.equal(sys(l3.message).owner, undefined, 'no owner field when ownership stays');
    assert.equal(l3.group.owner_id, m1.id);
    assert.equal(l3.dissolved, false);
    const l4 = await call(m1, '/group/leave', { group_id: gid });
    assert.equal(l4.dissolved, true, 'the last member leaving dissolves');
    assert.equal(l4.group.dissolved, true);
    assert.equal(l4.group.member_count, 0);
    i = await info(m1, gid);
    assert.equal(i.dissolved, true);
    assert.equal(i.left, true);
  });

  test('update: name and avatar, "" clears the avatar, no change is message null, nothing given is 400', async () => {
    const [o, a] = await users(2, 'up');
    const gid = (await create(o, [a], { avatar: '/old.png' })).group.group_id;
    const u1 = await call(o, '/group/update', { group_id: gid, name: 'New name', avatar: 'https://example.com/new.png' });
    assert.deepEqual([u1.group.name, u1.group.avatar], ['New name', 'https://example.com/new.png']);
    assert.deepEqual(sysAbout(u1.message), { event: 'update', actor: o.id, name: 'New name', avatar: 'https://example.com/new.png' });
    const u2 = await call(o, '/group/update', { group_id: gid, avatar: '' });
    assert.equal(u2.group.avatar, '');
    assert.equal(u2.group.name, 'New name', 'name unchanged');
    assert.deepEqual(sysAbout(u2.message), { event: 'update', actor: o.id, avatar: '' });
    const u3 = await call(o, '/group/update', { group_id: gid, name: 'New name' });
    assert.equal(u3.message, null, 'nothing changed: no system message');
    assert.equal(u3.group.last_seq, u2.group.last_seq);
    fails(await P(o, '/group/update', { group_id: gid }), 400, ['missing_field', 'bad_field'], null, 'neither name nor avatar');
    fails(await P(o, '/group/update', { group_id: gid, name: '' }), 400, 'bad_field', 'name');
    fails(await P(o, '/group/update', { group_id: gid, name: 'a\tb' }), 400, 'bad_field', 'name');
    fails(await P(o, '/group/update', { group_id: gid, avatar: 'ftp://x/y.png' }), 400, 'bad_field', 'avatar');
    const i = await info(a, gid);
    assert.deepEqual([i.name, i.avatar, i.last_seq], ['New name', '', u2.group.last_seq]);
  });

  test('add: existing members are message null and added []; a removed member can be added back', async () => {
    const [o, a, b] = await users(3, 'ad');
    const gid = (await create(o, [a])).group.group_id;
    const same = await call(o, '/group/add', { group_id: gid, members: [a.id, o.id] });
    assert.equal(same.message, null);
    assert.deepEqual(same.added, []);
    const both = await call(o, '/group/add', { group_id: gid, members: [a.id, b.id, b.id] });
    assert.deepEqual(both.added, [b.id], 'only the new one, once');
    assert.deepEqual(sys(both.message), { event: 'add', actor: o.id, users: [userRef(b)] });
    const rm = await call(o, '/group/remove', { group_id: gid, userid: b.id });
    assert.equal(rm.group.member_count, 2);
    fails(await P(o, '/group/remove', { group_id: gid, userid: b.id }), 409, 'not_in_group', null, 'removing twice');
    const again = await call(o, '/group/add', { group_id: gid, members: [b.id] });
    assert.deepEqual(again.added, [b.id]);
    const ib = await info(b, gid);
    assert.equal(ib.left, false);
    assert.equal(ib.joined_seq, again.message.seq, 'joined_seq is the new add message');
    assert.equal(ib.role, 'member');
  });

  test('a removed member and one who left see the group as they left it (info, GET info, chat list); added back, the live group', async () => {
    const [o, a, dave, c] = await users(4, 'lv');
    const gid = (await create(o, [a, dave, c], { name: 'Before', avatar: '/before.png' })).group.group_id;
    const rm = await call(o, '/group/remove', { group_id: gid, userid: dave.id }); // seq 2
    const lv = await call(c, '/group/leave', { group_id: gid }); // seq 3
    assert.deepEqual([rm.message.seq, lv.message.seq], [2, 3]);
    await call(o, '/group/update', { group_id: gid, name: 'After', avatar: 'https://example.com/after.png' });
    await call(o, '/group/role', { group_id: gid, userid: a.id, role: 'owner' });
    await call(a, '/chat/send', { group_id: gid, type: 'text', data: 'one' });
    const last = await call(a, '/chat/send', { group_id: gid, type: 'text', data: 'two' });
    assert.equal(last.seq, 7);
    const pick = (g) => ({ name: g.name, avatar: g.avatar, member_count: g.member_count, dissolved: g.dissolved, last_seq: g.last_seq, left: g.left });
    const seen = async (u, want, what) => {
      const i = await info(u, gid);
      assertGroup(Object.fromEntries(GROUP_KEYS.map((k) => [k, i[k]])), `${what} info`);
      assert.deepEqual({ ...pick(i), owner_id: i.owner_id }, want, `${what}: info`);
      if (want.left) assert.deepEqual(i.members, [], `${what}: no members once left`);
      const gi = ok(await get(srv, `/group/info?group_id=${gid}`, { token: u.token }));
      assert.deepEqual(gi, i, `${what}: GET info agrees`);
      const item = ok(await get(srv, '/chat/list', { token: u.token })).find((x) => x.group_id === gid);
      const { owner_id: _, ...wantItem } = want;
      assert.deepEqual(pick(item), wantItem, `${what}: chat list item`);
      return item;
    };
    const gone = { name: 'Before', avatar: '/before.png', dissolved: false, left: true, owner_id: o.id };
    const di = await seen(dave, { ...gone, member_count: 3, last_seq: 2 }, 'removed');
    assert.equal(di.last_message_id, rm.message.id, 'the removal is the newest it sees');
    await seen(c, { ...gone, member_count: 2, last_seq: 3 }, 'left');
    const live = { name: 'After', avatar: 'https://example.com/after.png', dissolved: false, left: false, owner_id: a.id };
    await seen(o, { ...live, member_count: 2, last_seq: 7 }, 'a member');
    const back = await call(a, '/group/add', { group_id: gid, members: [dave.id] }); // seq 8
    assert.equal(back.message.seq, 8);
    await seen(dave, { ...live, member_count: 3, last_seq: 8 }, 'added back');
    assert.equal((await info(dave, gid)).members.length, 3);
  });

  test('dissolve: owner only; afterwards every change and send is 409 group_dissolved, history stays readable', async (t) => {
    const [o, a, x] = await users(3, 'ds');
    const gid = (await create(o, [a])).group.group_id;
    const sent = await call(a, '/chat/send', { group_id: gid, type: 'text', data: 'before the end' });
    const sa = await ChatSocket.bound(srv, a, t);
    const d = await call(o, '/group/dissolve', { group_id: gid });
    assert.equal(d.group.dissolved, true);
    assert.deepEqual(sysAbout(d.message), { event: 'dissolve', actor: o.id });
    assert.deepEqual(await sa.next(), { type: 'message', message: d.message });
    const calls = [
      [o, '/group/add', { group_id: gid, members: [x.id] }],
      [o, '/group/remove', { group_id: gid, userid: a.id }],
      [o, '/group/update', { group_id: gid, name: 'zombie' }],
      [o, '/group/role', { group_id: gid, userid: a.id, role: 'admin' }],
      [o, '/group/dissolve', { group_id: gid }],
      [a, '/group/leave', { group_id: gid }],
      [a, '/chat/send', { group_id: gid, type: 'text', data: 'after the end' }],
    ];
    for (const [u, path, body] of calls) fails(await P(u, path, body), 409, 'group_dissolved', null, `${path} after dissolve`);
    const h = ok(await get(srv, `/chat/history?group_id=${gid}`, { token: a.token }));
    assert.equal(h.length, 3, 'create, the text, dissolve');
    assert.deepEqual([h[0], h[1]], [d.message, sent], 'the history is still there, newest first');
    assert.equal(sys(h[2]).event, 'create');
    const i = await info(a, gid);
    assert.equal(i.dissolved, true);
    const item = ok(await get(srv, '/chat/list', { token: a.token })).find((c) => c.group_id === gid);
    assert.deepEqual([item.chat_type, item.dissolved, item.last_message_id, item.type], ['group', true, d.message.id, 'system'], 'the list item says dissolved');
  });
});

describe('message types', () => {
  test('"system" can never be sent by a client, whatever --message-types says; exactly one of to_id / group_id', async (t) => {
    const own = await startServer({ options: { 'message-types': 'text,system', 'jwt-secret': SECRET } });
    t.after(() => own.stop());
    for (const s of [srv, own]) {
      const [o, a] = await users(2, 'st', s);
      const gid = ok(await post(s, '/group/create', { name: 'g', members: [a.id] }, { token: o.token })).group.group_id;
      const sys1 = JSON.stringify({ event: 'dissolve', actor: o.id, users: [] });
      fails(await post(s, '/chat/send', { group_id: gid, type: 'system', data: sys1 }, { token: a.token }), 400, 'bad_field', 'type', 'system to a group');
      fails(await post(s, '/chat/send', { to_id: o.id, type: 'system', data: sys1 }, { token: a.token }), 400, 'bad_field', 'type', 'system 1:1');
      fails(await post(s, '/chat/send', { to_id: o.id, group_id: gid, type: 'text', data: 'x' }, { token: a.token }), 400, 'bad_field', null, 'both to_id and group_id');
      fails(await post(s, '/chat/send', { type: 'text', data: 'x' }, { token: a.token }), 400, ['missing_field', 'bad_field'], null, 'neither');
      const sock = await ChatSocket.bound(s, a, t);
      sock.sendJson({ type: 'send', message: { group_id: gid, type: 'system', data: sys1, client_msg_id: 'sys-1' } });
      const e = await sock.expect('error');
      assert.equal(e.code, 'bad_field');
      assert.equal(e.client_msg_id, 'sys-1');
      const h = ok(await get(s, `/chat/history?group_id=${gid}`, { token: o.token }));
      assert.equal(h.length, 1, 'only the create message is stored');
      // a null field counts as absent
      assert.equal(ok(await post(s, '/chat/send', { to_id: null, group_id: gid, type: 'text', data: 'to the group' }, { token: a.token })).group_id, gid, 'to_id null, group_id set');
      assert.equal(ok(await post(s, '/chat/read', { userid: null, group_id: gid }, { token: o.token })).total, 0, 'read with userid null');
      assert.equal(sys(h[0]).event, 'create');
    }
  });
});

describe('socket call', () => {
  test('"call" runs the group endpoints and /chat/read on a bound socket, answering result with the id', async (t) => {
    const [o, a, b] = await users(3, 'sc');
    const so = await ChatSocket.bound(srv, o, t);
    const sa = await ChatSocket.bound(srv, a, t);
    so.sendJson({ type: 'call', id: 'c-1', path: '/group/create', body: { name: 'by socket', members: [a.id] } });
    const r = await so.expect('result');
    assert.equal(r.id, 'c-1');
    assertGroup(r.data.group);
    assert.equal(r.data.group.name, 'by socket');
    assert.equal(sys(r.data.message).event, 'create');
    const gid = r.data.group.group_id;
    assert.deepEqual(await sa.next(), { type: 'message', message: r.data.message }, 'the member is pushed the create message');
    await so.quiet('(the calling socket gets the result, not the push)');

    so.sendJson({ type: 'call', id: 7, path: '/group/info', body: { group_id: gid } });
    const ri = await so.expect('result');
    assert.equal(ri.id, 7, 'an integer id comes back as an integer');
    assert.deepEqual(ri.data, await info(o, gid), 'the data the HTTP call answers');

    so.sendJson({ type: 'call', id: 'c-add', path: '/group/add', body: { group_id: gid, members: [b.id] } });
    const ra = await so.expect('result');
    assert.deepEqual(ra.data.added, [b.id]);
    assert.equal((await sa.expect('message')).message.id, ra.data.message.id);

    // an endpoint's error, with op and id
    sa.sendJson({ type: 'call', id: 'c-x', path: '/group/dissolve', body: { group_id: gid } });
    const e1 = await sa.expect('error');
    assert.deepEqual([e1.op, e1.id, e1.code], ['call', 'c-x', 'forbidden']);
    assert.equal(typeof e1.msg, 'string');
    sa.sendJson({ type: 'call', id: 'c-y', path: '/group/update', body: { group_id: gid } });
    const e2 = await sa.expect('error');
    assert.deepEqual([e2.op, e2.id], ['call', 'c-y']);
    assert.ok(['missing_field', 'bad_field'].includes(e2.code), e2.code);
    sa.sendJson({ type: 'call', id: 'c-z', path: '/group/info', body: { group_id: 987654321 } });
    assert.deepEqual(((m) => [m.op, m.id, m.code])(await sa.expect('error')), ['call', 'c-z', 'not_found']);
    // an unknown path
    sa.sendJson({ type: 'call', id: 'c-u', path: '/group/nope', body: {} });
    assert.deepEqual(((m) => [m.op, m.id, m.code])(await sa.expect('error')), ['call', 'c-u', 'not_found']);
    sa.sendJson({ type: 'call', id: 'c-h', path: '/user/logout', body: {} });
    assert.deepEqual(((m) => [m.op, m.id, m.code])(await sa.expect('error')), ['call', 'c-h', 'not_found'], 'only the group endpoints and /chat/read');
    assert.equal((await must(srv, 'GET', '/user/me', { token: a.token })).id, a.id, 'the token still works');

    // /chat/read over the socket
    await call(o, '/chat/send', { group_id: gid, type: 'text', data: 'read me' });
    assert.equal((await sa.expect('message')).message.data, 'read me');
    sa.sendJson({ type: 'call', id: 'c-r', path: '/chat/read', body: { group_id: gid } });
    const rr = await sa.expect('result');
    assert.equal(rr.id, 'c-r');
    assert.deepEqual(rr.data, { total: 0 });
    const un = ok(await get(srv, '/chat/unread', { token: a.token }));
    assert.equal(un.total, 0);

    // a bad id or body
    sa.sendJson({ type: 'call', id: 'x'.repeat(65), path: '/group/info', body: { group_id: gid } });
    const e3 = await sa.expect('error');
    assert.deepEqual([e3.op, e3.code], ['call', 'bad_field'], 'an id over 64 bytes');
    sa.sendJson({ type: 'call', path: '/group/info', body: { group_id: gid } });
    assert.ok(['missing_field', 'bad_field'].includes((await sa.expect('error')).code), 'no id');
    sa.sendJson({ type: 'call', id: 'c-b', path: '/group/info', body: 'group' });
    assert.deepEqual(((m) => [m.op, m.id, m.code])(await sa.expect('error')), ['call', 'c-b', 'bad_field'], 'a body that is no object');
    await sa.quiet();

    // not bound
    const raw = await ChatSocket.open(srv, t);
    raw.sendJson({ type: 'call', id: 'c-nb', path: '/group/info', body: { group_id: gid } });
    const nb = await raw.expect('error');
    assert.deepEqual([nb.code, nb.op, nb.id], ['not_bound', 'call', 'c-nb']);
  });
});

describe('rates', () => {
  test('group changes post a system message to every member, so they count against --send-rate like messages; members are deduplicated in order', async (t) => {
    const own = await startServer({ options: { 'send-rate': 2, 'jwt-secret': SECRET } });
    t.after(() => own.stop());
    const [o, a, b] = await users(3, 'rt', own);
    // the window allows 2 * send-rate = 4: a fifth change in the same window is refused
    const codes = [];
    for (let i = 0; i < 6; i++) {
      const r = await post(own, '/group/create', { name: `g${i}`, members: [b.id, a.id, b.id, a.id] }, { token: o.token });
      codes.push(r.status === 200 ? 'ok' : r.body.code);
      if (r.status === 200) {
        const info = ok(await post(own, '/group/info', { group_id: r.body.data.group.group_id }, { token: o.token }));
        assert.deepEqual(info.members.map((m) => m.userid), [o.id, b.id, a.id], 'each member once, in the order given');
      }
    }
    assert.ok(codes.filter((c) => c === 'ok').length <= 4 && codes.includes('rate_limited'), `creates: ${codes.join(',')}`);
    const f = await post(own, '/group/create', { name: 'more', members: [a.id] }, { token: o.token });
    assert.equal(f.status, 429, 'still limited within the window');
  });
});
