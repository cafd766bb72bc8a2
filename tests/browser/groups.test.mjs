// Groups in the browser: three users in three browser contexts make a group
// and chat (sender names, system messages, typing names), roles and rename in
// the members panel, a removed member keeps its history but gets nothing
// more, ownership handed over and back, a member leaves, the owner dissolves;
// then one user's two tabs: group unread badges, read sync, a muted group left
// out of the badge, groups and 1:1 mixed by recency; and a lost group push
// synced by its g<id> cursor.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

const texts = (rows) => rows.map((r) => (r.kind === 'theirs' ? `${r.sender}: ${r.text}` : r.kind === 'mine' ? `me: ${r.text}` : `[${r.text}]`));

test('three users make a group and chat; a removed member stops receiving; one leaves', async () => {
  const ctx = {};
  const page = {};
  for (const name of ['alice', 'bob', 'carol']) {
    ctx[name] = await B.newContext(env.browser, B.DESKTOP);
    page[name] = await B.newPage(ctx[name], `${env.srv.url}/`);
    page[name].on('dialog', (d) => d.accept()); // confirm() of leave / hand over
    await B.signUp(page[name], name);
  }
  const { alice, bob, carol } = page;

  await B.createGroup(alice, 'Trio', ['bob', 'carol']);
  await B.eventually(() => B.groupRows(alice).then(texts), ['[alice created the group]']);
  assert.equal(await alice.locator('#conv-sub').textContent(), '3 members');
  // Bob and Carol learn of the group from the push: it is in their lists, unread.
  for (const p of [bob, carol]) {
    await B.eventually(() => B.chatList(p), [{ name: 'Trio', preview: 'alice created the group', unread: '1' }]);
    await B.openChat(p, 'Trio');
    await B.eventually(() => B.groupRows(p).then(texts), ['[alice created the group]']);
  }

  await B.sendText(bob, 'hi all');
  await B.sendText(carol, 'hello bob');
  await B.sendText(alice, 'welcome');
  const seen = (me) =>
    ['[alice created the group]', 'bob: hi all', 'carol: hello bob', 'alice: welcome'].map((t) => (t.startsWith(`${me}: `) ? `me: ${t.slice(me.length + 2)}` : t));
  for (const [name, p] of Object.entries(page)) await B.eventually(() => B.groupRows(p).then(texts), seen(name), { message: name });
  // Sender avatars beside the others' messages, none beside our own.
  assert.equal(await bob.locator('#message-rows .row.theirs .avatar').count(), 2);
  assert.equal(await bob.locator('#message-rows .row.mine .avatar').count(), 0);
  await B.eventually(() => B.chatList(carol).then((l) => l[0]), { name: 'Trio', preview: 'alice: welcome', unread: '' });

  // Typing names who types.
  await bob.locator('#text').pressSequentially('x');
  await alice.locator('#conv-status', { hasText: 'bob is typing…' }).waitFor();
  await carol.locator('#text').pressSequentially('y');
  await alice.locator('#conv-status', { hasText: 'bob and carol are typing…' }).waitFor();
  await bob.locator('#text').fill('');
  await carol.locator('#text').fill('');
  await bob.locator('#text').press('Backspace');

  // The members panel: roles, and the owner's actions.
  assert.deepEqual(await B.groupMembers(alice), [
    { name: 'alice (you)', role: 'owner', online: true },
    { name: 'bob', role: 'member', online: true },
    { name: 'carol', role: 'member', online: true },
  ]);
  await alice.locator('#members-list .member', { hasText: 'bob' }).locator('.member-role').click();
  await B.eventually(() => B.groupRows(bob).then((r) => r.at(-1).text), 'alice made bob an admin');
  await B.eventually(() => B.groupMembers(alice).then((m) => m[1].role), 'admin');
  await alice.locator('#group-rename').fill('Weekend plans');
  await alice.locator('#group-rename-form button').click();
  for (const p of [alice, bob, carol]) {
    await B.eventually(() => B.groupRows(p).then((r) => r.at(-1).text), 'alice renamed the group to “Weekend plans”');
    await B.eventually(() => p.locator('#conv-name').textContent(), 'Weekend plans');
  }
  await B.eventually(() => B.chatList(carol).then((l) => l[0].name), 'Weekend plans');

  // Bob (an admin) sees the add field and removes Carol (a member).
  const bobMembers = await B.groupMembers(bob);
  assert.deepEqual(bobMembers.map((m) => m.role), ['owner', 'admin', 'member']);
  assert.equal(await bob.locator('#members-add').isVisible(), true);
  assert.equal(await bob.locator('#members-list .member', { hasText: 'alice' }).locator('.member-remove').count(), 0, 'an admin cannot remove the owner');
  await bob.locator('#members-list .member', { hasText: 'carol' }).locator('.member-remove').click();
  await B.eventually(() => B.groupRows(carol).then((r) => r.at(-1).text), 'bob removed carol');
  // Carol's conversation stays readable; the send box is replaced by a notice.
  await carol.locator('#conv-notice').waitFor({ state: 'visible' });
  assert.equal(await carol.locator('#composer').isVisible(), false);
  await B.sendText(alice, 'carol is gone');
  await B.eventually(() => B.groupRows(bob).then((r) => r.at(-1)), { kind: 'theirs', sender: 'alice', text: 'carol is gone' });
  await sleep(400);
  assert.equal((await B.groupRows(carol)).at(-1).text, 'bob removed carol', 'a removed member gets nothing more');
  assert.equal(await carol.locator('#message-rows .row', { hasText: 'carol is gone' }).count(), 0);
  // After a reload too (history and sync stop at the removal).
  await carol.reload();
  await B.waitOnline(carol);
  await B.openChat(carol, 'Weekend plans');
  await B.eventually(() => B.groupRows(carol).then((r) => r.at(-1).text), 'bob removed carol');
  await carol.locator('#conv-notice').waitFor({ state: 'visible' });

  // Screenshots of a group conversation (and of its members panel on a phone).
  await alice.locator('#members-close').click();
  await B.screenshot(alice, 'group-desktop.png');
  await bob.locator('#members-close').click();
  await bob.setViewportSize(B.PHONE);
  await B.screenshot(bob, 'group-phone.png');
  await B.groupMembers(bob);
  await B.screenshot(bob, 'group-members-phone.png');
  await bob.setViewportSize(B.DESKTOP);

  // Alice hands the group over to Bob (she becomes an admin), then Bob leaves: it comes back to her.
  await B.groupMembers(alice);
  await alice.locator('#members-list .member', { hasText: 'bob' }).locator('.member-owner').click();
  await B.eventually(() => B.groupRows(bob).then((r) => r.at(-1).text), 'alice made bob the owner');
  await B.eventually(() => B.groupMembers(alice).then((m) => m.map((x) => x.role)), ['admin', 'owner']);
  assert.equal(await alice.locator('#members-list .member-owner, #members-list .member-remove').count(), 0, 'an admin cannot touch the owner');
  await B.groupMembers(bob);
  await bob.locator('#group-leave').click();
  await B.eventually(() => B.groupRows(alice).then((r) => r.at(-1).text), 'bob left; alice is now the owner');
  await bob.locator('#conv-notice').waitFor({ state: 'visible' });
  assert.equal(await bob.locator('#composer').isVisible(), false);
  await B.eventually(() => alice.locator('#conv-sub').textContent(), '1 member');
  await B.eventually(() => B.groupMembers(alice), [{ name: 'alice (you)', role: 'owner', online: true }]);
  // The owner dissolves it: readable, closed.
  await alice.locator('#group-dissolve').click();
  await B.eventually(() => B.groupRows(alice).then((r) => r.at(-1).text), 'the group was dissolved');
  await alice.locator('#conv-notice', { hasText: 'dissolved' }).waitFor();

  B.noErrors(alice, bob, carol);
  for (const c of Object.values(ctx)) await c.close();
});

test('group unread badges and read sync across two tabs; a muted group is not in the badge', async () => {
  const api = apiClient(env.srv.url);
  const dave = await api.register('dave');
  const erin = await api.register('erin');
  // A name with HTML in it shows as text.
  const CLUB = '<i>Book</i> club<img src=x onerror="window.__pwned=1">';
  const { group } = await erin.api.post('/group/create', { name: CLUB, members: [dave.user.id] });
  const gid = group.group_id;
  const context = await B.newContext(env.browser, B.DESKTOP);
  const tab1 = await B.newPage(context, `${env.srv.url}/`);
  await B.signIn(tab1, 'dave');
  const tab2 = await B.newPage(context, `${env.srv.url}/`);
  await B.waitOnline(tab2);

  await erin.api.post('/chat/send', { group_id: gid, type: 'text', data: 'chapter one' });
  await erin.api.post('/chat/send', { group_id: gid, type: 'text', data: 'chapter two' });
  const total = String((await dave.api.get('/chat/unread')).total);
  assert.ok(Number(total) >= 2);
  for (const tab of [tab1, tab2]) {
    await B.eventually(() => B.chatList(tab), [{ name: CLUB, preview: 'erin: chapter two', unread: total }]);
    assert.equal(await B.tabBadge(tab), total);
  }
  // A 1:1 message goes on top; the group follows; then the group again.
  await erin.api.post('/chat/send', { to_id: dave.user.id, type: 'text', data: 'psst' });
  await B.eventually(() => B.chatList(tab2).then((l) => l.map((i) => i.name)), ['erin', CLUB]);
  await erin.api.post('/chat/send', { group_id: gid, type: 'text', data: 'chapter three' });
  await B.eventually(() => B.chatList(tab2).then((l) => l.map((i) => i.name)), [CLUB, 'erin']);

  // Tab 1 reads the group: tab 2's count for it clears (the "read" push), the 1:1 stays.
  await B.openChat(tab1, CLUB);
  await B.eventually(() => B.groupRows(tab1).then((r) => r.at(-1).text), 'chapter three');
  await B.eventually(() => B.chatList(tab2), [
    { name: CLUB, preview: 'erin: chapter three', unread: '' },
    { name: 'erin', preview: 'psst', unread: '1' },
  ]);
  await B.eventually(() => B.tabBadge(tab2), '1');
  assert.equal((await dave.api.get('/chat/unread')).total, 1);

  // Tab 1 mutes the group: tab 2 shows the muted icon; the group's new messages count on the item only.
  await tab1.locator('#conv-members-btn').click();
  await tab1.locator('#group-mute').check();
  await B.eventually(() => tab2.locator('#chat-list .chat-item.muted .muted-icon').count(), 1);
  await B.openChat(tab1, 'erin'); // reads the 1:1: nothing unread counts now
  await B.eventually(() => B.tabBadge(tab2), '');
  await erin.api.post('/chat/send', { group_id: gid, type: 'text', data: 'muted news' });
  for (const tab of [tab1, tab2]) {
    await B.eventually(() => B.chatList(tab).then((l) => l[0]), { name: CLUB, preview: 'erin: muted news', unread: '1' });
    assert.equal(await B.tabBadge(tab), '');
    assert.equal(await tab.title(), 'chatd');
  }
  assert.equal(await tab1.locator('#chat-list i, #chat-list img, #conv-name i, #conv-name img').count(), 0, 'the name is text');
  assert.equal(await tab1.evaluate(() => window.__pwned), undefined);
  B.noErrors(tab1, tab2);
  await context.close();
});

test('a lost group push is noticed by seq and synced by its g<id> cursor; messages missed while closed come back', async () => {
  const api = apiClient(env.srv.url);
  const gina = await api.register('gina');
  const hank = await api.register('hank');
  const ida = await api.register('ida');
  const { group } = await hank.api.post('/group/create', { name: 'Seq group', members: [gina.user.id, ida.user.id] });
  const gid = group.group_id;
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context);
  const dropped = [];
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (typeof m === 'string' && m.includes('"data":"two (push lost)"')) dropped.push(m);
      else ws.send(m);
    });
  });
  const syncs = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/chat/sync') syncs.push(r.postData() || '');
  });
  await page.goto(`${env.srv.url}/`);
  await B.signIn(page, 'gina');
  await B.openChat(page, 'Seq group');
  await ida.api.post('/chat/send', { group_id: gid, type: 'text', data: 'one' });
  await B.eventually(() => B.groupRows(page).then(texts), ['[hank created the group]', 'ida: one']);
  const before = syncs.length;

  await hank.api.post('/chat/send', { group_id: gid, type: 'text', data: 'two (push lost)' });
  await B.eventually(() => dropped.length, 1);
  await hank.api.post('/chat/send', { group_id: gid, type: 'text', data: 'three' });
  await B.eventually(() => B.groupRows(page).then(texts), ['[hank created the group]', 'ida: one', 'hank: two (push lost)', 'hank: three']);
  assert.deepEqual(syncs.slice(before), [`{"cursors":{"g${gid}":2}}`], 'one sync, from the group cursor');
  assert.deepEqual(await page.evaluate((uid) => JSON.parse(localStorage.getItem(`chatseq${uid}`)), gina.user.id), { [-gid]: 4 });

  // Closed: what is said meanwhile comes back with its count, from the cursor.
  await page.close();
  await ida.api.post('/chat/send', { group_id: gid, type: 'text', data: 'while away' });
  const again = await B.newPage(context);
  const syncs2 = [];
  again.on('request', (r) => {
    if (new URL(r.url()).pathname === '/chat/sync') syncs2.push(r.postData() || '');
  });
  await again.goto(`${env.srv.url}/`);
  await B.waitOnline(again);
  await B.eventually(() => B.chatList(again), [{ name: 'Seq group', preview: 'ida: while away', unread: '1' }]);
  assert.ok(syncs2.includes(`{"cursors":{"g${gid}":4},"deleted_after":0}`), `synced from the cursor: ${syncs2.join(' | ')}`);
  await B.openChat(again, 'Seq group');
  await B.eventually(() => B.groupRows(again).then((r) => texts(r).at(-1)), 'ida: while away');
  await B.eventually(() => B.chatList(again).then((l) => l[0].unread), '');
  B.noErrors(again);
  await context.close();
});
