// The web client, unchanged, through a cluster: three chatd nodes on one
// PostgreSQL and one Redis behind HAProxy (round robin, no stickiness), the
// pages open the one public address. Two users in two browser contexts, one
// of them with two tabs, chat both ways; every page's socket and HTTP calls
// are spread over the nodes (asserted from the X-Chatd-Node header and the
// node tag at the start of each socket's client_id), and one node is killed
// mid-conversation: its pages reconnect through HAProxy and lose nothing.
// Needs PostgreSQL: it runs in the browser-pg stage (CHATD_TEST_STORE).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import * as B from './lib/browser.mjs';
import { startCluster } from '../cluster/lib/cluster.mjs';

const skip = !process.env.CHATD_TEST_STORE && 'needs PostgreSQL (runs in the browser-pg stage)';
const env = {};

if (!skip) {
  env.cluster = await startCluster(after, { n: 3 }); // stopped by its own after hook
  env.url = env.cluster.lb.url;
}
before(async () => {
  if (!skip) env.browser = await B.launch();
});
after(async () => {
  if (env.browser) await env.browser.close();
});

/** Records which node answered each HTTP call and which node holds each socket. */
function watchNodes(page) {
  const seen = { http: new Set(), sockets: new Set() };
  page.on('response', (r) => {
    const node = r.headers()['x-chatd-node'];
    if (node && new URL(r.url()).pathname.startsWith('/chat/')) seen.http.add(node);
  });
  page.on('websocket', (ws) =>
    ws.on('framereceived', (f) => {
      try {
        const m = JSON.parse(f.payload);
        if (m.type === 'init') seen.sockets.add(env.cluster.nodeOf(m.client_id).nodeId);
      } catch {
        /* not JSON: not ours */
      }
    }),
  );
  return seen;
}

test('two users chat through three nodes behind HAProxy; a node dies and nothing is lost', { skip, timeout: 120000 }, async () => {
  const alicePage = await B.newPage(await B.newContext(env.browser, B.PHONE), `${env.url}/`);
  const bobContext = await B.newContext(env.browser, B.DESKTOP);
  const bobPage = await B.newPage(bobContext, `${env.url}/`);
  const aliceSeen = watchNodes(alicePage);
  const bobSeen = watchNodes(bobPage);
  await B.signUp(alicePage, 'alice');
  const bob = await B.signUp(bobPage, 'bob');
  // Bob's second tab (same session from localStorage): a second device on whatever node.
  const bobTab = await B.newPage(bobContext, `${env.url}/`);
  const bobTabSeen = watchNodes(bobTab);
  await bobTab.reload();
  await B.waitOnline(bobTab);

  await B.findAndOpen(alicePage, 'bob');
  await B.sendText(alicePage, 'Hi Bob, through the cluster');
  await B.eventually(() => B.bubbles(alicePage), [{ mine: true, text: 'Hi Bob, through the cluster', state: 'sent', id: 1 }]);
  for (const page of [bobPage, bobTab])
    await B.eventually(() => B.chatList(page), [{ name: 'alice', preview: 'Hi Bob, through the cluster', unread: '1' }]);
  assert.equal(await B.tabBadge(bobPage), '1');

  // Bob reads in one tab: the other tab's badge clears and Alice sees "read", wherever they are.
  await B.findAndOpen(bobPage, 'alice');
  await B.eventually(() => B.bubbles(bobPage), [{ mine: false, text: 'Hi Bob, through the cluster', state: '', id: 1 }]);
  await B.eventually(() => B.tabBadge(bobTab), '');
  await B.eventually(() => B.bubbles(alicePage), [{ mine: true, text: 'Hi Bob, through the cluster', state: 'read', id: 1 }]);
  await B.sendText(bobPage, 'Hello Alice');
  await B.eventually(() => B.bubbles(alicePage), [
    { mine: true, text: 'Hi Bob, through the cluster', state: 'read', id: 1 },
    { mine: false, text: 'Hello Alice', state: '', id: 2 },
  ]);

  // Round robin without stickiness: the pages' calls were answered by more than one node.
  const httpNodes = new Set([...aliceSeen.http, ...bobSeen.http, ...bobTabSeen.http]);
  assert.ok(httpNodes.size >= 2, `HTTP calls answered by ${[...httpNodes]}`);
  assert.ok(aliceSeen.sockets.size >= 1 && bobSeen.sockets.size >= 1);

  // Kill the node that holds Bob's first tab: it reconnects through HAProxy to a live node.
  const victimId = [...bobSeen.sockets][0];
  const victim = env.cluster.nodes.find((n) => n.nodeId === victimId);
  await victim.kill();
  await B.eventually(async () => (await bobPage.evaluate(() => document.documentElement.dataset.conn)) === 'online', true, {
    timeout: 30000,
    message: `Bob's page reconnects after ${victimId} died`,
  });
  await B.eventually(() => B.bubbles(bobPage), [
    { mine: false, text: 'Hi Bob, through the cluster', state: '', id: 1 },
    { mine: true, text: 'Hello Alice', state: 'sent', id: 2 },
  ], { timeout: 15000 });

  // Alice writes again (her page too may have been on the dead node): Bob's open tab shows it once.
  await B.waitOnline(alicePage, 30000);
  await B.sendText(alicePage, 'Still there?');
  await B.eventually(() => B.bubbles(bobPage), [
    { mine: false, text: 'Hi Bob, through the cluster', state: '', id: 1 },
    { mine: true, text: 'Hello Alice', state: 'sent', id: 2 },
    { mine: false, text: 'Still there?', state: '', id: 3 },
  ], { timeout: 15000, message: 'the message after the failover arrives exactly once' });
  assert.ok(bob.id > 0);
  B.noErrors(alicePage, bobPage, bobTab);
});
