// One user with two tabs: both see new messages and the badge; reading in one
// clears the badge in the other (the server's "read" push); what one tab
// sends shows in the other.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

test('two tabs of one user: reading in one clears the badge in the other', async () => {
  const api = apiClient(env.srv.url);
  const frank = await api.register('frank');
  const grace = await api.register('grace');
  const context = await B.newContext(env.browser, B.DESKTOP);
  const tab1 = await B.newPage(context, `${env.srv.url}/`);
  await B.signIn(tab1, 'grace');
  // The second tab shares the session (localStorage) and binds its own socket.
  const tab2 = await B.newPage(context, `${env.srv.url}/`);
  await B.waitOnline(tab2);
  assert.equal(await tab2.locator('#shell').isVisible(), true, 'the second tab is signed in');

  await frank.api.post('/chat/send', { to_id: grace.user.id, type: 'text', data: 'one' });
  await frank.api.post('/chat/send', { to_id: grace.user.id, type: 'text', data: 'two' });
  for (const tab of [tab1, tab2]) {
    await B.eventually(() => B.chatList(tab), [{ name: 'frank', preview: 'two', unread: '2' }]);
    assert.equal(await B.tabBadge(tab), '2');
    assert.equal(await tab.title(), '(2) chatd');
  }

  // Tab 1 opens the conversation: tab 2's badge, list and title clear.
  await tab1.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(tab1).then((b) => b.map((x) => x.text)), ['one', 'two']);
  assert.equal(await B.tabBadge(tab1), '');
  await B.eventually(() => B.tabBadge(tab2), '', { message: 'tab 2 badge' });
  await B.eventually(() => B.chatList(tab2), [{ name: 'frank', preview: 'two', unread: '' }]);
  assert.equal(await tab2.title(), 'chatd');
  assert.equal((await grace.api.get('/chat/unread')).total, 0);

  // A new message: both tabs count it again... except the one showing the conversation.
  await frank.api.post('/chat/send', { to_id: grace.user.id, type: 'text', data: 'three' });
  await B.eventually(() => B.bubbles(tab1).then((b) => b.map((x) => x.text)), ['one', 'two', 'three']);
  await B.eventually(() => B.chatList(tab2), [{ name: 'frank', preview: 'three', unread: '' }], {
    message: 'tab 1 read it at once, so tab 2 was told',
  });
  assert.equal(await B.tabBadge(tab1), '');
  assert.equal((await grace.api.get('/chat/unread')).total, 0);

  // What tab 1 sends shows in tab 2's conversation, as Grace's own, once.
  await tab2.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(tab2).then((b) => b.map((x) => x.text)), ['one', 'two', 'three']);
  await B.sendText(tab1, 'from tab one');
  const expected = [
    { mine: false, text: 'one' },
    { mine: false, text: 'two' },
    { mine: false, text: 'three' },
    { mine: true, text: 'from tab one' },
  ];
  const simple = (tab) => B.bubbles(tab).then((b) => b.map(({ mine, text }) => ({ mine, text })));
  await B.eventually(() => simple(tab2), expected);
  await B.eventually(() => simple(tab1), expected);
  await B.eventually(() => B.chatList(tab2), [{ name: 'frank', preview: 'You: from tab one', unread: '' }]);
  B.noErrors(tab1, tab2);
  await context.close();
});
