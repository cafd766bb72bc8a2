// The uni-app adapter where a phone differs from a browser (lib/fake-uni.mjs behaves as WeChat):
// the tab bar badge can only be set while a tab bar page is shown, storage has limits, and
// uni.connectSocket may fail at once (calling only fail).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ChatClient } from '../../clients/js/src/index.js';
import { uniAdapter } from '../../clients/js/src/adapters/uniapp.js';
import { must, register, uname } from '../integration/lib/chat.mjs';
import { startServer } from '../integration/lib/server.mjs';
import { FakeUni } from './lib/fake-uni.mjs';
import { eventually, waitEvent } from './lib/scenarios.mjs';

const FAST = { baseDelayMs: 100, maxDelayMs: 1000 };
let srv;
const clients = [];

before(async () => {
  srv = await startServer({});
});

after(async () => {
  for (const c of clients) c.disconnect();
  if (srv) await srv.stop();
});

function phone(account, o = {}) {
  const uni = new FakeUni(o.uni);
  const client = new ChatClient({ adapter: uniAdapter({ uni, baseUrl: srv.url, tabBarIndex: 1 }), session: { token: account.token, user: account.user }, timing: FAST, ...o.client });
  clients.push(client);
  return { uni, client };
}

const badgeOf = (uni) => uni.tabBar[1].badge;

test('the fake is faithful: tab bar calls fail off a tab bar page, storage refuses more than 1 MB a key and 10 MB in all', async () => {
  const uni = new FakeUni();
  const res = (fn, o = {}) => new Promise((resolve) => fn.call(uni, { ...o, success: () => resolve('ok'), fail: (e) => resolve(e.errMsg) }));
  assert.equal(await res(uni.setTabBarBadge, { index: 1, text: '1' }), 'ok');
  assert.equal(await res(uni.navigateTo, { url: '/pages/chat-detail/chat-detail?key=5' }), 'ok');
  assert.equal(uni.currentPage(), 'pages/chat-detail/chat-detail');
  assert.match(await res(uni.setTabBarBadge, { index: 1, text: '2' }), /not TabBar page/);
  assert.match(await res(uni.removeTabBarBadge, { index: 1 }), /not TabBar page/);
  assert.equal(badgeOf(uni), '1');
  assert.equal(await res(uni.navigateBack), 'ok');
  assert.equal(await res(uni.removeTabBarBadge, { index: 1 }), 'ok');
  assert.throws(() => uni.setStorageSync('big', 'x'.repeat(1024 * 1024)), /exceed storage item max length/);
  for (let i = 0; i < 10; i++) uni.setStorageSync(`k${i}`, 'x'.repeat(1000 * 1000));
  assert.throws(() => uni.setStorageSync('one-more', 'x'.repeat(1000 * 1000)), /exceed storage max size/);
  uni.setStorageSync('k0', 'small'); // replacing a value counts its new size only
});

test('the tab bar badge: set while a conversation page is shown it fails, and is applied again on refreshBadge() and when the app is shown', async () => {
  const ann = await register(srv, uname('an'));
  const ben = await register(srv, uname('be'));
  const cy = await register(srv, uname('cy'));
  const { uni, client } = phone(ann);
  uni.switchTab({ url: '/pages/chat-list/chat-list' });
  await client.connect();
  for (const data of ['one', 'two']) await must(srv, 'POST', '/chat/send', { token: ben.token, body: { to_id: ann.user.id, type: 'text', data } });
  await eventually(() => badgeOf(uni), '2', { what: 'badge 2 on the list' });
  // The conversation page over the list: read there, the badge cannot be removed.
  uni.navigateTo({ url: `/pages/chat-detail/chat-detail?key=${ben.user.id}` });
  await eventually(() => uni.currentPage(), 'pages/chat-detail/chat-detail');
  await client.open(ben.user.id);
  await eventually(() => client.total, 0, { what: 'read' });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(badgeOf(uni), '2', 'a tab bar call off a tab bar page fails');
  client.close(ben.user.id);
  uni.navigateBack();
  await eventually(() => uni.onTabPage(), true);
  client.refreshBadge(); // the list page's onShow
  await eventually(() => badgeOf(uni), null, { what: 'badge removed once back on the list' });
  // A message while a conversation page is shown, then the app goes to the background and back.
  uni.navigateTo({ url: `/pages/chat-detail/chat-detail?key=${ben.user.id}` });
  await must(srv, 'POST', '/chat/send', { token: cy.token, body: { to_id: ann.user.id, type: 'text', data: 'from cy' } });
  await eventually(() => client.total, 1, { what: 'counted' });
  uni.navigateBack();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(badgeOf(uni), null, 'not applied yet');
  uni.hide();
  uni.show();
  await eventually(() => badgeOf(uni), '1', { what: 'applied when the app is shown' });
});

test('uni.connectSocket failing at once (only fail called) is a close: the client retries with its backoff', async () => {
  const dee = await register(srv, uname('de'));
  const { uni, client } = phone(dee);
  uni.failSockets = 2;
  const states = [];
  client.on('state', (s) => states.push(s));
  const t0 = Date.now();
  const synced = waitEvent(client, 'synced', () => true, 5000);
  client.connect();
  await synced;
  assert.ok(Date.now() - t0 < 5000, 'not after the 10 s init timeout');
  assert.equal(uni.sockets.length, 3);
  assert.equal(states.filter((s) => s === 'waiting').length, 2, `${states}`);
});
