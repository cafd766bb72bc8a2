// Presence in the browser: a peer's online dot in the chat list and the
// conversation header comes on when their page binds and goes off when their
// last tab closes (after --presence-grace, short here), with "last seen at …";
// a reload within the grace period does not flap. In a group, the members
// panel shows who is online.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const GRACE_MS = 600;
const env = B.useChatdAndBrowser(() => startChatd(['--presence-grace', String(GRACE_MS)]));

test('a peer goes online and offline in the list and the header when its last tab closes', async () => {
  const api = apiClient(env.srv.url);
  const quinn = await api.register('quinn');
  const pia = await api.register('pia');
  await quinn.api.post('/chat/send', { to_id: pia.user.id, type: 'text', data: 'hello pia' });

  const piaCtx = await B.newContext(env.browser, B.DESKTOP);
  const piaPage = await B.newPage(piaCtx, `${env.srv.url}/`);
  await B.signIn(piaPage, 'pia');
  await B.openChat(piaPage, 'quinn');
  assert.equal(await B.listOnline(piaPage, 'quinn'), false, 'quinn is offline at first');
  assert.equal(await piaPage.locator('#conv-avatar .presence-dot.online').count(), 0);

  // Quinn opens two tabs: online.
  const quinnCtx = await B.newContext(env.browser, B.PHONE);
  const q1 = await B.newPage(quinnCtx, `${env.srv.url}/`);
  await B.signIn(q1, 'quinn');
  const q2 = await B.newPage(quinnCtx, `${env.srv.url}/`);
  await B.waitOnline(q2);
  await B.eventually(() => B.listOnline(piaPage, 'quinn'), true, { message: 'the list dot' });
  await B.eventually(() => piaPage.locator('#conv-sub').textContent(), 'online');
  assert.equal(await piaPage.locator('#conv-avatar .presence-dot.online').count(), 1, 'the header dot');
  // Quinn sees Pia online too (her page is bound).
  await B.eventually(() => B.listOnline(q1, 'pia'), true);

  // One of two tabs closes, and the other reloads within the grace period: still online.
  await q2.close();
  await q1.reload();
  await B.waitOnline(q1);
  await sleep(GRACE_MS + 500);
  assert.equal(await B.listOnline(piaPage, 'quinn'), true, 'no flap on a reload');

  // The last tab closes: offline after the grace period, with "last seen at …".
  const closedAt = Date.now();
  await q1.close();
  await B.eventually(() => B.listOnline(piaPage, 'quinn'), false, { timeout: GRACE_MS + 5000, message: 'the dot goes' });
  const offAfter = Date.now() - closedAt;
  assert.ok(offAfter >= GRACE_MS - 100, `offline after ${offAfter} ms, not before the grace period`);
  await B.eventually(() => piaPage.locator('#conv-sub').textContent().then((t) => /^last seen at \d\d:\d\d$/.test(t)), true);
  assert.equal(await piaPage.locator('#conv-avatar .presence-dot.online').count(), 0);

  // Back again.
  const q3 = await B.newPage(quinnCtx, `${env.srv.url}/`);
  await B.waitOnline(q3);
  await B.eventually(() => piaPage.locator('#conv-sub').textContent(), 'online');
  // Someone new, online, writes first: the new list item has the dot (from the list Pia fetches for it).
  const tess = await api.register('tess');
  const tessCtx = await B.newContext(env.browser, B.PHONE);
  const tessPage = await B.newPage(tessCtx, `${env.srv.url}/`);
  await B.signIn(tessPage, 'tess');
  await tess.api.post('/chat/send', { to_id: pia.user.id, type: 'text', data: 'hi, new here' });
  await B.eventually(() => B.listOnline(piaPage, 'tess'), true, { message: 'a new peer who is online' });
  await tessCtx.close();
  B.noErrors(piaPage, q3);
  await quinnCtx.close();
  await piaCtx.close();
});

test('group members: online dots in the members panel follow presence', async () => {
  const api = apiClient(env.srv.url);
  const rita = await api.register('rita');
  const sam = await api.register('sam');
  await rita.api.post('/group/create', { name: 'Dots', members: [sam.user.id] });

  const ritaCtx = await B.newContext(env.browser, B.DESKTOP);
  const ritaPage = await B.newPage(ritaCtx, `${env.srv.url}/`);
  await B.signIn(ritaPage, 'rita');
  await B.openChat(ritaPage, 'Dots');
  await B.eventually(() => B.groupMembers(ritaPage), [
    { name: 'rita (you)', role: 'owner', online: true },
    { name: 'sam', role: 'member', online: false },
  ]);
  const samCtx = await B.newContext(env.browser, B.PHONE);
  const samPage = await B.newPage(samCtx, `${env.srv.url}/`);
  await B.signIn(samPage, 'sam');
  await B.eventually(() => B.groupMembers(ritaPage).then((m) => m[1].online), true, { message: 'sam comes online' });
  await samCtx.close();
  await B.eventually(() => B.groupMembers(ritaPage).then((m) => m[1].online), false, { timeout: GRACE_MS + 5000, message: 'sam goes offline' });
  B.noErrors(ritaPage);
  await ritaCtx.close();
});
