// Pictures in a conversation (issue 15, "Pictures"): a picture picked with the
// composer's button, pasted into the message box and dropped on the conversation
// is uploaded to POST /media in a pending bubble with a progress bar, then sent as
// an "image" message with its width and height; the peer sees it in a box of the
// right size before it has loaded (scaled to fit 240 x 240), and a click opens the
// full picture (Esc closes). Cancel stops an upload and sends nothing. A file that
// is no picture, one cut off and one larger than --max-upload each show a clear
// error and send nothing. An old image message without a size still shows.
// At phone and desktop sizes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as B from './lib/browser.mjs';
import { apiClient, sleep, startChatd } from './lib/chatd.mjs';
import { dropFile, pasteFile, png } from './lib/images.mjs';

const MAX_UPLOAD = 200000;
const env = B.useChatdAndBrowser(() => startChatd(['--max-upload', String(MAX_UPLOAD)]));

/** Holds the page's POST /media requests until release() (to see the pending bubble). */
async function holdUploads(page) {
  const held = [];
  let open = false;
  await page.route('**/media', async (route) => {
    if (open || route.request().method() !== 'POST') return route.continue();
    await new Promise((resolve) => held.push(resolve));
    await route.continue().catch(() => {});
  });
  return {
    count: () => held.length,
    release() {
      open = true;
      for (const r of held.splice(0)) r();
    },
  };
}

/** The open conversation's image messages: [{mine, src, w, h, loaded}] (w, h: the box on screen). */
async function images(page) {
  return page.locator('#message-rows .row .bubble.image img').evaluateAll((imgs) =>
    imgs.map((i) => {
      const r = i.getBoundingClientRect();
      return { mine: !!i.closest('.row.mine'), src: i.getAttribute('src'), w: Math.round(r.width), h: Math.round(r.height), loaded: i.complete && i.naturalWidth > 0 };
    }),
  );
}

async function serverImages(api, peerId) {
  const page = await api.get(`/chat/history?userid=${peerId}&limit=50`);
  return page.filter((m) => m.type === 'image').map((m) => ({ data: m.data, width: m.width, height: m.height }));
}

for (const [size, viewport] of [
  ['phone', B.PHONE],
  ['desktop', B.DESKTOP],
]) {
  test(`${size}: pick, paste and drop a picture; progress, cancel; the peer sees each in its box`, async () => {
    const api = apiClient(env.srv.url);
    const ann = `ann_${size}`;
    const ben = await api.register(`ben_${size}`);
    const ctx = await B.newContext(env.browser, viewport);
    const page = await B.newPage(ctx, `${env.srv.url}/`);
    const me = await B.signUp(page, ann);
    const annApi = (await api.login(ann)).api;
    await B.findAndOpen(page, ben.user.username);
    await page.locator('#photo-btn').waitFor();

    // Picked: a pending bubble with a progress bar until the upload is through.
    const hold = await holdUploads(page);
    await page.locator('#photo-file').setInputFiles({ name: 'wide.png', mimeType: 'image/png', buffer: png(600, 300, [200, 40, 40]) });
    const pending = page.locator('#upload-rows .row.upload');
    await pending.waitFor();
    assert.equal(await pending.locator('progress.upload-progress').isVisible(), true, 'the progress bar shows');
    await B.eventually(() => hold.count(), 1);
    // The pending bubble has the picture's box already.
    await B.eventually(() => pending.locator('.upload-preview').evaluate((i) => [i.offsetWidth, i.offsetHeight]), [240, 120]);
    assert.deepEqual(await serverImages(annApi, ben.user.id), [], 'nothing sent while uploading');
    hold.release();
    await pending.waitFor({ state: 'detached' });
    await B.eventually(() => images(page).then((l) => l.map((i) => [i.mine, i.w, i.h])), [[true, 240, 120]]);
    const sent = await serverImages(annApi, ben.user.id);
    assert.equal(sent.length, 1);
    assert.match(sent[0].data, /^\/media\/[0-9a-f]{64}\.png$/);
    assert.deepEqual([sent[0].width, sent[0].height], [600, 300], 'the message carries the picture size');
    await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.state)), ['sent']);

    // Cancel: the upload stops, its bubble goes, nothing is sent.
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    const hold2 = await holdUploads(page);
    await page.locator('#photo-file').setInputFiles({ name: 'cancel.png', mimeType: 'image/png', buffer: png(50, 50, [1, 2, 3]) });
    await B.eventually(() => hold2.count(), 1);
    await pending.locator('.upload-cancel').click();
    await pending.waitFor({ state: 'detached' });
    hold2.release();
    await sleep(300);
    assert.equal((await serverImages(annApi, ben.user.id)).length, 1, 'a cancelled upload sends nothing');
    await page.unrouteAll({ behavior: 'ignoreErrors' });

    // Pasted into the message box, and dropped on the conversation.
    await pasteFile(page, '#text', { name: 'tall.png', mimeType: 'image/png', buffer: png(100, 400, [10, 160, 60]) });
    await B.eventually(() => images(page).then((l) => l.map((i) => [i.w, i.h])), [
      [240, 120],
      [60, 240],
    ]);
    await dropFile(page, '#conversation', { name: 'small.png', mimeType: 'image/png', buffer: png(120, 80, [90, 90, 200]) });
    await B.eventually(() => images(page).then((l) => l.map((i) => [i.w, i.h])), [
      [240, 120],
      [60, 240],
      [120, 80],
    ]);
    assert.deepEqual(
      (await serverImages(annApi, ben.user.id)).map((m) => [m.width, m.height]),
      [
        [600, 300],
        [100, 400],
        [120, 80],
      ].reverse(), // history: newest first
    );
    assert.equal(await page.locator('#conversation').evaluate((el) => el.classList.contains('drop-target')), false, 'the drop hint went');

    // The peer: each picture in its box before it has loaded (its bytes held back), no jump after.
    const peerCtx = await B.newContext(env.browser, viewport);
    const peerPage = await B.newPage(peerCtx, `${env.srv.url}/`);
    let releasePictures;
    const picturesHeld = new Promise((r) => (releasePictures = r));
    await peerPage.route('**/media/*', async (route) => {
      await picturesHeld;
      await route.continue().catch(() => {});
    });
    await B.signIn(peerPage, ben.user.username);
    await B.openChat(peerPage, ann);
    const boxes = [
      [240, 120],
      [60, 240],
      [120, 80],
    ];
    await B.eventually(() => images(peerPage).then((l) => l.map((i) => [i.mine, i.w, i.h, i.loaded])), boxes.map(([w, h]) => [false, w, h, false]));
    releasePictures();
    await B.eventually(() => images(peerPage).then((l) => l.map((i) => [i.w, i.h, i.loaded])), boxes.map(([w, h]) => [w, h, true]));

    // A click opens the full picture; Esc closes it.
    await peerPage.locator('#message-rows .bubble.image a').first().click();
    await peerPage.locator('#image-viewer').waitFor();
    assert.equal(await peerPage.locator('#image-viewer img').getAttribute('src'), env.srv.url + sent[0].data);
    await B.screenshot(peerPage, `image-viewer-${size}.png`);
    await peerPage.keyboard.press('Escape');
    await peerPage.locator('#image-viewer').waitFor({ state: 'detached' });
    await B.screenshot(peerPage, `images-${size}.png`);

    // An image message of an older client (no width/height) still shows.
    await annApi.post('/chat/send', { to_id: ben.user.id, type: 'image', data: '/img/icon.svg' });
    await B.eventually(() => images(peerPage).then((l) => l.length === 4 && l[3].loaded && l[3].w > 0), true);

    B.noErrors(page, peerPage);
    await ctx.close();
    await peerCtx.close();
  });

  test(`${size}: a file that is no picture, one cut off and one too large each give a clear error and send nothing`, async () => {
    const api = apiClient(env.srv.url);
    const cal = `cal_${size}`;
    const dee = await api.register(`dee_${size}`);
    const ctx = await B.newContext(env.browser, viewport);
    const page = await B.newPage(ctx, `${env.srv.url}/`);
    await B.signUp(page, cal);
    const calApi = (await api.login(cal)).api;
    await B.findAndOpen(page, dee.user.username);
    const failed = page.locator('#upload-rows .row.upload[data-state="failed"]');
    const uploads = [];
    page.on('request', (r) => r.url().endsWith('/media') && r.method() === 'POST' && uploads.push(r.url()));

    await page.locator('#photo-file').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text, not a picture at all') });
    await failed.waitFor();
    assert.match(await failed.locator('.upload-error').textContent(), /not a picture/);
    assert.equal(await failed.locator('.upload-error').getAttribute('role'), 'alert');
    await failed.locator('.upload-cancel').click(); // "Dismiss"
    await failed.waitFor({ state: 'detached' });

    const whole = png(80, 80, [5, 5, 5]);
    await pasteFile(page, '#text', { name: 'cut.png', mimeType: 'image/png', buffer: whole.subarray(0, whole.length - 20) });
    await failed.waitFor();
    assert.match(await failed.locator('.upload-error').textContent(), /incomplete/);
    await failed.locator('.upload-cancel').click();

    const big = png(300, 300, [0, 0, 0], { noise: true });
    assert.ok(big.length > MAX_UPLOAD);
    await dropFile(page, '#conversation', { name: 'big.png', mimeType: 'image/png', buffer: big });
    await failed.waitFor();
    assert.match(await failed.locator('.upload-error').textContent(), /too large: 195 KB at most/);
    await B.screenshot(page, `upload-error-${size}.png`);

    await sleep(300);
    assert.equal((await calApi.get(`/chat/history?userid=${dee.user.id}&limit=50`)).length, 0, 'nothing was sent');
    assert.equal(await page.locator('#message-rows .row').count(), 0);
    assert.equal(uploads.length, 2, 'the file over the server\'s limit is refused before it is uploaded');
    B.noErrors(page);
    await ctx.close();
  });
}
