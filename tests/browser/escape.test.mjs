// All user content shows as text: HTML in messages, names and image URLs
// never becomes markup or script.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

const EVIL_TEXT = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script><b>bold</b> & <i>co</i>';
const EVIL_NAME = '<img src=x onerror=__pwned=5>';
const EVIL_PIC = 'https://example.invalid/a.png" onerror="window.__pwned=3';
const EVIL_IMAGE = 'https://example.invalid/x.png?"><script>window.__pwned=4</script>';

test('a message containing HTML shows as text, and so do names and image URLs', async () => {
  const mallory = await apiClient(env.srv.url).post('/user/register', { username: EVIL_NAME, password: 'password1', userpic: EVIL_PIC });
  const mapi = apiClient(env.srv.url, mallory.token);
  const page = await B.newPage(await B.newContext(env.browser, B.DESKTOP), `${env.srv.url}/`);
  const olga = await B.signUp(page, 'olga');

  await mapi.post('/chat/send', { to_id: olga.id, type: 'text', data: EVIL_TEXT });
  await B.eventually(() => B.chatList(page), [{ name: EVIL_NAME, preview: EVIL_TEXT, unread: '1' }]);
  await page.locator('#chat-list .chat-link').first().click();
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.text)), [EVIL_TEXT]);
  assert.equal(await page.locator('#conv-name').textContent(), EVIL_NAME);
  await mapi.post('/chat/send', { to_id: olga.id, type: 'image', data: EVIL_IMAGE });
  await B.eventually(() => B.bubbles(page).then((b) => b.length), 2);
  await sleep(300);

  const dom = await page.evaluate(() => ({
    pwned: window.__pwned,
    rows: document.querySelectorAll('#message-rows .bubble.text *').length,
    scripts: document.querySelectorAll('body script').length,
    bold: document.querySelectorAll('#app b, #shell b, #chat-list b, #message-rows b, #conv-name b').length,
    // The picture cannot load here (no network): the link to it stays, with a note.
    image: document.querySelector('#message-rows .bubble.image a')?.getAttribute('href'),
    imageAttrs: document.querySelector('#message-rows .bubble.image a')?.getAttributeNames().sort(),
    imageText: document.querySelector('#message-rows .bubble.image')?.textContent,
    nameHtml: document.querySelector('#conv-name').children.length,
  }));
  assert.equal(dom.pwned, undefined, 'no injected script ran');
  assert.equal(dom.rows, 0, 'the text bubble holds only text');
  assert.equal(dom.scripts, 0, 'no script element was added to the body');
  assert.equal(dom.bold, 0);
  assert.equal(dom.nameHtml, 0);
  assert.equal(dom.image, new URL(EVIL_IMAGE).href, 'the image URL is one attribute, as given (URL-encoded)');
  assert.deepEqual(dom.imageAttrs, ['href', 'rel', 'target']);
  assert.equal(dom.imageText, 'Image not available');

  // Only http(s) image URLs go out from the client.
  await page.locator('#image-btn').click();
  await page.locator('#image-url').fill('javascript:alert(1)');
  await page.locator('#image-form button[type="submit"]').click();
  await page.locator('#image-error', { hasText: 'http://' }).waitFor();
  await page.locator('#image-url').fill('data:image/png;base64,AAAA');
  await page.locator('#image-form button[type="submit"]').click();
  await sleep(200);
  assert.equal((await B.bubbles(page)).length, 2, 'nothing was sent');

  // Olga's own HTML-looking message is text on both sides too.
  await page.locator('#image-cancel').click();
  await B.sendText(page, '<u>mine</u>');
  await B.eventually(() => B.bubbles(page).then((b) => b.at(-1)), { mine: true, text: '<u>mine</u>', state: 'sent', id: 3 });
  const history = await mapi.get(`/chat/history?userid=${olga.id}&limit=1`);
  assert.equal(history[0].data, '<u>mine</u>');
  assert.equal(await page.locator('#message-rows u').count(), 0);
  // The list and search results show names as text.
  await page.locator('.tab[data-tab="find"]').click();
  await page.locator('#find-q').fill('<img'); // search matches a prefix of the name
  await page.locator('#find-results .user-name').first().waitFor();
  assert.equal(await page.locator('#find-results .user-name').first().textContent(), EVIL_NAME);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  B.noErrors(page);
});
