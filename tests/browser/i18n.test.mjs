// Chinese and English (issue 15): every word of the web client comes from one
// table per language (web/js/i18n/zh-CN.js, en.js) through t(). Checked here:
// - the tables: the same keys in both (an English plural pair key_one/key_other
//   is one key), the same placeholders, every key the source uses (t('…'),
//   data-i18n attributes, key tables like STATE_LABEL) present, and an err.<code>
//   for every error code of docs/API.md and docs/MEDIA.md;
// - the date helpers in the page: today the clock, 昨天/Yesterday, 星期一/Monday
//   within the week, 2026年11月23日/Nov 23, 2026 before;
// - in Chromium with the browser's language zh-CN and then en-US, at desktop and
//   phone sizes: the sign-in screen, a wrong password's error, sign-up, the chat
//   list (previews, a group's system message), a 1:1 and a group conversation,
//   the Me tab, and switching the language there: everything is worded again
//   without a reload, <html lang> follows, and the choice outlives a reload.
// Chinese screenshots for the README go to tests/browser/artifacts/zh-*.png.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import * as B from './lib/browser.mjs';
import { REPO_ROOT, apiClient, startChatd } from './lib/chatd.mjs';

const WEB_JS = path.join(REPO_ROOT, 'web', 'js');
const load = async (name) => (await import(pathToFileURL(path.join(WEB_JS, 'i18n', name)).href)).default;
const PLURAL = /_(zero|one|two|few|many|other)$/;

/** A table's keys with plural forms folded into their base key. */
function baseKeys(table) {
  const out = new Set();
  for (const k of Object.keys(table)) out.add(PLURAL.test(k) && Object.hasOwn(table, k.replace(PLURAL, '_other')) ? k.replace(PLURAL, '') : k);
  return out;
}

const placeholders = (s) => new Set([...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]));

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.js') ? [path.join(dir, e.name)] : []));
}

/** The error codes the server documents: the "codes used" column, the code tables, the error frames. */
function documentedCodes() {
  const codes = new Set();
  for (const doc of ['API.md', 'MEDIA.md']) {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'docs', doc), 'utf8');
    for (const line of text.split('\n')) {
      const cells = line.split('|').map((c) => c.trim());
      // | 400 | bad input ... | `bad_json`, `bad_field` |   and   | 400 | `bad_multipart` | when |
      if (cells.length < 4 || !/^\d{3}$/.test(cells[1])) continue;
      const col = /^`[a-z_]+`$/.test(cells[2]) ? cells[2] : cells[3];
      for (const m of col.matchAll(/`([a-z]+(?:_[a-z]+)*)`/g)) codes.add(m[1]);
    }
    for (const m of text.matchAll(/"code":\s*"([a-z_]+)"/g)) codes.add(m[1]);
    for (const m of text.matchAll(/"code":"([a-z_]+)"(?:\|"([a-z_]+)")*/g)) codes.add(m[1]);
    for (const m of text.matchAll(/\b(?:40[0-9]|41[0-9]|42[0-9]|43[0-9]|50[0-9]) `([a-z]+(?:_[a-z]+)+)`/g)) codes.add(m[1]);
  }
  // The error frames' list: "code":"bad_json"|"bad_field"|...
  const api = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'API.md'), 'utf8');
  for (const m of api.matchAll(/"code":("[a-z_]+"(?:\|"[a-z_]+")+)/g)) for (const c of m[1].matchAll(/"([a-z_]+)"/g)) codes.add(c[1]);
  return codes;
}

test('both tables have the same keys and placeholders, and every key the page uses', async () => {
  const en = await load('en.js');
  const zh = await load('zh-CN.js');
  const enKeys = baseKeys(en);
  const zhKeys = baseKeys(zh);
  assert.deepEqual([...enKeys].filter((k) => !zhKeys.has(k)), [], 'keys of en.js missing from zh-CN.js');
  assert.deepEqual([...zhKeys].filter((k) => !enKeys.has(k)), [], 'keys of zh-CN.js missing from en.js');
  for (const [k, v] of Object.entries(zh)) {
    assert.equal(typeof v, 'string', k);
    assert.ok(v.trim(), `zh-CN.js: ${k} is empty`);
    const enText = en[k] ?? en[k.replace(PLURAL, '_other')];
    const extra = [...placeholders(v)].filter((p) => !placeholders(enText).has(p));
    assert.deepEqual(extra, [], `zh-CN.js ${k} has placeholders en.js does not fill`);
  }
  for (const [k, v] of Object.entries(en)) assert.ok(typeof v === 'string' && v.trim(), `en.js: ${k} is empty`);
  for (const k of Object.keys(en)) if (PLURAL.test(k)) assert.ok(Object.hasOwn(en, k.replace(PLURAL, '_other')), `en.js ${k}: no _other form`);

  // Every key the source names: t('key'), t(`key`), data-i18n*="key", and string literals of
  // the tables' key families in key maps (STATE_LABEL, TAB_TITLES, ROLE_LABEL, SESSION_ENDED).
  const families = new Set([...enKeys].map((k) => k.split('.')[0]));
  const used = new Map(); // key -> file
  const files = walk(WEB_JS).filter((f) => !f.includes(`${path.sep}i18n${path.sep}`));
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    for (const m of src.matchAll(/\bt\(\s*(['"`])([^'"`$]+)\1/g)) used.set(m[2], f);
    for (const m of src.matchAll(/'([a-z]+(?:\.[a-z0-9_-]+)+)'/g)) if (families.has(m[1].split('.')[0])) used.set(m[1], f);
    for (const m of src.matchAll(/'data-i18n(?:-[a-z-]+)?':\s*'([^']+)'/g)) used.set(m[1], f);
  }
  const html = fs.readFileSync(path.join(REPO_ROOT, 'web', 'index.html'), 'utf8');
  for (const m of html.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)) used.set(m[1], 'index.html');
  assert.ok(used.size > 150, `only ${used.size} keys found in the source: the scan is broken`);
  const missing = [...used].filter(([k]) => !enKeys.has(k)).map(([k, f]) => `${k} (${path.relative(REPO_ROOT, f)})`);
  assert.deepEqual(missing, [], 'keys used in web/ that the tables lack');
  // t(`lang.${code}`): one name per language.
  for (const code of ['zh-CN', 'en']) assert.ok(enKeys.has(`lang.${code}`), `lang.${code}`);

  // The server's codes, worded through err.<code> (errText in i18n.js).
  const codes = documentedCodes();
  for (const c of ['bad_credentials', 'rate_limited', 'unsupported_media_type', 'password_changed', 'not_bound']) assert.ok(codes.has(c), `the docs scan finds ${c}`);
  const unworded = [...codes].filter((c) => !enKeys.has(`err.${c}`));
  assert.deepEqual(unworded, [], 'error codes of docs/API.md and docs/MEDIA.md without an err.<code> key');
});

// ---- in the browser ----------------------------------------------------------------

const env = B.useChatdAndBrowser(() => startChatd());

/** A context whose browser language is `locale` (navigator.languages, Accept-Language). */
function context(locale, viewport) {
  return env.browser.newContext({ viewport, locale, timezoneId: 'UTC', deviceScaleFactor: 1 });
}

// The date helpers, in a page (its Intl, its time zone UTC). Monday 30 November 2026, noon.
const NOW = Date.UTC(2026, 10, 30, 12, 0);
const DATES = {
  today: Date.UTC(2026, 10, 30, 8, 5),
  yesterday: Date.UTC(2026, 10, 29, 23, 0),
  thursday: Date.UTC(2026, 10, 26, 14, 30),
  sixDaysAgo: Date.UTC(2026, 10, 24, 9, 0),
  weekAgo: Date.UTC(2026, 10, 23, 9, 0),
  lastYear: Date.UTC(2025, 9, 1, 9, 0),
};
const EXPECTED = {
  'zh-CN': {
    list: { today: '08:05', yesterday: '昨天', thursday: '星期四', sixDaysAgo: '星期二', weekAgo: '2026年11月23日', lastYear: '2025年10月1日' },
    divider: { today: '今天 08:05', yesterday: '昨天 23:00', thursday: '星期四 14:30' },
    presence: { today: '最后在线 08:05', yesterday: '最后在线 昨天 23:00', thursday: '最后在线 星期四 14:30', lastYear: '最后在线 2025年10月1日' },
  },
  en: {
    list: { today: '08:05 AM', yesterday: 'Yesterday', thursday: 'Thursday', sixDaysAgo: 'Tuesday', weekAgo: 'Nov 23, 2026', lastYear: 'Oct 1, 2025' },
    divider: { today: 'Today 08:05 AM', yesterday: 'Yesterday 11:00 PM', thursday: 'Thursday 02:30 PM' },
    presence: {
      today: 'last seen at 08:05 AM',
      yesterday: 'last seen yesterday at 11:00 PM',
      thursday: 'last seen Thursday at 02:30 PM',
      lastYear: 'last seen Oct 1, 2025',
    },
  },
};

async function dateWords(page) {
  return page.evaluate(
    async ({ now, dates }) => {
      const i18n = await import('/js/i18n.js');
      const format = await import('/js/format.js');
      const map = (fn, keys) => Object.fromEntries(keys.map((k) => [k, fn(dates[k])]));
      return {
        list: map((ms) => i18n.listTime(ms, now), Object.keys(dates)),
        divider: map((ms) => i18n.dividerTime(ms, now), ['today', 'yesterday', 'thursday']),
        presence: map((ms) => format.presenceText({ online: false, last_seen: ms }, now), ['today', 'yesterday', 'thursday', 'lastYear']),
      };
    },
    { now: NOW, dates: DATES },
  );
}

test('dates and times in the page: today, 昨天 / Yesterday, the weekday, the full date', async () => {
  const ctx = await context('zh-CN', B.DESKTOP);
  const page = await B.newPage(ctx, `${env.srv.url}/`);
  await page.locator('#auth').waitFor({ state: 'visible' });
  assert.deepEqual(await dateWords(page), EXPECTED['zh-CN']);
  await page.evaluate(async () => (await import('/js/i18n.js')).setLang('en'));
  // The page's Intl locale is the browser's English when it has one: zh-CN has none, en-US then.
  assert.deepEqual(await dateWords(page), EXPECTED.en);
  // Plurals (Intl.PluralRules) and a missing parameter.
  const words = await page.evaluate(async () => {
    const { t, setLang } = await import('/js/i18n.js');
    const out = [t('conv.members', { count: 1 }), t('conv.members', { count: 3 }), t('no.such.key')];
    setLang('zh-CN');
    out.push(t('conv.members', { count: 1 }), t('conv.members', { count: 3 }));
    return out;
  });
  assert.deepEqual(words, ['1 member', '3 members', 'no.such.key', '1 位成员', '3 位成员']);
  B.noErrors(page);
  await ctx.close();
});

const WORDS = {
  'zh-CN': {
    login: '登录',
    signup: '注册',
    wrongPassword: '用户名或密码错误。',
    tabs: ['聊天', '查找', '我'],
    chatsTitle: '聊天',
    created: (who) => `“${who}”创建了群聊`,
    sender: (who, text) => `${who}：${text}`,
    mine: (text) => `我：${text}`,
    members: '3 位成员',
    placeholder: '发消息',
    send: '发送',
    sent: '已发送',
    today: /^今天 \d\d:\d\d$/,
    meTitle: '我',
    password: '密码',
    changePassword: '修改密码',
    signOut: '退出登录',
    mismatch: '两次输入的新密码不一致。',
    online: '在线',
    owner: '群主',
    add: '添加',
  },
  en: {
    login: 'Sign in',
    signup: 'Sign up',
    wrongPassword: 'Wrong username or password.',
    tabs: ['Chats', 'Find', 'Me'],
    chatsTitle: 'Chats',
    created: (who) => `${who} created the group`,
    sender: (who, text) => `${who}: ${text}`,
    mine: (text) => `You: ${text}`,
    members: '3 members',
    placeholder: 'Message',
    send: 'Send',
    sent: 'Sent',
    today: /^Today \d\d:\d\d [AP]M$/,
    meTitle: 'Me',
    password: 'Password',
    changePassword: 'Change password',
    signOut: 'Sign out',
    mismatch: 'The new passwords do not match.',
    online: 'Online',
    owner: 'Owner',
    add: 'Add',
  },
};
const NAMES = {
  'zh-CN': { desktop: ['李雷', '王芳', '韩梅梅', '赵强'], phone: ['张伟', '刘洋', '陈静', '孙磊'] },
  en: { desktop: ['lee', 'fang', 'meimei', 'zhao'], phone: ['wei', 'yang', 'jing', 'sun'] },
};
const OTHER = { 'zh-CN': 'en', en: 'zh-CN' };
const BROWSER_LOCALE = { 'zh-CN': 'zh-CN', en: 'en-US' };

/** Raw keys showing through (a key missing from the tables shows as itself). */
async function noRawKeys(page) {
  const text = await page.evaluate(() => document.body.innerText);
  const m = text.match(/\b(auth|nav|conv|conn|chats|group|sys|err|profile|find|preview|presence|typing|date|lang|list|notify|badge|title|user|me)\.[a-z_]+\b/);
  assert.equal(m, null, `a raw key shows: ${m && m[0]}`);
}

/** The English words a Chinese screen shows, less those allowed (names, messages, brand). */
async function englishWords(page, allowed) {
  const text = await page.evaluate(() => document.body.innerText);
  return [...new Set(text.match(/[A-Za-z]{2,}/g) || [])].filter((w) => !allowed.includes(w));
}

async function tabTexts(page) {
  return page.locator('.tabbar .tab span[data-i18n]').allTextContents();
}

async function chatRun(lang, viewport, sizeName) {
  const w = WORDS[lang];
  const shot = (what) => B.screenshot(page, `${lang === 'zh-CN' ? 'zh' : 'en'}-${what}-${sizeName}.png`);
  const api = apiClient(env.srv.url);
  // One chatd for the file: each run its own people.
  const names = NAMES[lang][sizeName];
  const peer = await api.register(names[0]);
  const third = await api.register(names[1]);
  const meName = names[2];
  await api.register(names[3]);

  const ctx = await context(BROWSER_LOCALE[lang], viewport);
  // The notifications bar answered "not now" (trial.test.mjs tests it): screenshots of the chat only.
  await ctx.addInitScript(() => localStorage.setItem('chatd_notify_dismissed', '1'));
  const page = await B.newPage(ctx, `${env.srv.url}/`);
  await page.locator('#auth').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate(() => document.documentElement.lang), lang, '<html lang> follows the browser');
  assert.equal(await page.locator('#auth-title').textContent(), w.login);
  assert.equal(await page.locator('#auth-submit').textContent(), w.login);

  // A wrong password: the server's code, in this language.
  await page.locator('#auth-username').fill(names[3]);
  await page.locator('#auth-password').fill('not the password');
  await page.locator('#auth-submit').click();
  await B.eventually(() => page.locator('#auth-error').textContent(), w.wrongPassword);

  // The sign-in screen's link to the other language, and back.
  await page.locator('#auth-lang').click();
  await B.eventually(() => page.locator('#auth-title').textContent(), WORDS[OTHER[lang]].login);
  assert.equal(await page.locator('#auth-error').textContent(), WORDS[OTHER[lang]].wrongPassword, 'the shown error, worded again');
  await page.locator('#auth-lang').click();
  await B.eventually(() => page.locator('#auth-title').textContent(), w.login);

  // Sign up.
  await page.goto(`${env.srv.url}/#/signup`);
  await B.eventually(() => page.locator('#auth-submit').textContent(), w.signup);
  await noRawKeys(page);
  await page.locator('#auth-username').fill(meName);
  await page.locator('#auth-password').fill('password1');
  await page.locator('#auth-submit').click();
  await page.locator('#shell').waitFor({ state: 'visible' });
  await B.waitOnline(page);
  const me = await page.evaluate(() => JSON.parse(localStorage.getItem('chatd_session')).user);
  assert.deepEqual(await tabTexts(page), w.tabs);
  assert.equal(await page.locator('#panel-title').textContent(), w.chatsTitle);

  // A 1:1 conversation and a group.
  const hello = lang === 'zh-CN' ? '你好！周末有空吗？' : 'Hi! Free this weekend?';
  await peer.api.post('/chat/send', { to_id: me.id, type: 'text', data: hello });
  const groupName = lang === 'zh-CN' ? '周末爬山' : 'Weekend hike';
  const { group } = await peer.api.post('/group/create', { name: groupName, members: [me.id, third.user.id] });
  await B.eventually(() => B.chatList(page).then((l) => l.map((x) => x.preview)), [w.created(peer.user.username), hello]);
  const groupLine = lang === 'zh-CN' ? '早上八点山脚见' : 'Meet at 8 at the trailhead';
  await third.api.post('/chat/send', { group_id: group.group_id, type: 'text', data: groupLine });
  await B.eventually(() => B.chatList(page).then((l) => l[0].preview), w.sender(third.user.username, groupLine));
  await noRawKeys(page);
  if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd']), [], 'English words in the Chinese chat list');
  await shot('chat-list');

  await B.openChat(page, peer.user.username);
  assert.equal(await page.locator('#text').getAttribute('placeholder'), w.placeholder);
  assert.equal(await page.locator('#send-btn').textContent(), w.send);
  const reply = lang === 'zh-CN' ? '有空，去哪儿？' : 'Yes, where to?';
  await B.sendText(page, reply);
  await B.eventually(() => B.bubbles(page).then((b) => b.map((x) => x.state)), ['', 'sent']);
  assert.equal(await page.locator('#message-rows .row.mine .state').textContent(), w.sent);
  assert.match(await page.locator('#message-rows .divider').first().textContent(), w.today);
  await peer.api.post('/chat/send', { to_id: me.id, type: 'text', data: lang === 'zh-CN' ? '去香山吧，我建了个群。' : 'Let us go up the hill, I made a group.' });
  await B.eventually(() => B.bubbles(page).then((b) => b.length), 3);
  await noRawKeys(page);
  if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd']), [], 'English words in the Chinese conversation');
  await shot('conversation');

  await page.evaluate(() => (location.hash = '#/chats')); // a phone shows no tab bar in a conversation
  await B.openChat(page, groupName);
  assert.equal(await page.locator('#conv-sub').textContent(), w.members);
  const rows = await B.groupRows(page);
  assert.equal(rows[0].text, w.created(peer.user.username));
  await B.sendText(page, lang === 'zh-CN' ? '好的，我带水。' : 'Great, I will bring water.');
  await B.eventually(() => B.groupRows(page).then((r) => r.length), 3);
  await noRawKeys(page);
  if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd']), [], 'English words in the Chinese group');
  await shot('group');
  // The members panel (a member's view: names, roles, mute, leave) and the "New group" dialog.
  await page.locator('#conv-members-btn').click();
  await page.locator('#members-list .member').nth(2).waitFor();
  assert.equal(await page.locator('#members-count').textContent(), w.members);
  assert.equal(await page.locator('#members-list .member[data-role="owner"] .member-role-label').textContent(), w.owner);
  await noRawKeys(page);
  if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd']), [], 'English words in the Chinese members panel');
  await page.locator('#members-close').click();
  if (sizeName === 'desktop') {
    await page.locator('#new-group').click();
    await page.locator('#group-q').fill(third.user.username);
    await page.locator('#group-results .user-item button.pick').waitFor();
    assert.equal(await page.locator('#group-results .user-item button.pick').textContent(), w.add);
    await noRawKeys(page);
    if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd']), [], 'English words in the Chinese "New group" dialog');
    await page.locator('#group-cancel').click();
  }

  // The Me tab, and the other language.
  await page.evaluate(() => (location.hash = '#/me')); // (a phone's conversation has no tab bar)
  await page.locator('#panel-me').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#panel-title').textContent(), w.meTitle);
  assert.equal(await page.locator('#me-pw-form .profile-title').textContent(), w.password);
  assert.equal(await page.locator('#sign-out').textContent(), w.signOut);
  assert.equal(await page.locator('#me-conn').textContent(), w.online);
  assert.equal(await page.locator('#me-lang button[aria-pressed="true"]').getAttribute('data-lang'), lang);
  // An error shown by the page itself.
  await page.locator('#me-pw-old').fill('password1');
  await page.locator('#me-pw-new').fill('password2');
  await page.locator('#me-pw-confirm').fill('password3');
  await page.locator('#me-pw-form button[type="submit"]').click();
  await B.eventually(() => page.locator('#me-pw-error').textContent(), w.mismatch);
  await noRawKeys(page);
  if (lang === 'zh-CN') assert.deepEqual(await englishWords(page, ['chatd', 'ID', 'English']), [], 'English words in the Chinese Me tab');
  await shot('me');

  const other = OTHER[lang];
  const o = WORDS[other];
  const navigations = [];
  page.on('framenavigated', (f) => f === page.mainFrame() && navigations.push(f.url()));
  await page.locator(`#me-lang button[data-lang="${other}"]`).click();
  await B.eventually(() => page.evaluate(() => document.documentElement.lang), other);
  assert.deepEqual(navigations, [], 'no reload');
  assert.deepEqual(await tabTexts(page), o.tabs);
  assert.equal(await page.locator('#panel-title').textContent(), o.meTitle);
  assert.equal(await page.locator('#me-pw-form .profile-title').textContent(), o.password);
  assert.equal(await page.locator('#me-pw-form button[type="submit"]').textContent(), o.changePassword);
  assert.equal(await page.locator('#me-lang button[aria-pressed="true"]').getAttribute('data-lang'), other);
  assert.equal(await page.locator('#sign-out').textContent(), o.signOut);
  assert.equal(await page.locator('#me-conn').textContent(), o.online);
  assert.equal(await page.locator('#text').getAttribute('placeholder'), o.placeholder);
  assert.equal(await page.evaluate(() => localStorage.getItem('chatd_lang')), other);
  await noRawKeys(page);
  // The list's previews and the conversations, in the new language.
  await page.locator('.tab[data-tab="chats"]').click();
  await B.eventually(() => B.chatList(page).then((l) => l.map((x) => x.preview)), [
    o.mine(lang === 'zh-CN' ? '好的，我带水。' : 'Great, I will bring water.'),
    lang === 'zh-CN' ? '去香山吧，我建了个群。' : 'Let us go up the hill, I made a group.',
  ]);
  await page.evaluate(() => (location.hash = '#/chats')); // a phone shows no tab bar in a conversation
  await B.openChat(page, groupName);
  assert.equal(await page.locator('#conv-sub').textContent(), o.members);
  assert.equal((await B.groupRows(page))[0].text, o.created(peer.user.username));
  assert.equal(await page.locator('#message-rows .row.mine .state').first().textContent(), o.sent);
  await noRawKeys(page);

  // The choice outlives a reload (the browser still says the first language).
  await page.reload();
  await B.waitOnline(page);
  assert.equal(await page.evaluate(() => document.documentElement.lang), other);
  assert.deepEqual(await tabTexts(page), o.tabs);
  // And back.
  await page.evaluate(() => (location.hash = '#/me'));
  await page.locator(`#me-lang button[data-lang="${lang}"]`).click();
  await B.eventually(() => tabTexts(page), w.tabs);
  B.noErrors(page);
  await ctx.close();
}

for (const lang of ['zh-CN', 'en']) {
  test(`${lang} at desktop size: sign-in error, sign-up, the list, a conversation, a group, the Me tab, switching`, () => chatRun(lang, B.DESKTOP, 'desktop'));
  test(`${lang} at phone size: the same`, () => chatRun(lang, B.PHONE, 'phone'));
}
