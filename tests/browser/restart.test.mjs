// The page recovers by itself after chatd is restarted (SIGTERM, then started
// again on the same port and data dir): it reconnects with backoff, binds
// again, fetches what was missed and sends what was queued; nothing is lost
// or shown twice.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

const texts = (page) => B.bubbles(page).then((b) => b.map(({ mine, text }) => `${mine ? '>' : '<'} ${text}`));

test('the page recovers after chatd restarts; nothing lost or doubled', async () => {
  const jackPage = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.srv.url}/`);
  const katePage = await B.newPage(await B.newContext(env.browser, B.DESKTOP), `${env.srv.url}/`);
  await B.signUp(jackPage, 'jack');
  const kate = await B.signUp(katePage, 'kate');
  const leo = await apiClient(env.srv.url).register('leo');

  await B.findAndOpen(jackPage, 'kate');
  await B.sendText(jackPage, 'before restart');
  await B.eventually(() => B.chatList(katePage), [{ name: 'jack', preview: 'before restart', unread: '1' }]);
  await katePage.locator('#chat-list .chat-link').first().click();
  await B.sendText(katePage, 'reply before restart');
  await B.eventually(() => texts(jackPage), ['> before restart', '< reply before restart']);

  // Count the WebSocket attempts while chatd is down: backoff, not a storm.
  let attempts = 0;
  jackPage.on('websocket', () => attempts++);

  await env.srv.halt();
  for (const p of [jackPage, katePage]) {
    await p.waitForFunction(() => document.documentElement.dataset.conn === 'offline');
    await p.locator('#conn-banner', { hasText: 'Offline. Reconnecting' }).waitFor();
  }
  // Written while the server is down: waits as "sending".
  await B.sendText(jackPage, 'sent while down');
  await B.eventually(() => B.bubbles(jackPage).then((b) => b.at(-1)), { mine: true, text: 'sent while down', state: 'sending', id: 0 });
  await sleep(3000);
  assert.ok(attempts >= 2 && attempts <= 8, `reconnect attempts in ~3 s: ${attempts}`);

  await env.srv.start();
  // Written while both pages are still away from the new server.
  await leo.api.post('/chat/send', { to_id: kate.id, type: 'text', data: 'did you get this?' });

  const t0 = Date.now();
  for (const p of [jackPage, katePage]) await B.waitOnline(p, 20000);
  console.log(`both pages back online ${Date.now() - t0} ms after chatd started`);
  await B.eventually(() => B.bubbles(jackPage).then((b) => b.at(-1).state), 'read', { timeout: 10000 });
  await B.eventually(() => texts(katePage), ['< before restart', '> reply before restart', '< sent while down']);
  // Leo's message and Jack's queued one reached the new server in some order: the list follows it.
  const kateApi = apiClient(env.srv.url, (await katePage.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')))).token);
  const rows = {
    leo: { name: 'leo', preview: 'did you get this?', unread: '1' },
    jack: { name: 'jack', preview: 'sent while down', unread: '' },
  };
  const order = (await kateApi.get('/chat/list')).map((c) => rows[c.username]);
  assert.equal(order.length, 2);
  await B.eventually(() => B.chatList(katePage), order);
  assert.equal(await B.tabBadge(katePage), '1');
  assert.equal(await katePage.locator('#conn-banner').isVisible(), false);

  // Chat goes on as before.
  await B.sendText(katePage, 'after restart');
  const all = ['> before restart', '< reply before restart', '> sent while down', '< after restart'];
  await B.eventually(() => texts(jackPage), all);
  await sleep(500);
  assert.deepEqual(await texts(jackPage), all, 'nothing twice');
  // The server stored each message once.
  const history = await kateApi.get(
    `/chat/history?userid=${(await jackPage.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')))).user.id}`,
  );
  assert.deepEqual(history.map((m) => m.data).reverse(), ['before restart', 'reply before restart', 'sent while down', 'after restart']);

  // And a reload shows the same, from the cache and then the server.
  await jackPage.reload();
  await B.waitOnline(jackPage);
  await B.eventually(() => texts(jackPage), all);
  B.noErrors(jackPage, katePage);
});
