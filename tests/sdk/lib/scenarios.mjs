// scenarios.mjs: the SDK's behaviour against the real chatd, written once and
// run on each platform (sdk_browser.test.mjs, sdk_uniapp.test.mjs). Each test
// signs users up over HTTP, drives them through ChatClient and asserts what the
// app would see: events, the chat list, unread counts, the badge, storage.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ChatClient, ChatError, groupKey } from '../../../clients/js/src/index.js';
import { must, post, register, restartServer, uname } from '../../integration/lib/chat.mjs';
import { PNG_1x1, sleep, startServer } from '../../integration/lib/server.mjs';

/** Waits for event on client (optionally one whose arguments pass pred); rejects after ms. */
export function waitEvent(client, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      off();
      reject(new Error(`no "${event}" event within ${ms} ms`));
    }, ms);
    const off = client.on(event, (...args) => {
      if (!pred(...args)) return;
      clearTimeout(t);
      off();
      resolve(args);
    });
  });
}

/** Polls fn until it returns true (deep-equal to want when given); fails with the last value. */
export async function eventually(fn, want, { ms = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (want === undefined ? last : isDeepEqual(last, want)) return last;
    if (Date.now() > deadline) {
      if (want === undefined) assert.fail(`${what} not reached within ${ms} ms (last: ${JSON.stringify(last)})`);
      assert.deepEqual(last, want, what);
    }
    await sleep(20);
  }
}

function isDeepEqual(a, b) {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}

const FAST = { baseDelayMs: 100, maxDelayMs: 1000 };

/**
 * Defines the scenarios for one platform.
 * @param {(srv: object) => {name: string, device: () => object, cleanup?: () => void}} makePlatform
 */
export function defineScenarios(makePlatform) {
  let srv;
  let platform;
  const clients = [];

  before(async () => {
    srv = await startServer({ options: { 'presence-grace': 300 } });
    platform = makePlatform(srv);
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    if (platform && platform.cleanup) platform.cleanup();
    if (srv) await srv.stop();
  });

  /** A signed-up user's client on a new device, connected (online) unless connect is false. */
  async function device(account, { connect = true, keys, timing = FAST, server = srv, dev } = {}) {
    dev = dev || (server === srv ? platform : makePlatform(server)).device();
    const client = new ChatClient({ adapter: dev.adapter, session: { token: account.token, user: account.user }, keys, timing });
    clients.push(client);
    if (connect) {
      const online = waitEvent(client, 'synced');
      await client.connect();
      await online;
    }
    return { client, dev };
  }

  test('bind, send with an ack, the push to the peer, the chat list, unread counts, the badge and read', async () => {
    const alice = await register(srv, uname('al'));
    const bob = await register(srv, uname('bo'));
    const a = await device(alice);
    const b = await device(bob);
    assert.equal(a.client.state, 'online');
    assert.match(a.client.clientId, /^[A-Za-z0-9_-]{24}$/);
    // The bind went through POST /chat/bind with the socket's client_id and bind_nonce.
    const bind = a.dev.seen.requests.find((r) => r.url.endsWith('/chat/bind'));
    assert.ok(bind, 'POST /chat/bind');
    const bindBody = JSON.parse(bind.body);
    assert.equal(bindBody.client_id, a.client.clientId);
    assert.match(bindBody.bind_nonce, /^[A-Za-z0-9_-]{22}$/);

    const pushed = waitEvent(b.client, 'message', (m) => m.data === 'hello bob');
    const acked = waitEvent(a.client, 'ack');
    const sending = a.client.sendText(bob.user.id, 'hello bob');
    // At once: the pending message in the conversation and on top of the list.
    const pending = a.client.messages(bob.user.id).at(-1);
    assert.equal(pending.id, 0);
    assert.equal(pending.state, 'sending');
    assert.equal(a.client.chatList[0].userid, bob.user.id);
    const stored = await sending;
    assert.ok(Number.isSafeInteger(stored.id) && stored.id > 0);
    assert.equal(stored.seq, 1);
    assert.equal(stored.client_msg_id, pending.client_msg_id);
    assert.equal((await acked)[0].id, stored.id);
    assert.deepEqual(a.client.messages(bob.user.id).map((m) => [m.id, m.data]), [[stored.id, 'hello bob']], 'the pending message became the stored one');
    const [m, key] = await pushed;
    assert.equal(m.id, stored.id);
    assert.equal(key, alice.user.id);

    // Bob's list: alice on top with one unread; the total and the badge say 1.
    const item = b.client.chatList[0];
    assert.equal(item.userid, alice.user.id);
    assert.equal(item.username, alice.user.username);
    assert.equal(item.data, 'hello bob');
    assert.equal(item.noreadnum, 1);
    assert.equal(b.client.total, 1);
    await eventually(() => b.dev.badge(), 1, { what: 'badge' });
    await a.client.sendText(bob.user.id, 'second');
    await eventually(() => b.client.total, 2, { what: 'total after two' });
    await eventually(() => b.dev.badge(), 2, { what: 'badge after two' });

    // Bob's second device: reading on the first tells it (a "read" push), and the server agrees.
    const b2 = await device(bob);
    assert.equal(b2.client.total, 2, 'a new device gets the counts from the server');
    const told = waitEvent(b2.client, 'read', (k) => k === alice.user.id);
    const r = await b.client.read(alice.user.id);
    assert.equal(r.total, 0);
    assert.equal(b.client.total, 0);
    await eventually(() => b.dev.badge(), 0, { what: 'badge cleared' });
    await told;
    assert.equal(b2.client.total, 0);
    const unread = await must(srv, 'GET', '/chat/unread', { token: bob.token });
    assert.equal(unread.total, 0);
    // The receipt reached alice.
    await eventually(() => a.client.store.receipts[bob.user.id], stored.id + 1, { what: 'receipt' }).catch(() => {});
    assert.ok(a.client.store.receipts[bob.user.id] >= stored.id, 'alice holds bob\'s read receipt');
  });

  test('the cache uses the seed\'s storage keys, and they can be changed', async () => {
    const carol = await register(srv, uname('ca'));
    const dan = await register(srv, uname('da'));
    const c = await device(carol);
    await c.client.sendText(dan.user.id, 'cached');
    const keys = c.dev.storageKeys();
    const uid = carol.user.id;
    for (const k of [`chatlist${uid}`, `chatdetail_${uid}_${dan.user.id}`, `noreadnum${uid}`, `chatseq${uid}`]) assert.ok(keys.includes(k), `${k} in ${keys}`);
    assert.equal(JSON.parse(c.dev.storageGet(`chatlist${uid}`))[0].userid, dan.user.id);
    assert.equal(JSON.parse(c.dev.storageGet(`chatdetail_${uid}_${dan.user.id}`))[0].data, 'cached');
    assert.equal(JSON.parse(c.dev.storageGet(`noreadnum${uid}`)), 0);

    // A new client on the same device reads the cache before it connects.
    const again = new ChatClient({ adapter: c.dev.adapter, session: { token: carol.token, user: carol.user } });
    assert.equal(again.chatList[0].data, 'cached');
    assert.equal(again.messages(dan.user.id)[0].data, 'cached');

    // Other keys.
    const d = await device(dan, { keys: { chatlist: (u) => `my_list_${u}`, chatdetail: (u, p) => `my_chat_${u}_${p}`, noreadnum: (u) => `my_unread_${u}` } });
    await eventually(() => d.dev.storageKeys().sort(), undefined).catch(() => {});
    const dk = d.dev.storageKeys();
    assert.ok(dk.includes(`my_list_${dan.user.id}`), `${dk}`);
    assert.ok(dk.includes(`my_unread_${dan.user.id}`), `${dk}`);
    assert.ok(!dk.some((k) => k.startsWith('chatlist')), `${dk}`);
    assert.equal(JSON.parse(d.dev.storageGet(`my_unread_${dan.user.id}`)), 1);
    await d.client.open(carol.user.id);
    assert.ok(d.dev.storageKeys().includes(`my_chat_${dan.user.id}_${carol.user.id}`));

    // Signing out removes them.
    await d.client.signOut();
    assert.deepEqual(d.dev.storageKeys().filter((k) => k.startsWith('my_') || k.startsWith('chat')), []);
  });

  test('a dropped socket (the platform says offline) reconnects and syncs what was missed', async () => {
    const erin = await register(srv, uname('er'));
    const finn = await register(srv, uname('fi'));
    const e = await device(erin);
    await must(srv, 'POST', '/chat/send', { token: finn.token, body: { to_id: erin.user.id, type: 'text', data: 'before' } });
    await eventually(() => e.client.messages(finn.user.id).length, 1, { what: 'first push' });
    const offline = waitEvent(e.client, 'offline');
    e.dev.offline();
    await offline;
    assert.notEqual(e.client.state, 'online');
    // Sent while erin's socket is down.
    for (const data of ['missed 1', 'missed 2']) await must(srv, 'POST', '/chat/send', { token: finn.token, body: { to_id: erin.user.id, type: 'text', data } });
    const since = Date.now();
    await waitEvent(e.client, 'synced');
    const syncs = e.dev.seen.requests.filter((r) => r.url.endsWith('/chat/sync') && r.method === 'POST' && r.at >= since);
    assert.ok(syncs.length >= 1, 'POST /chat/sync after the reconnect');
    // With its cursor per conversation and the delete-for-me cursor.
    assert.deepEqual(JSON.parse(syncs[0].body), { cursors: { [finn.user.id]: 1 }, deleted_after: 0 });
    await eventually(() => e.client.messages(finn.user.id).map((m) => m.data), ['before', 'missed 1', 'missed 2'], { what: 'synced messages' });
    assert.equal(e.client.total, 3);
    assert.equal(e.client.store.cursor(finn.user.id), 3);
  });

  test('a lost push (a seq gap) is healed by POST /chat/sync', async () => {
    const gail = await register(srv, uname('ga'));
    const hal = await register(srv, uname('ha'));
    const g = await device(gail);
    await must(srv, 'POST', '/chat/send', { token: hal.token, body: { to_id: gail.user.id, type: 'text', data: 'one' } });
    await eventually(() => g.client.store.cursor(hal.user.id), 1, { what: 'cursor 1' });
    g.dev.dropFrames((text) => text.includes('"lost two"'));
    const gap = waitEvent(g.client, 'gap');
    await must(srv, 'POST', '/chat/send', { token: hal.token, body: { to_id: gail.user.id, type: 'text', data: 'lost two' } });
    await must(srv, 'POST', '/chat/send', { token: hal.token, body: { to_id: gail.user.id, type: 'text', data: 'three' } });
    const since = Date.now();
    await gap;
    await eventually(() => g.client.messages(hal.user.id).map((m) => [m.seq, m.data]), [[1, 'one'], [2, 'lost two'], [3, 'three']], { what: 'the hole filled' });
    assert.equal(g.client.store.cursor(hal.user.id), 3);
    assert.ok(g.dev.seen.frames.some((f) => f.includes('"lost two"')), 'the push did come, and was dropped');
    const sync = g.dev.seen.requests.find((r) => r.url.endsWith('/chat/sync') && r.at >= since);
    assert.deepEqual(JSON.parse(sync.body), { cursors: { [hal.user.id]: 1 } }, 'a gap sync asks for the messages only');
    await eventually(() => g.client.total, 3, { what: 'counted unread' });
  });

  test('groups: create, the push to members, group messages and unread, read, mute, rename, leave', async () => {
    const ivy = await register(srv, uname('iv'));
    const jon = await register(srv, uname('jo'));
    const i = await device(ivy);
    const j = await device(jon);
    const jonSees = waitEvent(j.client, 'list', () => j.client.chatList.some((x) => x.chat_type === 'group'));
    const r = await i.client.createGroup('trip', [jon.user.id]);
    const gid = r.group.group_id;
    const key = groupKey(gid);
    assert.equal(i.client.chatList[0].key, key);
    assert.equal(i.client.chatList[0].username, 'trip');
    await jonSees;
    const info = await i.client.groupInfo(gid);
    assert.deepEqual(info.members.map((m) => m.userid).sort(), [ivy.user.id, jon.user.id].sort());

    const pushed = waitEvent(j.client, 'message', (m) => m.data === 'to the group');
    const stored = await i.client.send({ group_id: gid }, 'text', 'to the group');
    assert.equal(stored.group_id, gid);
    const [m, k] = await pushed;
    assert.equal(k, key);
    assert.equal(m.from_id, ivy.user.id);
    await eventually(() => j.client.store.item(key).noreadnum, 2, { what: 'create + message unread' });
    assert.equal(j.client.total, 2);
    await j.client.read(key);
    assert.equal(j.client.total, 0);
    await i.client.sendText(key, 'again');
    await eventually(() => j.client.total, 1, { what: 'unread again' });
    await j.client.muteGroup(gid, true);
    assert.equal(j.client.store.item(key).muted, true);
    assert.equal(j.client.total, 0, 'a muted group leaves the total');
    assert.equal(j.dev.badge(), 0);

    await i.client.updateGroup(gid, { name: 'trip 2026' });
    await eventually(() => j.client.store.item(key).username, 'trip 2026', { what: 'renamed at jon' });
    await j.client.leaveGroup(gid);
    assert.equal(j.client.store.item(key).left, true);
    await eventually(async () => (await i.client.groupInfo(gid)).members.length, 1, { what: 'one member left' });
  });

  test('typing events and presence pushes', async () => {
    const kim = await register(srv, uname('ki'));
    const lou = await register(srv, uname('lo'));
    await must(srv, 'POST', '/chat/send', { token: kim.token, body: { to_id: lou.user.id, type: 'text', data: 'hi' } });
    const l = await device(lou);
    const k = await device(kim, { connect: false });
    const online = waitEvent(l.client, 'presence', (uid) => uid === kim.user.id && l.client.presenceOf(kim.user.id).online);
    await k.client.connect();
    await online;
    const typing = waitEvent(l.client, 'typing', (key, who) => key === kim.user.id && who.includes(kim.user.id));
    k.client.typing(lou.user.id, true);
    await typing;
    assert.deepEqual(l.client.typingIn(kim.user.id), [kim.user.id]);
    const stopped = waitEvent(l.client, 'typing', (key, who) => key === kim.user.id && who.length === 0);
    k.client.typing(lou.user.id, false);
    await stopped;
    const offline = waitEvent(l.client, 'presence', (uid) => uid === kim.user.id && !l.client.presenceOf(kim.user.id).online);
    k.client.disconnect();
    await offline;
    assert.ok(Number.isSafeInteger(l.client.presenceOf(kim.user.id).last_seen));
  });

  test('a picture: uploaded with progress, sent as an image message with its URL and size', async () => {
    const max = await register(srv, uname('ma'));
    const ned = await register(srv, uname('ne'));
    const m = await device(max);
    const n = await device(ned);
    const progress = [];
    const pushed = waitEvent(n.client, 'message', (x) => x.type === 'image');
    const stored = await m.client.sendImage(ned.user.id, m.dev.file(PNG_1x1), { onProgress: (f) => progress.push(f) });
    assert.ok(progress.length >= 1, 'progress reported');
    assert.equal(progress.at(-1), 1);
    assert.ok(progress.every((f, i) => f >= 0 && f <= 1 && (i === 0 || f >= progress[i - 1])), `progress ${progress}`);
    assert.equal(stored.type, 'image');
    assert.match(stored.data, /^\/media\/[0-9a-f]{64}\.png$/);
    const [got] = await pushed;
    assert.equal(got.data, stored.data);
    const pic = await fetch(`${srv.url}${stored.data}`);
    assert.equal(pic.status, 200);
    assert.deepEqual(Buffer.from(await pic.arrayBuffer()), PNG_1x1);
    // Cancelled (an AbortSignal): code "cancelled", nothing sent.
    const ac = new AbortController();
    const big = Buffer.concat([PNG_1x1, Buffer.alloc(2 * 1024 * 1024)]);
    const cancelled = m.client.sendImage(ned.user.id, m.dev.file(big), { signal: ac.signal });
    ac.abort();
    await assert.rejects(cancelled, (e) => e.code === 'cancelled' && e.network === false);
    if ('width' in stored) {
      // A chatd with image sizes (p15-server): carried by the message and the push.
      assert.equal(stored.width, 1);
      assert.equal(stored.height, 1);
      assert.equal(got.width, 1);
    }
  });

  test('errors come as ChatError with machine-readable codes', async () => {
    const dev = platform.device();
    const c = new ChatClient({ adapter: dev.adapter });
    await assert.rejects(c.login(uname('nobody'), 'wrong-password'), (e) => e instanceof ChatError && e.code === 'bad_credentials' && e.status === 401);
    await assert.rejects(c.connect(), (e) => e.code === 'not_signed_in');
    const ora = await register(srv, uname('or'));
    const o = await device(ora);
    await assert.rejects(o.client.sendText(999999999, 'to nobody'), (e) => e instanceof ChatError && e.code === 'not_found' && e.op === 'send');
    const failed = o.client.messages(999999999).at(-1);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.code, 'not_found');
    // The words of a failure are the app's to choose (errorText).
    const worded = new ChatClient({ adapter: platform.device().adapter, session: { token: ora.token, user: ora.user }, errorText: (e) => `失败: ${e.code}` });
    clients.push(worded);
    await assert.rejects(worded.sendText(999999999, 'again'), (e) => e.code === 'not_found');
    assert.equal(worded.messages(999999999).at(-1).error, '失败: not_found');
    await assert.rejects(o.client.sendText(ora.user.id + 1, 'x'.repeat(5000)), (e) => e.code === 'too_long');
    await assert.rejects(o.client.groupInfo(999999), (e) => e.code === 'not_found' && e.status === 404);
    // A server that cannot be reached.
    const far = new ChatClient({ adapter: platform.device().adapter, baseUrl: 'http://127.0.0.1:1' });
    await assert.rejects(far.login('x', 'y'), (e) => e.code === 'network' && e.network === true);
  });

  test('a send still waiting when the session closes is rejected (cancelled), not left hanging', async () => {
    const una = await register(srv, uname('un'));
    const u = await device(una);
    u.client.conn.send = () => false; // the socket takes nothing,
    u.client.api.send = () => new Promise(() => {}); // and HTTP never answers
    const sending = u.client.sendText(una.user.id + 1, 'never answered');
    await u.client.signOut({ remote: false, forget: false });
    await assert.rejects(sending, (e) => e.code === 'cancelled');
    assert.equal(u.client.uid, 0);
  });

  test('sent while the socket is down: over HTTP, never twice', async () => {
    const pam = await register(srv, uname('pa'));
    const quin = await register(srv, uname('qu'));
    const p = await device(pam, { connect: false });
    const stored = await p.client.sendText(quin.user.id, 'over http');
    assert.ok(stored.id > 0);
    assert.ok(p.dev.seen.requests.some((r) => r.url.endsWith('/chat/send')));
    const h = await must(srv, 'GET', `/chat/history?userid=${quin.user.id}`, { token: pam.token });
    assert.deepEqual(h.map((m) => m.data), ['over http']);
  });

  test('the session ends when the password is changed on another device', async () => {
    const rae = await register(srv, uname('ra'), { password: 'old-password' });
    const r = await device(rae);
    const other = await must(srv, 'POST', '/user/login', { body: { username: rae.user.username, password: 'old-password' } });
    const ended = waitEvent(r.client, 'session_ended');
    await must(srv, 'POST', '/user/password', { token: other.token, body: { old_password: 'old-password', new_password: 'new-password' } });
    const [{ code }] = await ended;
    assert.equal(code, 'password_changed');
    await eventually(() => r.client.state, 'stopped', { what: 'stopped, not reconnecting' });
  });

  test('recall and delete-for-me (when the server has them)', async (t) => {
    const cfg = await post(srv, '/chat/config', undefined, {}).catch(() => null);
    const sam = await register(srv, uname('sa'));
    const probe = await fetch(`${srv.url}/chat/config`, { headers: { Authorization: `Bearer ${sam.token}` } });
    if (probe.status === 404) {
      t.skip('this chatd has no GET /chat/config, /chat/recall or /chat/delete yet (p15-server)');
      return;
    }
    void cfg;
    const tia = await register(srv, uname('ti'));
    const s = await device(sam);
    const t1 = await device(tia);
    const t2 = await device(tia);
    const conf = await s.client.config();
    assert.ok(conf.recall_window > 0);
    const m = await s.client.sendText(tia.user.id, 'oops');
    await eventually(() => t1.client.messages(sam.user.id).some((x) => x.id === m.id), true, { what: 'pushed' });
    const recalled = waitEvent(t1.client, 'recall', (x) => x.message_id === m.id);
    const r = await s.client.recall(m.id);
    assert.equal(r.message.recalled, true);
    assert.equal(s.client.messages(tia.user.id).find((x) => x.id === m.id).recalled, true);
    await recalled;
    const there = t1.client.messages(sam.user.id).find((x) => x.id === m.id);
    assert.equal(there.recalled, true);
    assert.equal(there.data, '');
    assert.ok(!t1.client.messages(sam.user.id).some((x) => x.type === 'recall'), 'the notice is not shown as a message');
    await assert.rejects(s.client.recall(999999999), (e) => e.code === 'not_found');

    const keep = await s.client.sendText(tia.user.id, 'keep');
    const gone = await s.client.sendText(tia.user.id, 'delete me');
    await eventually(() => t2.client.messages(sam.user.id).some((x) => x.id === gone.id), true, { what: 'second device has it' });
    const told = waitEvent(t2.client, 'deleted', (ids) => ids.includes(gone.id));
    const d = await t1.client.deleteForMe([gone.id]);
    assert.deepEqual(d.message_ids, [gone.id]);
    assert.ok(!t1.client.messages(sam.user.id).some((x) => x.id === gone.id));
    await told;
    assert.ok(!t2.client.messages(sam.user.id).some((x) => x.id === gone.id));
    assert.ok(t2.client.messages(sam.user.id).some((x) => x.id === keep.id));
    // A device that was offline learns it through POST /chat/sync's deleted_after.
    const t3dev = platform.device();
    const t3 = await device(tia, { dev: t3dev });
    t3.client.disconnect();
    await t1.client.deleteForMe([keep.id]);
    const synced = waitEvent(t3.client, 'synced');
    await t3.client.connect();
    await synced;
    await eventually(() => t3.client.messages(sam.user.id).some((x) => x.id === keep.id), false, { what: 'deleted on the offline device' });
  });

  test('too much missed (20 sync pages): the caches are dropped, but our unsent message stays and is sent', async () => {
    const own = await startServer({ options: { 'page-limit': 2, 'send-rate': 0 } });
    try {
      const wes = await register(own, uname('we'));
      const xia = await register(own, uname('xi'));
      const yan = await register(own, uname('ya'));
      const w = await device(wes, { server: own });
      w.client.sendTimeoutMs = 8000;
      await must(own, 'POST', '/chat/send', { token: yan.token, body: { to_id: wes.user.id, type: 'text', data: 'y0' } });
      await must(own, 'POST', '/chat/send', { token: xia.token, body: { to_id: wes.user.id, type: 'text', data: 'x0' } });
      await eventually(() => w.client.chatList.length, 2, { what: 'two conversations' });
      w.client.disconnect();
      // Written offline, HTTP down too: it waits in the conversation (and its cache) to be sent.
      const realSend = w.client.api.send;
      w.client.api.send = () => Promise.reject(new ChatError('network', 'down', { network: true }));
      const sending = w.client.sendText(yan.user.id, 'written offline');
      let settled = null;
      sending.then((m) => (settled = m), (e) => (settled = e));
      assert.deepEqual(w.client.messages(yan.user.id).map((m) => [m.data, m.state]), [['y0', undefined], ['written offline', 'sending']]);
      for (let i = 0; i < 45; i++) await must(own, 'POST', '/chat/send', { token: xia.token, body: { to_id: wes.user.id, type: 'text', data: `x${i + 1}` } });
      w.client.api.send = realSend;
      const since = Date.now();
      const synced = waitEvent(w.client, 'synced', () => true, 20000);
      w.client.connect();
      await synced;
      const syncs = w.dev.seen.requests.filter((r) => r.url.endsWith('/chat/sync') && r.at >= since).length;
      assert.ok(syncs >= 20, `${syncs} sync pages: the caches were dropped`);
      await eventually(() => settled !== null, true, { what: 'the send promise settled' });
      assert.ok(!(settled instanceof Error), `sent: ${settled && settled.code}`);
      assert.ok(settled.id > 0);
      const h = await must(own, 'GET', `/chat/history?userid=${yan.user.id}`, { token: wes.token });
      assert.deepEqual(h.map((m) => m.data).sort(), ['written offline', 'y0']);
      assert.ok(w.client.messages(yan.user.id).some((m) => m.id === settled.id && m.data === 'written offline'));
      w.client.disconnect();
    } finally {
      await own.stop();
    }
  });

  test('connect() resolves bound and caught up, and rejects when the bind is refused', async () => {
    const zed = await register(srv, uname('ze'));
    const amy = await register(srv, uname('am'));
    await must(srv, 'POST', '/chat/send', { token: amy.token, body: { to_id: zed.user.id, type: 'text', data: 'waiting' } });
    const z = await device(zed, { connect: false });
    await z.client.connect();
    assert.equal(z.client.state, 'online');
    assert.deepEqual(z.client.chatList.map((i) => [i.userid, i.noreadnum]), [[amy.user.id, 1]], 'the catch-up is in');
    z.client.disconnect();
    await must(srv, 'POST', '/user/logout', { token: zed.token });
    await assert.rejects(z.client.connect(), (e) => e instanceof ChatError && e.status === 401);
    assert.equal(z.client.state, 'stopped');
  });

  test('a client stopped by the server (session ended) stays stopped until connect() with a new token', async () => {
    const zoe = await register(srv, uname('zo'));
    const z = await device(zoe);
    // Logged out elsewhere: the socket closes, the reconnect's bind gets 401, the client stops.
    const ended = waitEvent(z.client, 'session_ended');
    await must(srv, 'POST', '/user/logout', { token: zoe.token });
    await ended;
    await eventually(() => z.client.state, 'stopped', { what: 'stopped' });
    const binds = () => z.dev.seen.requests.filter((r) => r.url.endsWith('/chat/bind')).length;
    const before = binds();
    z.dev.online(); // the platform says the network is back
    z.client.setVisible(true);
    await sleep(800);
    assert.equal(z.client.state, 'stopped', 'the dead token is not tried again');
    assert.equal(binds(), before);
    // A new token: connect() works again.
    const again = await must(srv, 'POST', '/user/login', { body: { username: zoe.user.username, password: zoe.password } });
    z.client.setSession({ token: again.token, user: zoe.user });
    const synced = waitEvent(z.client, 'synced');
    z.client.connect();
    await synced;
    assert.equal(z.client.state, 'online');
    z.client.disconnect();
  });

  test('open() offline shows the cache and does not reject', async () => {
    const bea = await register(srv, uname('be'));
    const cal = await register(srv, uname('ca'));
    const b = await device(bea);
    await must(srv, 'POST', '/chat/send', { token: cal.token, body: { to_id: bea.user.id, type: 'text', data: 'cached one' } });
    await eventually(() => b.client.messages(cal.user.id).length, 1, { what: 'pushed' });
    b.client.disconnect();
    b.client.api.history = () => Promise.reject(new ChatError('network', 'offline', { network: true }));
    await b.client.open(cal.user.id);
    assert.deepEqual(b.client.messages(cal.user.id).map((m) => m.data), ['cached one']);
    b.client.close(cal.user.id + 1);
    assert.equal(b.client.current, cal.user.id, 'close(another) leaves this one open');
    b.client.close(cal.user.id);
    assert.equal(b.client.current, null);
  });

  test('the server restarts: the client reconnects with backoff and syncs', async () => {
    const own = await startServer({});
    try {
      const uma = await register(own, uname('um'));
      const vic = await register(own, uname('vi'));
      // A slow first retry, so that vic's messages are sent before uma is back.
      const u = await device(uma, { server: own, timing: { baseDelayMs: 1500, maxDelayMs: 3000 } });
      const states = [];
      u.client.on('state', (s) => states.push(s));
      const offline = waitEvent(u.client, 'offline');
      own.signal('SIGKILL');
      await own.exited;
      await offline;
      const back = await restartServer(own);
      try {
        await must(own, 'POST', '/chat/send', { token: vic.token, body: { to_id: uma.user.id, type: 'text', data: 'while you were away' } });
        await waitEvent(u.client, 'synced', () => true, 10000);
        assert.ok(states.includes('waiting'), `states ${states}`);
        // A conversation new to this client: in the list with its preview and count; opened, its messages.
        await eventually(() => u.client.chatList.map((i) => [i.userid, i.data, i.noreadnum]), [[vic.user.id, 'while you were away', 1]], { what: 'synced after the restart' });
        assert.equal(u.client.total, 1);
        await u.client.open(vic.user.id);
        assert.deepEqual(u.client.messages(vic.user.id).map((m) => m.data), ['while you were away']);
        await eventually(() => u.client.total, 0, { what: 'read when opened' });
        u.client.disconnect();
      } finally {
        await back.stop();
      }
    } finally {
      await own.stop().catch(() => {});
    }
  });
}
