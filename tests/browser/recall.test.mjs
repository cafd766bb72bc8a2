// Recall, delete for me and copy (issue 15): the message menu opens by a right-click,
// a long press (touch) or the "⋯" button with the keyboard. Recall: the bubble becomes
// "You withdrew a message" / "amy withdrew a message" live on both sides and in both tabs
// of the sender, in the chat list too, stays so after a reload (history), and a device
// that was offline learns it when it reconnects (sync); the menu offers Recall only for
// our own messages and only within chatd's --recall-window. Delete for me: hidden at once
// in this tab, in the user's other tab by the "deleted" push, on a device that was offline
// by sync's deleted_after, and after a reload; the peer still sees it. Copy puts the text
// on the clipboard. In Chinese the line reads “amy”撤回了一条消息. At phone and desktop sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const RECALL_WINDOW = 10;
// Four sign-ins a test, the four in about a minute: past chatd's default --login-rate (10 a minute).
const env = B.useChatdAndBrowser(() => startChatd(['--recall-window', String(RECALL_WINDOW), '--login-rate', '1000']));

const rowOf = (page, text) => page.locator('#message-rows .row').filter({ has: page.locator('.bubble', { hasText: text }) });
const texts = (page) => B.bubbles(page).then((b) => b.map((x) => x.text));

/** Opens a message's menu the way a user of that size would, and returns its actions. */
async function openMenu(page, text, how) {
  // the page a user acts in is the one in front: a background tab's animation frames are
  // throttled, and every click there waited ~2 s for the element to be "stable"
  await page.bringToFront();
  const row = rowOf(page, text);
  const bubble = row.locator('.bubble');
  if (how === 'right-click') await bubble.click({ button: 'right' });
  else if (how === 'long-press') {
    const box = await bubble.boundingBox();
    const at = { pointerType: 'touch', pointerId: 7, isPrimary: true, clientX: box.x + 10, clientY: box.y + 10, bubbles: true };
    await bubble.dispatchEvent('pointerdown', at);
    await sleep(700);
    await bubble.dispatchEvent('pointerup', at);
  } else {
    // the keyboard: focus the row's "⋯" and press Enter; the first item takes the focus
    await row.locator('.msg-more').focus();
    await page.keyboard.press('Enter');
  }
  await page.locator('#message-menu').waitFor();
  return page.locator('#message-menu .menu-item').evaluateAll((items) => items.map((i) => i.dataset.action));
}

async function closeMenu(page) {
  await page.keyboard.press('Escape');
  await page.locator('#message-menu').waitFor({ state: 'detached' });
}

/** Back to the chat list (a phone shows it instead of the conversation). */
async function toList(page) {
  await page.evaluate(() => {
    location.hash = '#/chats';
  });
  await page.locator('#chat-list').waitFor();
}

/** Opens a conversation from the list (from wherever the page is: a reloaded phone shows the conversation). */
async function openChat(page, name) {
  await toList(page);
  await B.openChat(page, name);
}

async function goOffline(ctx, page) {
  await ctx.setOffline(true);
  await page.waitForFunction(() => document.documentElement.dataset.conn !== 'online');
}

async function goOnline(ctx, page) {
  await ctx.setOffline(false);
  await B.waitOnline(page, 20000);
}

for (const [size, viewport, how] of [
  ['phone', B.PHONE, 'long-press'],
  ['desktop', B.DESKTOP, 'right-click'],
]) {
  test(`${size}: recall shows live on both sides and both tabs, after a reload, and on a device back online; only within the window`, async () => {
    const api = apiClient(env.srv.url);
    const amyName = `amy_${size}`;
    const bobName = `bob_${size}`;
    const amy = await api.register(amyName);
    const bob = await api.register(bobName);
    const amyCtx = await B.newContext(env.browser, viewport);
    const tab1 = await B.newPage(amyCtx, `${env.srv.url}/`);
    await B.signIn(tab1, amyName);
    const tab2 = await B.newPage(amyCtx, `${env.srv.url}/`);
    await B.waitOnline(tab2);
    const awayCtx = await B.newContext(env.browser, viewport); // amy's other device, offline for a while
    const away = await B.newPage(awayCtx, `${env.srv.url}/`);
    await B.signIn(away, amyName);
    const bobCtx = await B.newContext(env.browser, viewport);
    const bobPage = await B.newPage(bobCtx, `${env.srv.url}/`);
    await B.signIn(bobPage, bobName);

    await bob.api.post('/chat/send', { to_id: amy.user.id, type: 'text', data: 'hello amy' });
    for (const p of [tab1, tab2, away]) await openChat(p, bobName);
    await openChat(bobPage, amyName);
    await B.sendText(tab1, 'secret plan');
    for (const p of [tab1, tab2, away, bobPage]) await B.eventually(() => texts(p), ['hello amy', 'secret plan']);
    await goOffline(awayCtx, away);

    // Bob's menu on amy's message has no Recall; amy's on her own has, bob's message has none for her.
    assert.deepEqual(await openMenu(bobPage, 'secret plan', how), ['copy', 'delete']);
    await closeMenu(bobPage);
    assert.deepEqual(await openMenu(tab1, 'hello amy', how), ['copy', 'delete']);
    await closeMenu(tab1);
    assert.deepEqual(await openMenu(tab1, 'secret plan', how), ['copy', 'recall', 'delete']);
    await B.screenshot(tab1, `message-menu-${size}.png`);
    await tab1.locator('#message-menu [data-action="recall"]').click();

    // Live: the bubble is the line, in its place, in both tabs and for bob; the lists say so.
    const mine = ['hello amy', 'You withdrew a message'];
    const theirs = ['hello amy', `${amyName} withdrew a message`];
    await B.eventually(() => texts(tab1), mine);
    await B.eventually(() => texts(tab2), mine, { message: 'the other tab' });
    await B.eventually(() => texts(bobPage), theirs, { message: 'the peer' });
    assert.equal(await rowOf(tab1, 'You withdrew a message').evaluate((r) => r.classList.contains('system')), true, 'a centred line');
    const stored = await amy.api.get(`/chat/history?userid=${bob.user.id}&limit=10`);
    assert.equal(stored.find((m) => m.type === 'text' && m.from_id === amy.user.id).recalled, true, 'the server has it recalled');
    await B.screenshot(bobPage, `recalled-${size}.png`);
    for (const p of [tab1, bobPage]) await toList(p);
    await B.eventually(() => B.chatList(tab1).then((l) => l[0].preview), 'You withdrew a message');
    await B.eventually(() => B.chatList(bobPage).then((l) => [l[0].preview, l[0].unread]), [`${amyName} withdrew a message`, ''], { message: 'no unread for a recall' });

    // After a reload: from history (bob) and the cache (tab2, which also fetches history).
    await bobPage.reload();
    await B.waitOnline(bobPage);
    await openChat(bobPage, amyName);
    await B.eventually(() => texts(bobPage), theirs);
    await tab2.reload();
    await B.waitOnline(tab2);
    await openChat(tab2, bobName);
    await B.eventually(() => texts(tab2), mine);

    // The device that was offline learns it on reconnecting.
    assert.deepEqual(await texts(away), ['hello amy', 'secret plan'], 'offline, it still shows the message');
    await goOnline(awayCtx, away);
    await B.eventually(() => texts(away), mine, { message: 'the device back online', timeout: 15000 });

    // The window: Recall is offered while the message is young, and no more after it.
    await openChat(tab1, bobName);
    await B.sendText(tab1, 'second thoughts');
    await B.eventually(() => B.bubbles(tab1).then((b) => [b.at(-1).text, b.at(-1).id > 0]), ['second thoughts', true]);
    assert.deepEqual(await openMenu(tab1, 'second thoughts', 'keyboard'), ['copy', 'recall', 'delete']);
    assert.equal(await tab1.evaluate(() => document.activeElement.dataset.action), 'copy', 'the keyboard lands on the first item');
    await closeMenu(tab1);
    if (size === 'desktop') {
      // the window's end is not a matter of layout: waited out at one size only (10 s of the suite)
      await sleep(RECALL_WINDOW * 1000 + 500);
      assert.deepEqual(await openMenu(tab1, 'second thoughts', how), ['copy', 'delete'], 'no Recall after the window');
      await closeMenu(tab1);
    }

    // In Chinese: the line, the list preview and the menu as WeChat words them.
    await bobPage.evaluate(() => localStorage.setItem('chatd_lang', 'zh-CN'));
    await bobPage.reload();
    await B.waitOnline(bobPage);
    await toList(bobPage);
    await B.eventually(() => B.chatList(bobPage).then((l) => l[0].preview), 'second thoughts');
    await openChat(bobPage, amyName);
    await B.eventually(() => texts(bobPage), ['hello amy', `“${amyName}”撤回了一条消息`, 'second thoughts']);
    await openMenu(bobPage, 'second thoughts', how);
    assert.deepEqual(await bobPage.locator('#message-menu .menu-item').allTextContents(), ['复制', '删除']);
    await closeMenu(bobPage);

    B.noErrors(tab1, tab2, away, bobPage);
    await amyCtx.close();
    await awayCtx.close();
    await bobCtx.close();
  });

  test(`${size}: delete for me hides on both tabs and a device back online, not for the peer; copy`, async () => {
    const api = apiClient(env.srv.url);
    const cyName = `cy_${size}`;
    const diName = `di_${size}`;
    const cy = await api.register(cyName);
    const di = await api.register(diName);
    const cyCtx = await B.newContext(env.browser, viewport);
    await cyCtx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: env.srv.url });
    const tab1 = await B.newPage(cyCtx, `${env.srv.url}/`);
    await B.signIn(tab1, cyName);
    const tab2 = await B.newPage(cyCtx, `${env.srv.url}/`);
    await B.waitOnline(tab2);
    const awayCtx = await B.newContext(env.browser, viewport);
    const away = await B.newPage(awayCtx, `${env.srv.url}/`);
    await B.signIn(away, cyName);
    const diCtx = await B.newContext(env.browser, viewport);
    const diPage = await B.newPage(diCtx, `${env.srv.url}/`);
    await B.signIn(diPage, diName);

    for (const data of ['keep this', 'delete me', 'and this']) await di.api.post('/chat/send', { to_id: cy.user.id, type: 'text', data });
    for (const p of [tab1, tab2, away]) {
      await openChat(p, diName);
      await B.eventually(() => texts(p), ['keep this', 'delete me', 'and this']);
    }
    await goOffline(awayCtx, away);

    // Copy: the text on the clipboard.
    await openMenu(tab1, 'keep this', how);
    await tab1.locator('#message-menu [data-action="copy"]').click();
    assert.equal(await tab1.evaluate(() => navigator.clipboard.readText()), 'keep this');

    // Delete for me, confirmed: gone here at once, in the other tab by the push.
    await openMenu(tab1, 'delete me', how);
    await tab1.locator('#message-menu [data-action="delete"]').click();
    await tab1.locator('#confirm-dialog').waitFor();
    await tab1.locator('#confirm-cancel').click(); // changed their mind: nothing happens
    await tab1.locator('#confirm-dialog').waitFor({ state: 'detached' });
    assert.deepEqual(await texts(tab1), ['keep this', 'delete me', 'and this']);
    await openMenu(tab1, 'delete me', how);
    await tab1.locator('#message-menu [data-action="delete"]').click();
    await tab1.locator('#confirm-ok').click();
    await B.eventually(() => texts(tab1), ['keep this', 'and this']);
    await B.eventually(() => texts(tab2), ['keep this', 'and this'], { message: 'the other tab' });

    // The peer still has it; the server hides it for cy only.
    await openChat(diPage, cyName);
    await B.eventually(() => texts(diPage), ['keep this', 'delete me', 'and this']);
    const hist = await cy.api.get(`/chat/history?userid=${di.user.id}&limit=10`);
    assert.deepEqual(hist.map((m) => [m.deleted === true, m.data]).reverse(), [
      [false, 'keep this'],
      [true, ''],
      [false, 'and this'],
    ]);

    // The last message deleted: the list preview goes too.
    await openMenu(tab1, 'and this', how);
    await tab1.locator('#message-menu [data-action="delete"]').click();
    await tab1.locator('#confirm-ok').click();
    await B.eventually(() => texts(tab2), ['keep this'], { message: 'the other tab' });
    await toList(tab2);
    await B.eventually(() => B.chatList(tab2).then((l) => l[0].preview), '');

    // After a reload, and on the device that was offline (sync's deleted_after).
    await tab1.reload();
    await B.waitOnline(tab1);
    await openChat(tab1, diName);
    await B.eventually(() => texts(tab1), ['keep this']);
    assert.deepEqual(await texts(away), ['keep this', 'delete me', 'and this'], 'offline, it still shows them');
    await goOnline(awayCtx, away);
    await B.eventually(() => texts(away), ['keep this'], { message: 'the device back online', timeout: 15000 });
    assert.ok(Number(await away.evaluate((uid) => localStorage.getItem(`chatdeleted${uid}`), cy.user.id)) > 0, 'its cursor is kept');
    assert.deepEqual(await texts(diPage), ['keep this', 'delete me', 'and this'], 'the peer keeps them');

    B.noErrors(tab1, tab2, away, diPage);
    await cyCtx.close();
    await awayCtx.close();
    await diCtx.close();
  });
}
