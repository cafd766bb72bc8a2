// Headless Debian Chromium through playwright-core, plus the steps the tests
// share (sign up, open a chat, send, read the list and the badge).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { chromium } from 'playwright-core';
import { REPO_ROOT, sleep } from './chatd.mjs';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
export const ARTIFACTS = path.join(REPO_ROOT, 'tests', 'browser', 'artifacts');
export const PHONE = { width: 390, height: 780 };
export const DESKTOP = { width: 1100, height: 720 };

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/bootstrap.sh --test)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30000,
    args: [
      '--no-sandbox',
      '--headless',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/**
 * A page that records its script errors: the tests fail on any.
 * @returns {Promise<import('playwright-core').Page & {errors: string[]}>}
 */
/**
 * Registers the file's before/after hooks: one chatd (from startChatd) and one
 * Chromium for all its tests. Returns {srv, browser}, filled in by before().
 */
export function useChatdAndBrowser(startChatd) {
  const env = {};
  before(async () => {
    env.srv = await startChatd();
    env.browser = await launch();
  });
  after(async () => {
    if (env.browser) await env.browser.close();
    if (env.srv) await env.srv.stop();
  });
  return env;
}

export async function newPage(context, url) {
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e && e.stack ? e.stack : e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource|WebSocket connection to/.test(m.text())) page.errors.push(m.text());
  });
  page.setDefaultTimeout(10000);
  if (url) await page.goto(url);
  return page;
}

export async function newContext(browser, viewport = PHONE) {
  return browser.newContext({ viewport, locale: 'en-GB', timezoneId: 'UTC', deviceScaleFactor: 1 });
}

export function noErrors(...pages) {
  for (const p of pages) assert.deepEqual(p.errors, [], 'script errors in the page');
}

export async function signUp(page, username, password = 'password1') {
  await page.goto(new URL('/#/signup', page.url()).href);
  await page.locator('#auth-username').fill(username);
  await page.locator('#auth-password').fill(password);
  await page.locator('#auth-submit').click();
  await page.locator('#shell').waitFor({ state: 'visible' });
  await waitOnline(page);
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')));
  return session.user;
}

export async function signIn(page, username, password = 'password1') {
  await page.goto(new URL('/#/login', page.url()).href);
  await page.locator('#auth-username').fill(username);
  await page.locator('#auth-password').fill(password);
  await page.locator('#auth-submit').click();
  await page.locator('#shell').waitFor({ state: 'visible' });
  await waitOnline(page);
}

export async function waitOnline(page, timeout = 10000) {
  await page.waitForFunction(() => document.documentElement.dataset.conn === 'online', null, { timeout });
}

/** Finds a user through the Find tab and opens the conversation with them. */
export async function findAndOpen(page, name) {
  await page.locator('.tab[data-tab="find"]').click();
  await page.locator('#find-q').fill(name);
  const hit = page.locator('#find-results .user-item').filter({ has: page.locator('.user-name', { hasText: name }) });
  await hit.first().waitFor();
  await hit.first().locator('a').click();
  await page.locator('#conversation').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#conv-name').textContent(), name);
}

/** Types into the send box and presses Enter. */
export async function sendText(page, text) {
  await page.locator('#text').fill(text);
  await page.locator('#text').press('Enter');
}

/** The open conversation's messages: [{mine, text, state}] in screen order. */
export async function bubbles(page) {
  return page.locator('#message-rows .row').evaluateAll((rows) =>
    rows.map((r) => ({
      mine: r.classList.contains('mine'),
      text: r.querySelector('.bubble').textContent,
      state: r.dataset.state || '',
      id: Number(r.dataset.id || 0),
    })),
  );
}

/** The chat list: [{name, preview, unread}] top to bottom. */
export async function chatList(page) {
  return page.locator('#chat-list .chat-item').evaluateAll((items) =>
    items.map((li) => ({
      name: li.querySelector('.chat-name').textContent,
      preview: li.querySelector('.chat-preview').textContent,
      unread: li.querySelector('.unread') ? li.querySelector('.unread').textContent : '',
    })),
  );
}

/** The tab bar badge's text ('' when hidden). */
export async function tabBadge(page) {
  return page.locator('#tab-badge').evaluate((b) => (b.hidden ? '' : b.textContent));
}

/** Polls fn until it deep-equals expected (or times out, then asserts). */
export async function eventually(fn, expected, { timeout = 8000, message } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    try {
      assert.deepEqual(last, expected);
      return last;
    } catch (e) {
      if (Date.now() > deadline) {
        e.message = `${message ? `${message}: ` : ''}${e.message}`;
        throw e;
      }
    }
    await sleep(50);
  }
}

export async function screenshot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  return file;
}

// ---- groups and presence ----------------------------------------------------------

/** The open conversation's rows as a group shows them: [{kind: 'system'|'mine'|'theirs', sender, text}]. */
export async function groupRows(page) {
  return page.locator('#message-rows .row').evaluateAll((rows) =>
    rows.map((r) => ({
      kind: r.classList.contains('system') ? 'system' : r.classList.contains('mine') ? 'mine' : 'theirs',
      sender: r.querySelector('.sender') ? r.querySelector('.sender').textContent : '',
      text: r.querySelector('.bubble').textContent,
    })),
  );
}

/** Creates a group through the "New group" dialog, picking members by name; waits for it to open. */
export async function createGroup(page, name, memberNames) {
  await page.locator('.tab[data-tab="chats"]').click();
  await page.locator('#new-group').click();
  await page.locator('#group-dialog').waitFor({ state: 'visible' });
  await page.locator('#group-name').fill(name);
  for (const m of memberNames) {
    await page.locator('#group-q').fill(m);
    const hit = page.locator('#group-results .user-item').filter({ has: page.locator('.user-name', { hasText: m }) });
    await hit.first().locator('button.pick').click();
    await page.locator('#group-picked .chip', { hasText: m }).waitFor();
  }
  await page.locator('#group-create').click();
  await page.locator('#group-dialog').waitFor({ state: 'hidden' });
  await page.locator('#conversation.is-group').waitFor({ state: 'visible' });
  await page.waitForFunction((n) => document.querySelector('#conv-name').textContent === n, name);
}

/** Opens a conversation of the chat list by its name. */
export async function openChat(page, name) {
  await page.locator('.tab[data-tab="chats"]').click();
  const item = page.locator('#chat-list .chat-item').filter({ has: page.locator('.chat-name', { hasText: name }) });
  await item.first().locator('.chat-link').click();
  await page.waitForFunction((n) => document.querySelector('#conv-name').textContent === n && !document.querySelector('#conversation').hidden, name);
}

/** Opens the members panel of the open group and returns its members [{name, role, online}]. */
export async function groupMembers(page) {
  if (await page.locator('#members-panel').isHidden()) await page.locator('#conv-members-btn').click();
  return page.locator('#members-list .member').evaluateAll((items) =>
    items.map((li) => ({ name: li.querySelector('.member-name').textContent, role: li.dataset.role, online: li.dataset.online === 'true' })),
  );
}

/** Whether the chat list item named `name` shows an online dot. */
export async function listOnline(page, name) {
  const item = page.locator('#chat-list .chat-item').filter({ has: page.locator('.chat-name', { hasText: name }) });
  return item.first().locator('.presence-dot.online').count().then((n) => n > 0);
}

// ---- accessibility ---------------------------------------------------------------

// Runs in the page: every visible element under rootSel with text of its own (not aria-hidden,
// not a disabled button), its WCAG contrast ratio against the backgrounds under it (translucent
// ones composited) and the ratio AA needs (3 for large text, else 4.5).
function contrastSweep(rootSel) {
  const parse = (c) => {
    const m = c.match(/rgba?\(([^)]+)\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat(1);
  };
  const lum = ([r, g, b]) => {
    const f = (v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) layers.push(c);
      if (c[3] >= 1) break;
    }
    let bg = [255, 255, 255, 1];
    for (const l of layers.reverse()) bg = over(l, bg);
    return bg;
  };
  const out = [];
  for (const el of document.querySelectorAll(`${rootSel} *`)) {
    if (!el.checkVisibility || !el.checkVisibility()) continue;
    if (el.closest('[aria-hidden="true"], button:disabled, svg')) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim()).map((n) => n.textContent.trim()).join(' ');
    if (!own) continue;
    const cs = getComputedStyle(el);
    const bg = background(el);
    const fg = over(parse(cs.color), bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const ratio = Math.round(((l1 + 0.05) / (l2 + 0.05)) * 100) / 100;
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(cs.fontWeight) >= 700);
    out.push({ sel: `${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`, text: own.slice(0, 20), ratio, need: large ? 3 : 4.5 });
  }
  return out;
}

/** [{sel, text, ratio, need}] for the text under rootSel (see contrastSweep). */
export async function contrastReport(page, rootSel = 'body') {
  return page.evaluate(contrastSweep, rootSel);
}
