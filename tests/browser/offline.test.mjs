// A message sent while the recipient's page is closed is there, with its
// unread count, when they come back; the cached list shows at once and is
// then reconciled with the server (POST /chat/sync from each conversation's
// cursor); nothing shows twice.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

test('messages sent while the page was closed are there, with their unread count, on return', async () => {
  const api = apiClient(env.srv.url);
  const ivy = await api.register('ivy');
  const context = await B.newContext(env.browser, B.PHONE);
  let page = await B.newPage(context, `${env.srv.url}/`);
  const harry = await B.signUp(page, 'harry');

  await ivy.api.post('/chat/send', { to_id: harry.id, type: 'text', data: 'before' });
  await B.eventually(() => B.chatList(page), [{ name: 'ivy', preview: 'before', unread: '1' }]);
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.text)), ['before']);
  await page.locator('.conv-bar .back').click();
  await B.eventually(() => B.chatList(page), [{ name: 'ivy', preview: 'before', unread: '' }]);
  // The reference client's cache keys.
  const keys = await page.evaluate(() => Object.keys(localStorage).sort());
  assert.ok(keys.includes(`chatlist${harry.id}`), `chatlist key in ${keys}`);
  assert.ok(keys.includes(`chatdetail_${harry.id}_${ivy.user.id}`), `chatdetail key in ${keys}`);
  B.noErrors(page);
  await page.close();

  await ivy.api.post('/chat/send', { to_id: harry.id, type: 'text', data: 'while you were away 1' });
  await ivy.api.post('/chat/send', { to_id: harry.id, type: 'text', data: 'while you were away 2' });

  // Back, with the server's answers held back a moment: the cached list shows first.
  page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  const requests = [];
  page.on('request', (r) => requests.push(`${r.method()} ${new URL(r.url()).pathname}${new URL(r.url()).search} ${r.postData() || ''}`.trim()));
  await page.route(/\/chat\/(list|unread|sync)/, async (route) => {
    await sleep(1200);
    await route.continue();
  });
  await page.goto(`${env.srv.url}/`);
  await page.locator('#chat-list .chat-item').first().waitFor({ timeout: 1000 });
  assert.deepEqual(await B.chatList(page), [{ name: 'ivy', preview: 'before', unread: '' }], 'the cache, at once');

  await B.eventually(() => B.chatList(page), [{ name: 'ivy', preview: 'while you were away 2', unread: '2' }]);
  assert.equal(await B.tabBadge(page), '2');
  assert.equal(await page.title(), '(2) chatd');
  // Then what was missed after the last seq seen of each conversation (ivy's: 1), in one answer.
  await B.eventually(() => requests.filter((r) => r.includes('/chat/sync')), [`POST /chat/sync {"cursors":{"${ivy.user.id}":1},"deleted_after":0}`]);
  await page.unrouteAll({ behavior: 'wait' });

  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.text)), ['before', 'while you were away 1', 'while you were away 2']);
  await B.eventually(() => B.tabBadge(page), '');
  assert.equal(await page.title(), 'chatd');
  assert.equal((await apiClient(env.srv.url, (await page.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')))).token).get('/chat/unread')).total, 0);
  await sleep(300);
  assert.deepEqual(await B.bubbles(page).then((b) => b.map((x) => x.text)), ['before', 'while you were away 1', 'while you were away 2'], 'nothing twice');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('signing out clears the session and the cache; signing in again brings everything back', async () => {
  const api = apiClient(env.srv.url);
  const mia = await api.register('mia');
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const ned = await B.signUp(page, 'ned');
  await mia.api.post('/chat/send', { to_id: ned.id, type: 'text', data: 'hello ned' });
  await B.eventually(() => B.chatList(page), [{ name: 'mia', preview: 'hello ned', unread: '1' }]);
  await page.locator('.tab[data-tab="me"]').click();
  assert.equal(await page.locator('#me-name').textContent(), 'ned');
  await page.locator('#sign-out').click();
  await page.locator('#auth').waitFor({ state: 'visible' });
  assert.equal(await page.title(), 'chatd');
  const keys = await page.evaluate(() => Object.keys(localStorage));
  assert.deepEqual(keys, [], 'nothing of the user is left in localStorage');
  // The token was revoked.
  await B.signIn(page, 'ned');
  await B.eventually(() => B.chatList(page), [{ name: 'mia', preview: 'hello ned', unread: '1' }]);
  // A wrong password shows the server's message.
  await page.locator('.tab[data-tab="me"]').click();
  await page.locator('#sign-out').click();
  await page.locator('#auth-username').fill('ned');
  await page.locator('#auth-password').fill('wrong-password');
  await page.locator('#auth-submit').click();
  await page.locator('#auth-error', { hasText: 'wrong username or password' }).waitFor();
  B.noErrors(page);
  await context.close();
});

test('a revoked token sends the page back to sign in, with a message', async () => {
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  await B.signUp(page, 'rita');
  const { token } = await page.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')));
  await apiClient(env.srv.url, token).post('/user/logout');
  await page.reload();
  await page.locator('#auth').waitFor({ state: 'visible' });
  await page.locator('#toast', { hasText: 'Your session has ended. Please sign in again.' }).waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('chatd_session')), null);
  assert.equal(await page.locator('#shell').isVisible(), false);
  B.noErrors(page);
  await context.close();
});
