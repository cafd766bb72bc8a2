// The "Me" tab's profile forms. Password: one user on two devices (two
// browser contexts) plus a second tab of the first; changing the password on
// the first device sends the other device to the sign-in screen with a
// message, while both tabs of the first go on (they share its session); the
// old password no longer signs in, the new one does; a wrong current
// password or a mismatch shows an error and signs nobody out. Picture: a PNG
// made here is picked, uploaded to /media with the progress bar shown, and
// becomes the avatar, on the other device too (the "profile" push) and for a
// peer; a file that is no picture shows the server's error; "Remove picture"
// brings the initial back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { png } from './lib/images.mjs';
import * as B from './lib/browser.mjs';
import { apiClient, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

async function openMe(page) {
  await page.locator('.tab[data-tab="me"]').click();
  await page.locator('#panel-me').waitFor({ state: 'visible' });
}

async function changePassword(page, oldPw, newPw, confirm = newPw) {
  await page.locator('#me-pw-old').fill(oldPw);
  await page.locator('#me-pw-new').fill(newPw);
  await page.locator('#me-pw-confirm').fill(confirm);
  await page.locator('#me-pw-form button[type="submit"]').click();
}

/** The avatar's picture in #me-avatar: {src, width} once it loaded, or null without one. */
const meAvatar = (page) =>
  page.evaluate(() => {
    const img = document.querySelector('#me-avatar img');
    return img ? { src: new URL(img.src).pathname, width: img.complete ? img.naturalWidth : 0 } : null;
  });

test('a password change signs the other device out; this one goes on', async () => {
  const api = apiClient(env.srv.url);
  const paula = await api.register('paula');
  const laptop = await B.newContext(env.browser, B.DESKTOP);
  const phone = await B.newContext(env.browser, B.PHONE);
  const tab1 = await B.newPage(laptop, `${env.srv.url}/`);
  await B.signIn(tab1, 'paula');
  const tab2 = await B.newPage(laptop, `${env.srv.url}/`); // the same session (localStorage)
  await B.waitOnline(tab2);
  const other = await B.newPage(phone, `${env.srv.url}/`);
  await B.signIn(other, 'paula');

  await openMe(tab1);
  // refused before the server is asked, or by it: nobody is signed out
  await changePassword(tab1, 'password1', 'password2', 'password3');
  await tab1.locator('#me-pw-error', { hasText: 'do not match' }).waitFor();
  await changePassword(tab1, 'password1', '12345');
  await tab1.locator('#me-pw-error', { hasText: '6 to 128' }).waitFor();
  await changePassword(tab1, 'not-my-password', 'password2');
  await tab1.locator('#me-pw-error', { hasText: 'The current password is wrong.' }).waitFor();
  assert.equal(await tab1.locator('#shell').isVisible(), true, 'a wrong password does not sign out');
  await B.waitOnline(other);

  await changePassword(tab1, 'password1', 'password2');
  // the phone's token and the one the set-up's sign-up got
  await tab1.locator('#me-pw-done', { hasText: 'Password changed. 2 other sessions were signed out.' }).waitFor();
  assert.equal(await tab1.locator('#me-pw-error').isVisible(), false);
  assert.equal(await tab1.locator('#me-pw-old').inputValue(), '', 'the form is cleared');

  // the other device lands on the sign-in screen with a message, its session gone
  await other.locator('#auth').waitFor({ state: 'visible' });
  await other.locator('#toast', { hasText: 'Your password was changed on another device.' }).waitFor();
  assert.equal(await other.evaluate(() => localStorage.getItem('chatd_session')), null);

  // both tabs of this device go on, online
  for (const tab of [tab1, tab2]) {
    assert.equal(await tab.locator('#shell').isVisible(), true);
    await B.waitOnline(tab);
  }
  const frank = await api.register('frank');
  await frank.api.post('/chat/send', { to_id: paula.user.id, type: 'text', data: 'hi paula' });
  for (const tab of [tab1, tab2]) await B.eventually(() => B.chatList(tab), [{ name: 'frank', preview: 'hi paula', unread: '1' }]);

  // the old password no longer signs in; the new one does
  await other.locator('#auth-username').fill('paula');
  await other.locator('#auth-password').fill('password1');
  await other.locator('#auth-submit').click();
  await other.locator('#auth-error', { hasText: 'wrong username or password' }).waitFor();
  await B.signIn(other, 'paula', 'password2');
  B.noErrors(tab1, tab2, other);
  await laptop.close();
  await phone.close();
});

test('a picked picture is uploaded with a progress bar and becomes the avatar', async () => {
  const api = apiClient(env.srv.url);
  const pia = await api.register('pia');
  const peer = await api.register('piet');
  const laptop = await B.newContext(env.browser, B.DESKTOP);
  const phone = await B.newContext(env.browser, B.PHONE);
  const page = await B.newPage(laptop, `${env.srv.url}/`);
  await B.signIn(page, 'pia');
  const other = await B.newPage(phone, `${env.srv.url}/`);
  await B.signIn(other, 'pia');
  await openMe(page);
  await openMe(other);
  assert.equal(await meAvatar(page), null, 'no picture yet: the initial');
  assert.equal(await page.locator('#me-pic-remove').isVisible(), false);

  // the progress bar is shown while the bytes go out
  await page.evaluate(() => {
    const bar = document.getElementById('me-pic-progress');
    window.progressSeen = [];
    new MutationObserver(() => window.progressSeen.push(bar.hidden)).observe(bar, { attributes: true, attributeFilter: ['hidden'] });
  });
  await page.locator('#me-pic-file').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: png(64, 64, [200, 30, 90]) });
  await B.eventually(async () => {
    const a = await meAvatar(page);
    return !!a && /^\/media\/[0-9a-f]{64}\.png$/.test(a.src) && a.width === 64;
  }, true, { message: 'the avatar shows the uploaded picture' });
  const { src } = await meAvatar(page);
  assert.deepEqual(await page.evaluate(() => window.progressSeen), [false, true], 'the bar showed, then went');
  assert.equal(await page.locator('#me-pic-progress').evaluate((b) => b.value), 1);
  assert.equal(await page.locator('#me-pic-remove').isVisible(), true);

  // the server has it; the other device is told; a peer sees it
  assert.equal((await pia.api.get('/user/me')).userpic, src);
  await B.eventually(() => meAvatar(other).then((a) => a && a.src), src, { message: 'the other device' });
  const found = await peer.api.get('/user/search?q=pia');
  assert.equal(found.find((u) => u.username === 'pia').userpic, src);

  // a file that is no picture: the server's error, nothing changes
  await page.locator('#me-pic-file').setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('just some text, not a picture') });
  await page.locator('#me-pic-error').waitFor({ state: 'visible' });
  assert.ok((await page.locator('#me-pic-error').textContent()).length > 0);
  assert.equal((await meAvatar(page)).src, src);

  // removed: the initial comes back, here and on the other device
  await page.locator('#me-pic-remove').click();
  await B.eventually(() => meAvatar(page), null);
  await B.eventually(() => meAvatar(other), null, { message: 'the other device' });
  assert.equal((await pia.api.get('/user/me')).userpic, '');
  assert.equal(await page.locator('#me-pic-remove').isVisible(), false);
  B.noErrors(page, other);
  await laptop.close();
  await phone.close();
});
