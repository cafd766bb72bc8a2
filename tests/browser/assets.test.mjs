// The web client's files on a page load: each fetched once, text arriving
// gzip-compressed.
//
// "Fetched" means a request that reached the server, whatever its answer
// (a 200, or a 304 revalidation). They are counted by a small HTTP proxy in
// front of chatd (WebSocket upgrades are piped through), because
// page.on('request') also reports uses that the browser answered from its
// own cache without asking the server: the favicon's use of img/icon.svg
// after the load shows there even when no request leaves the browser. Both
// are recorded; the server-side count is the one asserted.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import * as B from './lib/browser.mjs';
import { sleep, startChatd } from './lib/chatd.mjs';

const env = B.useChatdAndBrowser(startChatd);

/** Requests that reached chatd through the proxy: {method, path, status, encoding, inm}. */
const seen = [];
let proxy;
let proxyUrl;

before(async () => {
  proxy = http.createServer((req, res) => {
    const entry = { method: req.method, path: req.url, inm: req.headers['if-none-match'] || '', ae: req.headers['accept-encoding'] || '' };
    seen.push(entry);
    const up = http.request({ host: '127.0.0.1', port: env.srv.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      entry.status = r.statusCode;
      entry.encoding = r.headers['content-encoding'] || '';
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  proxy.on('upgrade', (req, sock, head) => {
    const up = net.connect(env.srv.port, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${proxy.address().port}/`;
});
after(() => {
  if (proxy) {
    proxy.closeAllConnections();
    proxy.close();
  }
});

const isAsset = (p) => p === '/' || /\.(html|css|js|svg|png|ico|json|webmanifest)(\?|$)/.test(p);

/** Fetches per path since the last call (only GETs of files, not the API). */
function takeAssetFetches() {
  const got = seen.splice(0).filter((e) => e.method === 'GET' && isAsset(e.path));
  const counts = {};
  for (const e of got) counts[e.path] = (counts[e.path] || 0) + 1;
  return { got, counts };
}

async function settle(page) {
  await page.waitForLoadState('load');
  await page.waitForLoadState('networkidle');
  await sleep(700); // the favicon is fetched after the load event
}

test('a first load fetches each file once, text gzip-compressed', async () => {
  const page = await B.newPage(await B.newContext(env.browser, B.DESKTOP));
  const pageRequests = [];
  page.on('request', (r) => pageRequests.push(new URL(r.url()).pathname));
  seen.splice(0);
  await page.goto(proxyUrl);
  await page.locator('#auth').waitFor({ state: 'visible' });
  await settle(page);

  const { got, counts } = takeAssetFetches();
  for (const p of ['/', '/css/app.css', '/js/app.js', '/img/icon.svg']) assert.ok(counts[p], `${p} was fetched`);
  const twice = Object.entries(counts).filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `fetched more than once: ${JSON.stringify(twice)}; page saw ${JSON.stringify(pageRequests)}`);
  assert.ok(!counts['/favicon.ico'], 'no /favicon.ico probe');
  for (const e of got) {
    assert.equal(e.status, 200, `${e.path}: ${e.status}`);
    assert.match(e.ae, /gzip/, 'Chromium asks for gzip');
    // every text file of the client is over 256 bytes: all of them arrive compressed
    assert.equal(e.encoding, 'gzip', `${e.path} arrived gzip-compressed`);
  }
  B.noErrors(page);
  await page.context().close();
});

test('a reload after signing in revalidates each file at most once, the icon not at all', async () => {
  const page = await B.newPage(await B.newContext(env.browser, B.DESKTOP), proxyUrl);
  await B.signUp(page, 'assets1');
  await settle(page);
  seen.splice(0);
  await page.reload();
  await B.waitOnline(page);
  await settle(page);

  const { got, counts } = takeAssetFetches();
  const twice = Object.entries(counts).filter(([, n]) => n > 1);
  assert.deepEqual(twice, [], `fetched more than once: ${JSON.stringify(twice)}`);
  assert.ok(!counts['/img/icon.svg'], 'the icon is still fresh: not fetched again');
  assert.ok(counts['/js/app.js'], 'scripts are revalidated (no-cache)');
  for (const e of got) {
    assert.equal(e.status, 304, `${e.path} revalidated, not sent again`);
    assert.match(e.inm, /-gz"$/, `${e.path} revalidated with the gzip variant's ETag`);
  }
  B.noErrors(page);
  await page.context().close();
});
