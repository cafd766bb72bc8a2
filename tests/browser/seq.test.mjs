// The web client and the sequence model: a pushed message whose seq is not
// the next one of its conversation shows a push was missed, and the client
// fills the hole with POST /chat/sync from that conversation's cursor. The
// lost push is made by dropping it between chatd and the page (a routed
// WebSocket). And a cache of an older client (chatlastid, messages without
// seq) still works: cursors come from the chat list.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

/** A page whose socket frames from chatd pass through drop(text): true drops the frame. */
async function pageWithFilter(context, url, drop) {
  const page = await B.newPage(context);
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (typeof m === 'string' && drop(m)) return;
      ws.send(m);
    });
  });
  const syncs = [];
  page.on('request', (r) => {
    if (new URL(r.url()).pathname === '/chat/sync') syncs.push(`${r.method()} ${r.postData() || ''}`);
  });
  page.syncs = syncs;
  await page.goto(url);
  return page;
}

const texts = (page) => B.bubbles(page).then((b) => b.map((x) => x.text));

test('a push lost on the way is noticed by the next seq and synced into the open conversation', async () => {
  const api = apiClient(env.srv.url);
  const ivy = await api.register('seqivy');
  const context = await B.newContext(env.browser, B.PHONE);
  const dropped = [];
  const page = await pageWithFilter(context, `${env.srv.url}/`, (text) => {
    if (!text.includes('"data":"two (push lost)"')) return false;
    dropped.push(text);
    return true;
  });
  const jon = await B.signUp(page, 'seqjon');

  await ivy.api.post('/chat/send', { to_id: jon.id, type: 'text', data: 'one' });
  await B.eventually(() => B.chatList(page), [{ name: 'seqivy', preview: 'one', unread: '1' }]);
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => texts(page), ['one']);
  const syncsBefore = page.syncs.length;

  // seq 2's push never reaches the page.
  const two = await ivy.api.post('/chat/send', { to_id: jon.id, type: 'text', data: 'two (push lost)' });
  assert.equal(two.seq, 2);
  await B.eventually(() => dropped.length, 1);
  await sleep(600);
  assert.deepEqual(await texts(page), ['one'], 'the lost message is not there by itself');
  assert.equal(page.syncs.length, syncsBefore, 'nothing tells the page yet');

  // seq 3 arrives: 2 is missing, the page syncs from its cursor 1 and shows all three in order.
  await ivy.api.post('/chat/send', { to_id: jon.id, type: 'text', data: 'three' });
  await B.eventually(() => texts(page), ['one', 'two (push lost)', 'three']);
  assert.deepEqual(page.syncs.slice(syncsBefore), [`POST {"cursors":{"${ivy.user.id}":1}}`], 'one sync, from the cursor of the conversation');
  const cursors = await page.evaluate((uid) => JSON.parse(localStorage.getItem(`chatseq${uid}`)), jon.id);
  assert.deepEqual(cursors, { [ivy.user.id]: 3 });
  await B.eventually(() => B.chatList(page), [{ name: 'seqivy', preview: 'three', unread: '' }]);

  // In order from here on: no more syncs.
  await ivy.api.post('/chat/send', { to_id: jon.id, type: 'text', data: 'four' });
  await B.eventually(() => texts(page), ['one', 'two (push lost)', 'three', 'four']);
  await sleep(600);
  assert.equal(page.syncs.length, syncsBefore + 1, 'no sync without a hole');
  assert.deepEqual(await texts(page), ['one', 'two (push lost)', 'three', 'four'], 'nothing twice');
  B.noErrors(page);
  await context.close();
});

test('the cache of an older client (chatlastid, no seq) still works: cursors start from the list', async () => {
  const api = apiClient(env.srv.url);
  const kim = await api.register('seqkim');
  const context = await B.newContext(env.browser, B.PHONE);
  let page = await B.newPage(context, `${env.srv.url}/`);
  const lee = await B.signUp(page, 'seqlee');
  await kim.api.post('/chat/send', { to_id: lee.id, type: 'text', data: 'k1' });
  await page.locator('#chat-list .chat-link').first().waitFor();
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => texts(page), ['k1']);
  await page.close();

  await kim.api.post('/chat/send', { to_id: lee.id, type: 'text', data: 'k2' });
  // Make the cache look like an older client's before the app loads.
  await context.addInitScript(
    ([uid, peer]) => {
      if (sessionStorage.getItem('aged')) return;
      sessionStorage.setItem('aged', '1');
      localStorage.removeItem(`chatseq${uid}`);
      localStorage.setItem(`chatlastid${uid}`, '1');
      const key = `chatdetail_${uid}_${peer}`;
      const d = JSON.parse(localStorage.getItem(key) || '[]');
      localStorage.setItem(key, JSON.stringify(d.map(({ seq, ...m }) => m)));
      const list = JSON.parse(localStorage.getItem(`chatlist${uid}`) || '[]');
      localStorage.setItem(`chatlist${uid}`, JSON.stringify(list.map(({ last_seq, ...i }) => i)));
    },
    [lee.id, kim.user.id],
  );
  page = await pageWithFilter(context, `${env.srv.url}/#/chat/${kim.user.id}`, () => false);
  await B.eventually(() => texts(page), ['k1', 'k2']);
  await B.eventually(() => page.evaluate((uid) => [localStorage.getItem(`chatseq${uid}`), localStorage.getItem(`chatlastid${uid}`)], lee.id), [
    JSON.stringify({ [kim.user.id]: 2 }),
    null,
  ]);
  const syncs = page.syncs.length;
  await kim.api.post('/chat/send', { to_id: lee.id, type: 'text', data: 'k3' });
  await B.eventually(() => texts(page), ['k1', 'k2', 'k3']);
  await sleep(600);
  assert.equal(page.syncs.length, syncs, 'seq 3 follows the cursor 2 from the list: no sync');
  B.noErrors(page);
  await context.close();
});
