// What a new user's trial of the web client found (issue 15), one test each:
// a fixed-width chat list with ellipsized names and previews on a desktop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

test('desktop: a 32-character name and a long preview end in "…" in a fixed-width chat list', async () => {
  const longName = 'W'.repeat(32);
  const longText = 'a long preview that goes on and on without end '.repeat(8).trim();
  const wes = await apiClient(env.srv.url).register(longName);
  const page = await B.newPage(await B.newContext(env.browser, B.DESKTOP), `${env.srv.url}/`);
  const tina = await B.signUp(page, 'tina');
  const width = () => page.locator('.sidebar').evaluate((el) => Math.round(el.getBoundingClientRect().width));
  const before = await width();
  assert.equal(before, 360);

  await wes.api.post('/chat/send', { to_id: tina.id, type: 'text', data: longText });
  await B.eventually(() => B.chatList(page).then((l) => l.map((i) => i.name)), [longName]);
  await page.locator('#chat-list .chat-link').first().click();
  await page.locator('#conversation').waitFor({ state: 'visible' });
  assert.equal(await width(), 360, 'the sidebar keeps its width');
  const ellipsized = (sel) =>
    page.locator(sel).first().evaluate((el) => ({
      cut: el.scrollWidth > el.clientWidth,
      overflow: getComputedStyle(el).textOverflow,
      inside: el.getBoundingClientRect().right <= document.querySelector('.sidebar').getBoundingClientRect().right,
    }));
  for (const sel of ['#chat-list .chat-name', '#chat-list .chat-preview']) {
    assert.deepEqual(await ellipsized(sel), { cut: true, overflow: 'ellipsis', inside: true }, sel);
  }
  // The conversation keeps the rest of the window; its header's name is cut the same way.
  const detail = await page.locator('.detail').evaluate((el) => Math.round(el.getBoundingClientRect().right));
  assert.ok(detail <= B.DESKTOP.width, `the conversation ends inside the window (${detail})`);
  assert.deepEqual((await ellipsized('#conv-name')).overflow, 'ellipsis');
  await B.screenshot(page, 'long-name-desktop.png');
  B.noErrors(page);
  await page.context().close();
});
