// Two users in two browser contexts sign up, find each other and chat both
// ways; the list order, unread badges and page title are right on both sides;
// typing, image messages, older pages on scroll; screenshots as artifacts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

test('two users find each other and chat both ways; list order and badges on both sides', async () => {
  const api = apiClient(env.srv.url);
  const alicePage = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.srv.url}/`);
  const bobPage = await B.newPage(await B.newContext(env.browser, B.DESKTOP), `${env.srv.url}/`);
  const alice = await B.signUp(alicePage, 'alice');
  const bob = await B.signUp(bobPage, 'bob');
  const carol = await api.register('carol');
  assert.equal(await alicePage.title(), 'chatd');
  assert.equal(await alicePage.locator('#chats-empty').isVisible(), true, 'a new user sees the empty list');

  // Alice finds Bob and writes; Enter sends; the message is acknowledged.
  await B.findAndOpen(alicePage, 'bob');
  await B.sendText(alicePage, 'Hi Bob');
  await B.eventually(() => B.bubbles(alicePage), [{ mine: true, text: 'Hi Bob', state: 'sent', id: 1 }]);
  assert.equal(await alicePage.locator('#text').inputValue(), '', 'the send box is emptied');

  // Bob: one unread, on the conversation, the tab bar and the title.
  await B.eventually(() => B.chatList(bobPage), [{ name: 'alice', preview: 'Hi Bob', unread: '1' }]);
  assert.equal(await B.tabBadge(bobPage), '1');
  assert.equal(await bobPage.title(), '(1) chatd');

  // Carol writes to Bob: her conversation goes on top.
  await carol.api.post('/chat/send', { to_id: bob.id, type: 'text', data: 'Lunch today?' });
  await B.eventually(() => B.chatList(bobPage), [
    { name: 'carol', preview: 'Lunch today?', unread: '1' },
    { name: 'alice', preview: 'Hi Bob', unread: '1' },
  ]);
  assert.equal(await B.tabBadge(bobPage), '2');
  assert.equal(await bobPage.title(), '(2) chatd');
  await B.screenshot(bobPage, 'chat-list-desktop.png');

  // Bob finds Alice too: opening the conversation reads it.
  await B.findAndOpen(bobPage, 'alice');
  await B.eventually(() => B.bubbles(bobPage), [{ mine: false, text: 'Hi Bob', state: '', id: 1 }]);
  await B.eventually(() => B.tabBadge(bobPage), '1');
  assert.equal(await bobPage.title(), '(1) chatd');
  const unread = await apiClient(env.srv.url, (await bobPage.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')))).token).get('/chat/unread');
  assert.deepEqual({ ...unread, groups: unread.groups || [] }, { total: 1, conversations: [{ userid: carol.user.id, noreadnum: 1 }], groups: [] }, 'the server agrees');
  // Alice sees that Bob read it.
  await B.eventually(() => B.bubbles(alicePage), [{ mine: true, text: 'Hi Bob', state: 'read', id: 1 }]);

  // Bob types: Alice sees "typing…" in the open conversation, gone when the message arrives.
  // The events go over the socket, at most one "typing" per few seconds.
  const events = [];
  bobPage.on('websocket', (ws) =>
    ws.on('framesent', (f) => {
      const m = JSON.parse(f.payload);
      if (m.type === 'event') events.push(m);
    }),
  );
  await bobPage.reload();
  await B.waitOnline(bobPage);
  await B.eventually(() => B.bubbles(bobPage).then((b) => b.length), 1);
  const typingStarted = Date.now();
  await bobPage.locator('#text').pressSequentially('Hi Al', { delay: 20 });
  await alicePage.locator('#conv-status', { hasText: 'typing…' }).waitFor();
  await bobPage.locator('#text').pressSequentially('ice!', { delay: 20 });
  await bobPage.locator('#text').press('Enter');
  const typingMs = Date.now() - typingStarted;
  await B.eventually(() => B.bubbles(bobPage), [
    { mine: false, text: 'Hi Bob', state: '', id: 1 },
    { mine: true, text: 'Hi Alice!', state: 'read', id: 3 },
  ]);
  await B.eventually(() => B.bubbles(alicePage), [
    { mine: true, text: 'Hi Bob', state: 'read', id: 1 },
    { mine: false, text: 'Hi Alice!', state: '', id: 3 },
  ]);
  assert.equal(await alicePage.locator('#conv-status').isVisible(), false, 'typing… is gone');
  const typingOn = { type: 'event', to_id: alice.id, data: { typing: true } };
  const typingOff = { type: 'event', to_id: alice.id, data: { typing: false } };
  assert.deepEqual(events[0], typingOn);
  assert.deepEqual(events.at(-1), typingOff);
  assert.deepEqual(events.slice(1, -1), Array(events.length - 2).fill(typingOn));
  assert.ok(events.length - 1 <= Math.ceil(typingMs / 3000), `${events.length - 1} typing events in ${typingMs} ms`);
  // The open conversation does not count as unread for Alice.
  assert.equal(await B.tabBadge(alicePage), '');
  assert.equal(await alicePage.title(), 'chatd');

  // Bob's list: Alice on top again (his own message), Carol still unread.
  await B.eventually(() => B.chatList(bobPage), [
    { name: 'alice', preview: 'You: Hi Alice!', unread: '' },
    { name: 'carol', preview: 'Lunch today?', unread: '1' },
  ]);

  // An image by URL shows as an image.
  const imageUrl = `${env.srv.url}/img/icon.svg`;
  await bobPage.locator('#image-btn').click();
  await bobPage.locator('#image-url').fill(imageUrl);
  await bobPage.locator('#image-form button[type="submit"]').click();
  const img = alicePage.locator('#message-rows .row.theirs .bubble.image img');
  await img.waitFor();
  assert.equal(await img.getAttribute('src'), imageUrl);
  await alicePage.waitForFunction(() => {
    const i = document.querySelector('#message-rows .bubble.image img');
    return i && i.complete && i.naturalWidth > 0;
  });
  await B.eventually(() => B.bubbles(bobPage).then((b) => b.map((x) => x.state)), ['', 'read', 'read']);

  await B.screenshot(alicePage, 'conversation-phone.png');
  await B.screenshot(bobPage, 'conversation-desktop.png');

  // Alice goes back to her list (phone: the back button); Carol writes to her twice.
  await alicePage.locator('.conv-bar .back').click();
  await B.eventually(() => B.chatList(alicePage), [{ name: 'bob', preview: '[Image]', unread: '' }]);
  await carol.api.post('/chat/send', { to_id: alice.id, type: 'text', data: 'Are you coming tonight?' });
  await carol.api.post('/chat/send', { to_id: alice.id, type: 'text', data: 'Bring the cake!' });
  await B.eventually(() => B.chatList(alicePage), [
    { name: 'carol', preview: 'Bring the cake!', unread: '2' },
    { name: 'bob', preview: '[Image]', unread: '' },
  ]);
  assert.equal(await B.tabBadge(alicePage), '2');
  assert.equal(await alicePage.title(), '(2) chatd');
  await B.screenshot(alicePage, 'chat-list-phone.png');

  // Both sides see each message once.
  await alicePage.locator(`#chat-list .chat-item[data-peer="${bob.id}"] .chat-link`).click();
  await B.eventually(() => B.bubbles(alicePage).then((b) => b.length), 3);
  assert.equal(await B.tabBadge(alicePage), '2', "Carol's messages are still unread");
  B.noErrors(alicePage, bobPage);
  await alicePage.context().close();
  await bobPage.context().close();
});

test('older messages load when scrolling up; times and day dividers', async () => {
  const api = apiClient(env.srv.url);
  const dave = await api.register('dave');
  const erin = await api.register('erin');
  for (let i = 1; i <= 70; i++) {
    await dave.api.post('/chat/send', { to_id: erin.user.id, type: 'text', data: `message ${i}`, client_msg_id: `m${i}` });
  }
  const page = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.srv.url}/`);
  await B.signIn(page, 'erin');
  await B.eventually(() => B.chatList(page), [{ name: 'dave', preview: 'message 70', unread: '70' }]);
  assert.equal(await B.tabBadge(page), '70');
  assert.equal(await page.title(), '(70) chatd');
  await page.locator('#chat-list .chat-link').first().click();
  // The newest page first, scrolled to the bottom.
  const texts = () => B.bubbles(page).then((b) => b.map((x) => x.text));
  await B.eventually(async () => (await texts()).at(-1), 'message 70');
  const first = await texts();
  assert.ok(first.length >= 30 && first.length < 70, `a page or two, not all (${first.length})`);
  assert.deepEqual(first, Array.from({ length: first.length }, (_, i) => `message ${70 - first.length + 1 + i}`));
  assert.equal(await B.tabBadge(page), '');
  // Scrolled to the top, an older page comes in above and what was on screen stays there.
  const topBefore = first[0];
  await page.locator('#messages').evaluate((el) => {
    el.scrollTop = 0;
  });
  await B.eventually(async () => (await texts()).length > first.length, true);
  const stay = await page.locator('#messages').evaluate((el, text) => {
    const row = [...el.querySelectorAll('.row')].find((r) => r.querySelector('.bubble').textContent === text);
    return { scrollTop: el.scrollTop, rowTop: row.getBoundingClientRect().top - el.getBoundingClientRect().top };
  }, topBefore);
  assert.ok(stay.scrollTop > 0, 'the view did not jump to the top of the new page');
  assert.ok(stay.rowTop >= -5 && stay.rowTop < 300, `the old top message is still on screen (${stay.rowTop})`);
  // Scroll up until the beginning.
  for (let i = 0; i < 10 && (await texts()).length < 70; i++) {
    await page.locator('#messages').evaluate((el) => {
      el.scrollTop = 0;
    });
    await page.waitForTimeout(200);
  }
  assert.deepEqual(await texts(), Array.from({ length: 70 }, (_, i) => `message ${i + 1}`));
  await page.locator('#history-state', { hasText: 'This is the beginning of your conversation with dave.' }).waitFor();
  // Times under the bubbles, and one divider for a run of close messages.
  assert.match(await page.locator('#message-rows .row time').first().textContent(), /^\d\d:\d\d$/);
  assert.equal(await page.locator('#message-rows .divider').count(), 1);
  assert.match(await page.locator('#message-rows .divider').textContent(), /^Today \d\d:\d\d$/);
  B.noErrors(page);
  await page.context().close();
});

test('a refused message shows "Failed" with the reason and a Retry that sends it once', async () => {
  const api = apiClient(env.srv.url);
  const paul = await api.register('paul');
  const context = await B.newContext(env.browser, B.PHONE);
  // Between the page and chatd: the first "send" is answered with an error instead of going on.
  let refused = 0;
  const sent = [];
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((raw) => {
      const m = JSON.parse(raw);
      if (m.type === 'send') {
        sent.push(m.message.client_msg_id);
        if (refused++ === 0) {
          ws.send(JSON.stringify({ type: 'error', code: 'bad_field', msg: 'data is not allowed', client_msg_id: m.message.client_msg_id, op: 'send' }));
          return;
        }
      }
      server.send(raw);
    });
  });
  const page = await B.newPage(context, `${env.srv.url}/`);
  const quinn = await B.signUp(page, 'quinn');
  await B.findAndOpen(page, 'paul');
  await B.sendText(page, 'try me');
  await B.eventually(() => B.bubbles(page), [{ mine: true, text: 'try me', state: 'failed', id: 0 }]);
  assert.equal(await page.locator('#message-rows .row .state-error').textContent(), 'data is not allowed');
  assert.equal(await page.locator('#message-rows .row .state').textContent(), 'Failed');
  await B.screenshot(page, 'failed-message-phone.png');
  await page.locator('#message-rows .row .retry').click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map(({ text, state }) => ({ text, state }))), [{ text: 'try me', state: 'sent' }]);
  assert.equal(sent.length, 2);
  assert.equal(sent[0], sent[1], 'the retry keeps its client_msg_id');
  const history = await paul.api.get(`/chat/history?userid=${quinn.id}`);
  assert.deepEqual(history.map((m) => m.data), ['try me']);
  assert.equal(history[0].client_msg_id, sent[0]);
  B.noErrors(page);
  await context.close();
});
