// What a new user's trial of the web client found (issue 15), one test each:
// a fixed-width chat list with ellipsized names and previews on a desktop;
// a sign-up name over 32 bytes is shown as too long, not cut; a network gone
// (the browser offline, or a connection that silently stops carrying frames)
// shows the banner within seconds, and the page comes back and syncs; the
// newest message stays in sight when the send box grows; a refused message is
// "Failed: …" in the chat list; text meets WCAG AA contrast and messages are
// a list that names who wrote each; an "unread messages" divider; a
// jump-to-bottom button counting what came while scrolled up; desktop
// notifications, asked for from a button, for messages while hidden; Send off
// while the box is empty or white space.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, startChatd } from './lib/chatd.mjs';

// Some two dozen sign-ups from one address: past chatd's default --register-rate (20 an hour).
const env = B.useChatdAndBrowser(() => startChatd(['--register-rate', '1000']));

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

test('sign-up: a name over 32 bytes is not cut; a counter and an error say why', async () => {
  const page = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.srv.url}/#/signup`);
  const name = page.locator('#auth-username');
  const count = page.locator('#auth-username-count');
  await name.waitFor();
  assert.equal(await count.textContent(), '0/32');
  const long = 'x'.repeat(40);
  await name.pressSequentially(long);
  assert.equal(await name.inputValue(), long, 'nothing is cut');
  assert.equal(await count.textContent(), '40/32');
  assert.equal(await count.evaluate((el) => el.classList.contains('over')), true);
  assert.equal(await name.getAttribute('aria-invalid'), 'true');
  await page.locator('#auth-error', { hasText: 'Your name is too long: 40 bytes, 32 at most' }).waitFor();
  await page.locator('#auth-password').fill('password1');
  await page.locator('#auth-submit').click();
  await page.waitForTimeout(300);
  assert.equal(await page.locator('#auth').isVisible(), true, 'not signed up');
  await assert.rejects(apiClient(env.srv.url).login(long.slice(0, 32)), /401|wrong/, 'no account with the name cut');
  // Chinese: 11 characters are 33 bytes.
  await name.fill('张'.repeat(11));
  assert.equal(await count.textContent(), '33/32');
  await page.locator('#auth-error', { hasText: '33 bytes' }).waitFor();
  // Back to 32: the error goes, and signing up works.
  await name.fill(long.slice(0, 32));
  assert.equal(await count.textContent(), '32/32');
  assert.equal(await page.locator('#auth-error').isVisible(), false);
  assert.equal(await name.getAttribute('aria-invalid'), null);
  await page.locator('#auth-submit').click();
  await B.waitOnline(page);
  // Signing in has no counter.
  B.noErrors(page);
  await page.context().close();
});

/** Waits until the page shows it is offline (banner up, dot not green); returns the ms it took. */
async function offlineShown(page, timeout) {
  const t0 = Date.now();
  await page.waitForFunction(() => document.documentElement.dataset.conn !== 'online' && !document.getElementById('conn-banner').hidden, null, {
    timeout,
    polling: 50,
  });
  return Date.now() - t0;
}

test('a network gone offline shows the banner at once; back online the page reconnects and syncs', async () => {
  const eve = await apiClient(env.srv.url).register('neteve');
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'netdan');
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'before' });
  await B.eventually(() => B.chatList(page), [{ name: 'neteve', preview: 'before', unread: '1' }]);

  await context.setOffline(true);
  const ms = await offlineShown(page, 3000);
  console.log(`offline shown after ${ms} ms`);
  assert.match(await page.locator('#conn-text').textContent(), /^Offline|^Connecting/);
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'while the network was gone' });
  await page.waitForTimeout(1000);
  await context.setOffline(false);
  await B.waitOnline(page, 5000);
  assert.equal(await page.locator('#conn-banner').isHidden(), true);
  await B.eventually(() => B.chatList(page), [{ name: 'neteve', preview: 'while the network was gone', unread: '2' }]);
  B.noErrors(page);
  await context.close();
});

test('a connection that silently stops carrying frames is noticed within seconds (ping with a timeout)', async () => {
  const eve = await apiClient(env.srv.url).register('stalleve');
  const context = await B.newContext(env.browser, B.PHONE);
  // Between the page and chatd: once `stall` is set, the connections open then carry nothing
  // either way and are never closed, as when a network drops on the way.
  const open = new Set();
  const stalled = new Set();
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => !stalled.has(ws) && server.send(m));
    server.onMessage((m) => !stalled.has(ws) && ws.send(m));
    open.add(ws);
  });
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'stalldan');
  for (const ws of open) stalled.add(ws); // the connection open now goes silent; a new one works
  const ms = await offlineShown(page, 8000);
  console.log(`a silent connection noticed after ${ms} ms`);
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'sent during the stall' });
  await B.waitOnline(page, 10000);
  await B.eventually(() => B.chatList(page), [{ name: 'stalleve', preview: 'sent during the stall', unread: '1' }]);
  B.noErrors(page);
  await context.close();
});

/** Whether the open conversation's last message is wholly inside the scroller's visible part. */
const lastRowVisible = (page) =>
  page.locator('#messages').evaluate((s) => {
    const rows = s.querySelectorAll('#message-rows .row');
    const r = rows[rows.length - 1].getBoundingClientRect();
    const box = s.getBoundingClientRect();
    return r.bottom <= box.bottom + 1 && r.top >= box.top - 1;
  });

test('the newest message stays in sight when the send box grows with a long text', async () => {
  const eve = await apiClient(env.srv.url).register('boxeve');
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'boxdan');
  for (let i = 1; i <= 20; i++) await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: `message ${i}` });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].preview), 'message 20');
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(page).then((b) => b.length && b.at(-1).text), 'message 20');
  // (Opened at the "unread messages" divider: to the end first.)
  await page.locator('#messages').evaluate((s) => {
    s.scrollTop = s.scrollHeight;
  });
  await B.eventually(() => lastRowVisible(page), true);
  const h0 = await page.locator('#text').evaluate((t) => t.offsetHeight);
  await page.locator('#text').fill('line 1\nline 2\nline 3\nline 4\nline 5\nline 6');
  const h1 = await page.locator('#text').evaluate((t) => t.offsetHeight);
  assert.ok(h1 > h0 + 40, `the box grew (${h0} -> ${h1})`);
  await B.eventually(() => lastRowVisible(page), true, { timeout: 2000, message: 'the newest message is in sight' });
  // And shrinking back leaves it at the end too.
  await page.locator('#text').fill('');
  await B.eventually(() => lastRowVisible(page), true, { timeout: 2000 });
  B.noErrors(page);
  await context.close();
});

test('a refused message shows as failed in the chat list, not as sent', async () => {
  await apiClient(env.srv.url).register('failpaul');
  const context = await B.newContext(env.browser, B.DESKTOP);
  // Between the page and chatd: the first "send" is refused as the server refuses a flood.
  let refused = 0;
  await context.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((raw) => {
      const m = JSON.parse(raw);
      if (m.type === 'send' && refused++ === 0) {
        ws.send(JSON.stringify({ type: 'error', code: 'rate_limited', msg: 'too many messages, slow down', client_msg_id: m.message.client_msg_id, op: 'send' }));
        return;
      }
      server.send(raw);
    });
    server.onMessage((m) => ws.send(m));
  });
  const page = await B.newPage(context, `${env.srv.url}/`);
  await B.signUp(page, 'failquinn');
  await B.findAndOpen(page, 'failpaul');
  await B.sendText(page, 'try me');
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.state)), ['failed']);
  await page.locator('.tab[data-tab="chats"]').click();
  await B.eventually(() => B.chatList(page), [{ name: 'failpaul', preview: 'Failed: try me', unread: '' }]);
  assert.equal(await page.locator('#chat-list .chat-preview').evaluate((el) => el.classList.contains('failed')), true);
  await page.locator('#chat-list .chat-link').first().click();
  await page.locator('#message-rows .row .retry').click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.state)), ['sent']);
  await B.eventually(() => B.chatList(page), [{ name: 'failpaul', preview: 'You: try me', unread: '' }]);
  B.noErrors(page);
  await context.close();
});

test('small grey text and the badges meet WCAG AA contrast; messages are a list that says who wrote each', async () => {
  const eve = await apiClient(env.srv.url).register('a11yeve');
  const context = await B.newContext(env.browser, B.DESKTOP);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'a11ydan');
  const g = await eve.api.post('/group/create', { name: 'Muted group', members: [dan.id] });
  const danApi = apiClient(env.srv.url, await page.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')).token));
  await danApi.post('/group/mute', { group_id: g.group.group_id, muted: true });
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'hello dan' });
  await B.eventually(() => B.chatList(page).then((l) => l.map((i) => i.unread)), ['1', '1']);
  await page.reload();
  await B.waitOnline(page);
  await B.eventually(() => B.chatList(page).then((l) => l.map((i) => i.unread)), ['1', '1']);
  const failures = (r) => r.filter((x) => x.ratio < x.need).map((x) => `${x.sel} "${x.text}" ${x.ratio}:1`);
  const list = await B.contrastReport(page, '#shell');
  assert.ok(list.some((x) => x.sel.startsWith('span.unread')), 'an unread badge was checked');
  assert.ok(list.some((x) => x.sel.startsWith('span.unread.muted')), 'a muted badge was checked');
  assert.ok(list.some((x) => x.sel.startsWith('span.badge')), 'the tab badge was checked');
  assert.ok(list.some((x) => x.sel.startsWith('time.chat-time')), 'a list time was checked');
  assert.deepEqual(failures(list), [], 'the chat list');

  await page.locator('#chat-list .chat-item:not(.group) .chat-link').click();
  await B.sendText(page, 'hi eve');
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.state)), ['', 'sent']);
  const conv = await B.contrastReport(page, '#conversation');
  for (const sel of ['time.', 'div.divider', 'span.state.state-sent']) assert.ok(conv.some((x) => x.sel.startsWith(sel)), `${sel} was checked`);
  assert.deepEqual(failures(conv), [], 'the conversation');
  // The messages are a list, each item saying who wrote it.
  const tree = await page.locator('#message-rows').ariaSnapshot();
  assert.match(tree, /^- list:/);
  const items = tree.split(/\n\s+- listitem:/).slice(1);
  assert.equal(items.length, 2, tree);
  assert.match(items[0], /- text: "(1 unread message )?(Today \d\d:\d\d )?a11yeve: hello dan"/, tree);
  assert.match(items[1], /- text: "You: hi eve"/, tree);
  B.noErrors(page);
  await context.close();
});

test('opening a conversation with unread messages shows an "unread messages" divider above the first', async () => {
  const eve = await apiClient(env.srv.url).register('diveve');
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'divdan');
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'read 1' });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].unread), '1');
  const rows = () =>
    page.locator('#message-rows .row').evaluateAll((rs) =>
      rs.map((r) => `${r.querySelector('.unread-divider') ? `[${r.querySelector('.unread-divider').textContent}] ` : ''}${r.querySelector('.bubble').textContent}`),
    );
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(rows, ['[1 unread message] read 1']);
  await page.locator('.conv-bar .back').click();
  for (const t of ['new 1', 'new 2', 'new 3']) await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: t });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].unread), '3');
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(rows, ['read 1', '[3 unread messages] new 1', 'new 2', 'new 3']);
  // It stays while the conversation is open, and a new message comes after it.
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'new 4' });
  await B.eventually(rows, ['read 1', '[3 unread messages] new 1', 'new 2', 'new 3', 'new 4']);
  // More than a screenful unread: the view starts at the divider, not at the bottom.
  await page.locator('.conv-bar .back').click();
  for (let i = 1; i <= 25; i++) await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: `more ${i}` });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].unread), '25');
  await page.locator('#chat-list .chat-link').first().click();
  await page.locator('.unread-divider', { hasText: '25 unread messages' }).waitFor();
  await B.eventually(
    () =>
      page.locator('#messages').evaluate((s) => {
        const d = s.querySelector('.unread-divider').getBoundingClientRect();
        const box = s.getBoundingClientRect();
        return { dividerOnScreen: d.top >= box.top && d.bottom <= box.bottom, atBottom: s.scrollHeight - s.scrollTop - s.clientHeight < 5 };
      }),
    { dividerOnScreen: true, atBottom: false },
  );
  B.noErrors(page);
  await context.close();
});

test('scrolled up, a button jumps to the newest message and counts those that came meanwhile', async () => {
  const eve = await apiClient(env.srv.url).register('jumpeve');
  const context = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'jumpdan');
  for (let i = 1; i <= 25; i++) await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: `message ${i}` });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].preview), 'message 25');
  await page.locator('#chat-list .chat-link').first().click();
  const jump = page.locator('.jump-bottom');
  // At the end of the conversation (the unread ones are read): no button.
  await page.locator('#messages').evaluate((s) => {
    s.scrollTop = s.scrollHeight;
  });
  await B.eventually(() => lastRowVisible(page), true);
  await B.eventually(() => jump.isVisible(), false);
  // Scrolled up: the button, without a count.
  await page.locator('#messages').evaluate((s) => {
    s.scrollTop = 200;
  });
  await jump.waitFor({ state: 'visible' });
  assert.equal(await page.locator('.jump-count').isVisible(), false);
  // Two messages arrive: the view stays where it is and the button counts them.
  const top = await page.locator('#messages').evaluate((s) => s.scrollTop);
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'new 1' });
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'new 2' });
  await B.eventually(() => B.bubbles(page).then((b) => b.length && b.at(-1).text), 'new 2');
  await B.eventually(() => page.locator('.jump-count').textContent(), '2');
  assert.equal(await jump.getAttribute('aria-label'), 'Jump to the newest message, 2 new');
  await B.screenshot(page, 'jump-button-phone.png');
  assert.ok(Math.abs((await page.locator('#messages').evaluate((s) => s.scrollTop)) - top) < 5, 'the view did not move');
  assert.equal(await lastRowVisible(page), false);
  await jump.click();
  await B.eventually(() => lastRowVisible(page), true);
  await B.eventually(() => jump.isVisible(), false);
  // Back at the end, a new message shows at once and the button stays away.
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'new 3' });
  await B.eventually(() => B.bubbles(page).then((b) => b.length && b.at(-1).text), 'new 3');
  await B.eventually(() => lastRowVisible(page), true);
  assert.equal(await jump.isVisible(), false);
  B.noErrors(page);
  await context.close();
});

test('desktop notifications: asked from a button, not on load; shown for messages while the page is hidden', async () => {
  const eve = await apiClient(env.srv.url).register('noteeve');
  const context = await B.newContext(env.browser, B.DESKTOP);
  // The page's Notification records what it is given; the permission starts unasked.
  await context.addInitScript(() => {
    window.__notes = [];
    window.__asked = 0;
    let permission = 'default';
    window.Notification = class {
      constructor(title, o = {}) {
        window.__notes.push({ title, body: o.body });
      }
      close() {}
      static get permission() {
        return permission;
      }
      static requestPermission() {
        window.__asked += 1;
        permission = 'granted';
        return Promise.resolve(permission);
      }
    };
    let hidden = false;
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (hidden ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden });
    window.__setHidden = (h) => {
      hidden = h;
      document.dispatchEvent(new Event('visibilitychange'));
    };
  });
  const page = await B.newPage(context, `${env.srv.url}/`);
  const dan = await B.signUp(page, 'notedan');
  const prompt = page.locator('.notify-prompt');
  await prompt.waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => window.__asked), 0, 'not asked on load');
  await prompt.locator('button', { hasText: 'Turn on' }).click();
  await prompt.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => window.__asked), 1);

  // Visible: no notification.
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'while you look' });
  await B.eventually(() => B.chatList(page).then((l) => l[0] && l[0].preview), 'while you look');
  // Hidden: one per message.
  await page.evaluate(() => window.__setHidden(true));
  await eve.api.post('/chat/send', { to_id: dan.id, type: 'text', data: 'psst <b>you</b>' });
  await B.eventually(() => page.evaluate(() => window.__notes), [{ title: 'noteeve', body: 'psst <b>you</b>' }]);
  await page.evaluate(() => window.__setHidden(false));
  assert.equal(await prompt.isVisible(), false);
  B.noErrors(page);
  await context.close();
});

test('Send is off while the message box is empty or only white space', async () => {
  await apiClient(env.srv.url).register('emptyeve');
  const page = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.srv.url}/`);
  await B.signUp(page, 'emptydan');
  await B.findAndOpen(page, 'emptyeve');
  const send = page.locator('#send-btn');
  assert.equal(await send.isDisabled(), true, 'empty');
  await page.locator('#text').fill('   \n\t  ');
  assert.equal(await send.isDisabled(), true, 'white space');
  await page.locator('#text').press('Enter');
  await page.waitForTimeout(200);
  assert.deepEqual(await B.bubbles(page), [], 'nothing sent');
  await page.locator('#text').fill('  hi  ');
  assert.equal(await send.isDisabled(), false, 'text');
  await send.click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.text)), ['  hi  ']);
  assert.equal(await page.locator('#text').inputValue(), '');
  assert.equal(await send.isDisabled(), true, 'empty again after sending');
  B.noErrors(page);
  await page.context().close();
});
