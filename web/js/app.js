// app.js: the controller. Signs in, keeps the socket (socket.js) online,
// applies what the server pushes to the store (store.js), and drives the
// views. The flow follows the reference client: open the WebSocket, wait for
// init, POST /chat/bind (its client_id and bind_nonce); when bound go online,
// set the badge and fetch what was missed (/chat/list, /chat/unread, then
// POST /chat/sync with a cursor per conversation). Every stored message has
// seq, its place in its conversation: a pushed message whose seq is not the
// next one shows a push was missed, and the conversations are synced again.
import { api, ApiError, onUnauthorized, setToken } from './api.js';
import { avatar, toast, uuid } from './dom.js';
import { badgeText } from './format.js';
import { ChatSocket, socketUrl } from './socket.js';
import { ChatStore, SESSION_KEY, clearSession, loadSession, peerOf, saveSession } from './store.js';
import { setupAuth } from './views/auth.js';
import { ConversationView } from './views/conversation.js';
import { renderList } from './views/list.js';
import { setupSearch } from './views/search.js';

const PAGE = 30; // history page (halved while the server's --page-limit is lower)
const SYNC_MAX_PAGES = 20; // /chat/sync pages of the server's --page-limit each
const GAP_WAIT_MS = 250; // a seq hole may be a push still on its way (an HTTP answer can overtake it)
const SEND_TIMEOUT_MS = 15000; // an unacknowledged message shows "Failed" after this
const TYPING_EVERY_MS = 3000; // at most one typing event this often
const TYPING_SHOWN_MS = 6000; // "typing…" lasts this long after the last event
const MAX_TEXT_BYTES = 4096;

const $ = (id) => document.getElementById(id);
const bytes = (s) => new TextEncoder().encode(s).length;
const visible = () => document.visibilityState !== 'hidden';

/** @type {{token: string, user: {id: number, username: string, userpic: string}} | null} */
let session = null;
/** @type {ChatStore | null} */
let store = null;
/** @type {ChatSocket | null} */
let socket = null;
let clientId = null;
let current = null; // the open conversation's peer id
let catchingUp = null; // messages pushed while catching up, or null
let everOnline = false;
let loadingOlder = false;
let lastTypingSent = 0;
let typingPeer = null;
const typingUntil = new Map(); // peer -> ms
const typingTimers = new Map();
const sendTimers = new Map(); // client_msg_id -> timer
const readTimers = new Map(); // peer -> timer

// ---- views ------------------------------------------------------------------

const auth = setupAuth($('auth'), signedIn);
const search = setupSearch({ input: $('find-q'), results: $('find-results'), hint: $('find-hint') }, () => store);
const conv = new ConversationView(
  {
    root: $('conversation'),
    avatar: $('conv-avatar'),
    name: $('conv-name'),
    status: $('conv-status'),
    scroller: $('messages'),
    rows: $('message-rows'),
    historyState: $('history-state'),
    composer: $('composer'),
    text: $('text'),
    imageBtn: $('image-btn'),
    imageForm: $('image-form'),
    imageUrl: $('image-url'),
    imageCancel: $('image-cancel'),
    imageError: $('image-error'),
  },
  { send: sendMessage, retry: retryMessage, loadOlder, typing: typingChanged },
);

let listQueued = false;
function scheduleListRender() {
  if (listQueued) return;
  listQueued = true;
  // A microtask, not requestAnimationFrame: a hidden tab must keep its title right.
  queueMicrotask(() => {
    listQueued = false;
    if (!store) return;
    renderList($('chat-list'), store, { current, typing: new Set(typingUntil.keys()) });
    $('chats-empty').hidden = store.list.length > 0;
    updateBadge();
  });
}

let convQueued = false;
function scheduleConvRender() {
  if (convQueued) return;
  convQueued = true;
  queueMicrotask(() => {
    convQueued = false;
    if (store && current !== null) conv.render();
  });
}

function updateBadge() {
  const total = store ? store.total() : 0;
  const badge = $('tab-badge');
  badge.textContent = total > 0 ? badgeText(total) : '';
  badge.hidden = total === 0;
  badge.setAttribute('aria-label', `${total} unread`);
  document.title = total > 0 ? `(${badgeText(total)}) chatd` : 'chatd';
}

function renderMe() {
  if (!session) return;
  $('me-avatar').replaceChildren(avatar(session.user, 'lg'));
  $('me-name').textContent = session.user.username;
  $('me-id').textContent = `User id ${session.user.id}`;
}

// ---- connection state ---------------------------------------------------------

let countdownTimer = 0;
function showConnection(state, info = {}) {
  const root = document.documentElement;
  const conn = state === 'online' ? 'online' : state === 'waiting' || state === 'stopped' ? 'offline' : 'connecting';
  root.dataset.conn = conn;
  const dot = $('conn-dot');
  dot.className = `conn-dot ${conn}`;
  dot.title = conn === 'online' ? 'Online' : conn === 'offline' ? 'Offline' : 'Connecting';
  $('me-conn').textContent = conn === 'online' ? 'Online' : conn === 'offline' ? 'Offline' : 'Connecting…';
  clearInterval(countdownTimer);
  const banner = $('conn-banner');
  const text = $('conn-text');
  if (conn === 'online' || !session) {
    banner.hidden = true;
    return;
  }
  if (state === 'waiting') {
    const tick = () => {
      const s = Math.max(0, Math.ceil((info.at - Date.now()) / 1000));
      text.textContent = s > 0 ? `Offline. Reconnecting in ${s} s…` : 'Offline. Reconnecting…';
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    $('conn-retry').hidden = false;
    banner.hidden = false;
  } else if (state === 'stopped') {
    text.textContent = info.message ? `Disconnected: ${info.message}` : 'Disconnected.';
    $('conn-retry').hidden = false;
    banner.hidden = false;
  } else {
    text.textContent = 'Connecting…';
    $('conn-retry').hidden = true;
    banner.hidden = !everOnline;
  }
}

$('conn-retry').addEventListener('click', () => {
  if (!socket) return;
  if (socket.stopped) socket.start();
  else socket.reconnectNow();
});

// ---- session ------------------------------------------------------------------

function signedIn(sess) {
  saveSession(sess);
  startSession(sess);
  history.replaceState(null, '', '#/chats');
  route();
}

function startSession(sess) {
  session = sess;
  setToken(sess.token);
  store = new ChatStore(sess.user);
  store.on((what, peer) => {
    if (what === 'list') scheduleListRender();
    else if (what === 'detail' && peer === current) scheduleConvRender();
  });
  renderMe();
  scheduleListRender();
  search.reset();
  socket = new ChatSocket({
    url: socketUrl('/ws'),
    bind,
    onOnline,
    onOffline,
    onMessage,
    onState: (state, info) => showConnection(state, { ...info, message: stopMessage }),
  });
  socket.start();
}

let stopMessage = '';

async function bind(cid, nonce) {
  const s = store;
  let res;
  try {
    res = await api.bind(cid, nonce);
  } catch (e) {
    if (s !== store) throw e;
    if (e.status === 401 || e.status === 403) {
      e.fatal = true;
      stopMessage = e.message;
    }
    // The reference client shows the server's message and closes.
    if (!e.network && e.status !== 401) toast(e.message);
    throw e;
  }
  if (!(res && res.status && res.type === 'bind')) {
    toast((res && res.msg) || 'Could not go online');
    throw new ApiError((res && res.msg) || 'bind failed');
  }
}

function signOut({ remote = true, message = '' } = {}) {
  if (!session) return;
  if (remote) api.logout().catch(() => {});
  if (socket) socket.stop();
  socket = null;
  if (store) store.forget();
  for (const t of sendTimers.values()) clearTimeout(t);
  sendTimers.clear();
  session = null;
  store = null;
  clientId = null;
  current = null;
  catchingUp = null;
  everOnline = false;
  typingUntil.clear();
  setToken(null);
  clearSession();
  conv.close();
  $('chat-list').replaceChildren();
  search.reset();
  updateBadge();
  showConnection('stopped');
  history.replaceState(null, '', '#/login');
  route();
  if (message) toast(message);
}

onUnauthorized(() => signOut({ remote: false, message: 'Your session has ended. Please sign in again.' }));
$('sign-out').addEventListener('click', () => signOut());

// Another tab signed out, or in as someone else.
window.addEventListener('storage', (e) => {
  if (e.key !== SESSION_KEY && e.key !== null) return;
  const next = loadSession();
  if (!next && session) signOut({ remote: false });
  else if (next && (!session || next.user.id !== session.user.id)) location.reload();
});

// ---- routing --------------------------------------------------------------------

const TAB_TITLES = { chats: 'Chats', find: 'Find people', me: 'Me' };

function parseRoute() {
  const [name, arg] = location.hash.replace(/^#\/?/, '').split('/');
  if (name === 'chat' && /^\d{1,15}$/.test(arg || '')) return { name, peer: Number(arg) };
  if (name in TAB_TITLES || name === 'login' || name === 'signup') return { name };
  return { name: '' };
}

function route() {
  let r = parseRoute();
  if (!session) {
    $('shell').hidden = true;
    auth.show(r.name === 'signup' ? 'signup' : 'login');
    return;
  }
  if (!(r.name in TAB_TITLES) && r.name !== 'chat') {
    history.replaceState(null, '', '#/chats');
    r = { name: 'chats' };
  }
  if (r.name === 'chat' && r.peer === session.user.id) {
    history.replaceState(null, '', '#/chats');
    r = { name: 'chats' };
  }
  auth.hide();
  $('shell').hidden = false;
  const tab = r.name === 'chat' ? 'chats' : r.name;
  for (const t of Object.keys(TAB_TITLES)) $(`panel-${t}`).hidden = t !== tab;
  for (const a of document.querySelectorAll('.tab')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  $('panel-title').textContent = TAB_TITLES[tab];
  $('shell').dataset.view = r.name === 'chat' ? 'conversation' : 'list';
  if (r.name === 'chat') openConversation(r.peer);
  else closeConversation();
  if (r.name === 'find' && !matchMedia('(pointer: coarse)').matches) search.focus();
}

window.addEventListener('hashchange', route);

// ---- conversations ------------------------------------------------------------

function openConversation(peer) {
  if (current !== null && current !== peer) stopTyping();
  current = peer;
  $('placeholder').hidden = true;
  $('conversation').hidden = false;
  const changed = conv.open(store, peer);
  conv.setTyping(typingUntil.has(peer));
  scheduleListRender();
  if (!changed) return;
  loadingOlder = false;
  const d = store.detail(peer);
  d.fresh = false;
  if (d.complete) conv.setHistoryState('complete');
  markRead(peer);
  refreshNewest(peer);
  if (!matchMedia('(pointer: coarse)').matches) conv.focusInput();
}

function closeConversation() {
  if (current === null) return;
  stopTyping();
  current = null;
  conv.close();
  $('conversation').hidden = true;
  $('placeholder').hidden = false;
  scheduleListRender();
}

let historyLimit = PAGE;

/** One page of history, newest first; {page, limit}. Adapts to a server with a lower --page-limit. */
async function fetchHistory(peer, before) {
  for (;;) {
    const limit = historyLimit;
    try {
      return { page: await api.history(peer, before, limit), limit };
    } catch (e) {
      if (e.status !== 400 || limit <= 1) throw e;
      historyLimit = Math.max(1, Math.floor(limit / 2));
    }
  }
}

/** Fetches the newest page of a conversation and merges it with the cache. */
async function refreshNewest(peer) {
  const s = store;
  const d = s.detail(peer);
  if (!d.messages.some((m) => m.id) && current === peer) conv.setHistoryState('loading');
  let page;
  let limit;
  try {
    ({ page, limit } = await fetchHistory(peer, 0));
  } catch (e) {
    if (s === store && current === peer) conv.setHistoryState(e.network ? 'idle' : 'error');
    return;
  }
  if (s !== store) return;
  const known = d.messages.filter((m) => m.id);
  if (page.length === limit && known.length) {
    const oldestFetched = Math.min(...page.map((m) => m.id));
    const newestKnown = Math.max(...known.map((m) => m.id));
    // Messages are missing between the cache and this page: start over from the page.
    if (oldestFetched > newestKnown) s.resetDetail(peer);
  }
  for (const m of page) if (m.from_id === peer) s.rememberUser({ id: peer, username: m.from_username, userpic: m.from_userpic });
  s.merge(peer, page);
  if (page.length < limit) d.complete = true;
  d.fresh = true;
  if (current === peer) {
    conv.renderHeader();
    conv.render();
    conv.setHistoryState(d.complete ? 'complete' : 'idle');
    fillScreen(peer);
  }
}

/** Loads older pages until the conversation fills the screen (or has no more). */
function fillScreen(peer) {
  const el = $('messages');
  if (current === peer && el.scrollHeight <= el.clientHeight + 150) loadOlder();
}

async function loadOlder() {
  const peer = current;
  if (peer === null || loadingOlder || !store) return;
  const s = store;
  const d = s.detail(peer);
  if (d.complete || !d.fresh) return;
  const oldest = d.messages.find((m) => m.id);
  loadingOlder = true;
  conv.setHistoryState('loading');
  let page;
  let limit;
  try {
    ({ page, limit } = await fetchHistory(peer, oldest ? oldest.id : 0));
  } catch {
    loadingOlder = false;
    if (s === store && current === peer) conv.setHistoryState('error');
    return;
  }
  loadingOlder = false;
  if (s !== store || current !== peer) return;
  if (page.length < limit) d.complete = true;
  s.merge(peer, page);
  conv.render();
  conv.setHistoryState(d.complete ? 'complete' : 'idle');
  fillScreen(peer);
}

function markRead(peer) {
  if (!visible() || !store) return;
  clearTimeout(readTimers.get(peer));
  readTimers.delete(peer);
  const s = store;
  s.setNoRead(peer, 0);
  api
    .read(peer, clientId)
    .then((r) => {
      if (s === store && r && typeof r.total === 'number' && r.total !== s.total()) refreshUnread();
    })
    .catch(() => {});
}

function scheduleRead(peer) {
  clearTimeout(readTimers.get(peer));
  readTimers.set(
    peer,
    setTimeout(() => {
      readTimers.delete(peer);
      if (current === peer) markRead(peer);
    }, 150),
  );
}

async function refreshList() {
  const s = store;
  try {
    const [list, unread] = await Promise.all([api.list(), api.unread()]);
    if (s === store) s.setList(list, unread);
  } catch {
    /* next catch-up will fix it */
  }
}

async function refreshUnread() {
  const s = store;
  try {
    const u = await api.unread();
    if (s !== store) return;
    s.setUnreadCounts(u);
    const missing = (u.conversations || []).some((c) => c.noreadnum > 0 && !s.item(Number(c.userid)));
    if (missing) {
      const list = await api.list();
      if (s === store) s.setList(list, u);
    }
  } catch {
    /* next catch-up will fix it */
  }
}

document.addEventListener('visibilitychange', () => {
  if (!visible() || !store) return;
  if (socket) socket.reconnectNow();
  if (current !== null) {
    const item = store.item(current);
    if (item && item.noreadnum > 0) markRead(current);
  }
});
window.addEventListener('online', () => socket && socket.reconnectNow());

// ---- online: catch up ---------------------------------------------------------

function unreadFor(m) {
  return m.from_id !== store.uid && !(peerOf(m, store.uid) === current && visible());
}

function onOnline(cid) {
  clientId = cid;
  everOnline = true;
  stopMessage = '';
  catchUp();
}

function onOffline() {
  clientId = null;
  catchingUp = null;
  clearTimeout(gapTimer);
  gapTimer = 0;
}

/**
 * Syncs by cursors until no conversation says `more`: merges what came into
 * the cached conversations, moves the cursors, and updates the list's
 * previews. Too much missed (SYNC_MAX_PAGES pages) to patch the caches:
 * they are dropped (the server has everything) and the cursors start from
 * the list. Resolves to false when the store changed (signed out) meanwhile.
 */
async function syncCursors(s) {
  let unknown = false;
  for (let pages = 0; ; pages++) {
    if (pages >= SYNC_MAX_PAGES) {
      s.dropDetailCaches();
      for (const peer of [...s.details.keys()]) if (peer !== current) s.details.delete(peer);
      if (current !== null) s.resetDetail(current);
      const list = await api.list();
      if (s !== store) return false;
      s.setList(list, null);
      s.cursorsFromList();
      if (current !== null) refreshNewest(current);
      break;
    }
    const res = await api.syncCursors(s.cursorsFor());
    if (s !== store) return false;
    let more = false;
    for (const c of res.conversations || []) {
      const peer = Number(c.userid);
      const msgs = Array.isArray(c.messages) ? c.messages : [];
      more ||= c.more === true;
      if (!msgs.length) continue;
      if (s.hasDetail(peer)) s.merge(peer, msgs);
      s.learnLastAuthors(msgs);
      // Newer than the list: the preview, and counted as unread (bump skips what the list has).
      if (!s.item(peer)) unknown = true;
      else for (const m of msgs) s.bump(m, { unread: unreadFor(m) });
      s.setCursor(peer, msgs[msgs.length - 1].seq);
    }
    if (!more) break;
  }
  // A conversation the list does not have yet: its name and counts.
  if (unknown) await refreshList();
  return s === store;
}

/** Fetches what was missed while offline: the list, the unread counts, the messages. */
async function catchUp() {
  const s = store;
  const pushed = [];
  catchingUp = pushed;
  try {
    const [list, unread] = await Promise.all([api.list(), api.unread()]);
    if (s !== store) return;
    s.setList(list, unread);
    // Pushes that raced the list: bump() ignores what the list already has.
    for (const m of pushed) s.bump(m, { unread: unreadFor(m) });
    s.seedCursors();
    if (!(await syncCursors(s))) return;
  } catch (e) {
    if (s === store && catchingUp === pushed) {
      catchingUp = null;
      if (!e.network && e.status !== 401) toast(e.message);
    }
    return;
  }
  if (catchingUp === pushed) catchingUp = null;
  // Pushed meanwhile: most are in what the sync answered; a later one moves a cursor on.
  let gap = false;
  for (const m of pushed) gap = s.noteSeq(peerOf(m, s.uid), m.seq) || gap;
  if (gap) scheduleGapSync();
  if (current !== null) {
    const item = s.item(current);
    if (item && item.noreadnum > 0) markRead(current);
  }
  flushPending();
}

let gapTimer = 0;
let gapSyncing = false;

let gapRetries = 0;

/** Notes a stored message's seq (push, ack, HTTP answer); a hole before it starts a sync. */
function noteSeq(m) {
  if (!store) return;
  if (catchingUp) {
    catchingUp.push(m); // the catch-up notes it once its sync is in
    return;
  }
  if (store.noteSeq(peerOf(m, store.uid), m.seq)) {
    gapRetries = 0;
    scheduleGapSync();
  }
}

function scheduleGapSync() {
  if (gapTimer || gapSyncing) return;
  gapTimer = setTimeout(syncGaps, GAP_WAIT_MS * 2 ** Math.min(gapRetries, 6));
}

/** Syncs while some conversation has a hole: fetches exactly what came after each cursor. */
async function syncGaps() {
  gapTimer = 0;
  const s = store;
  if (!s || catchingUp || !socket || !socket.online || !s.hasGaps()) return;
  gapSyncing = true;
  try {
    if (!(await syncCursors(s))) return;
  } catch {
    /* the next message or reconnect tries again */
  } finally {
    gapSyncing = false;
  }
  if (s !== store) return;
  // A hole that opened meanwhile (or that the answer, read just before a commit, did not cover).
  if (s.hasGaps() && gapRetries < 5) {
    gapRetries += 1;
    scheduleGapSync();
  }
  // Messages that were missed were not counted as unread.
  refreshUnread();
  if (current !== null && visible()) {
    const item = s.item(current);
    if (item && item.noreadnum > 0) scheduleRead(current);
  }
}

// ---- pushes ---------------------------------------------------------------------

function onMessage(msg) {
  if (!store) return;
  switch (msg.type) {
    case 'message':
      incoming(msg.message);
      break;
    case 'ack':
      acked(msg);
      break;
    case 'error':
      socketError(msg);
      break;
    case 'read': {
      // Another device of ours read a conversation.
      const peer = Number(msg.userid);
      store.setNoRead(peer, 0);
      if (typeof msg.total === 'number' && msg.total !== store.total()) refreshUnread();
      break;
    }
    case 'receipt':
      store.setReceipt(Number(msg.userid), Number(msg.last_read_id));
      break;
    case 'event':
      peerEvent(msg);
      break;
    default:
      break;
  }
}

function incoming(m) {
  if (!m || typeof m !== 'object' || !Number.isSafeInteger(m.id)) return;
  const s = store;
  const peer = peerOf(m, s.uid);
  if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
  const known = !!s.item(peer) || !!s.users[peer];
  s.merge(peer, [m]);
  s.bump(m, { unread: unreadFor(m) });
  // Sent by another device of ours to someone this one has not seen: get their name.
  if (!known && m.from_id === s.uid) refreshList();
  if (m.client_msg_id && m.from_id === s.uid) clearSendTimer(m.client_msg_id);
  noteSeq(m);
  if (m.from_id === peer) setTyping(peer, false);
  if (peer === current && m.from_id === peer && visible()) scheduleRead(peer);
}

function acked(msg) {
  const m = msg.message;
  if (!m || !Number.isSafeInteger(m.id)) return;
  clearSendTimer(m.client_msg_id);
  const peer = peerOf(m, store.uid);
  store.merge(peer, [m]);
  store.bump(m);
  noteSeq(m);
}

function socketError(msg) {
  if (msg.op === 'send' && typeof msg.client_msg_id === 'string') {
    const f = store.findPending(msg.client_msg_id);
    if (f) markFailed(f.peer, msg.client_msg_id, msg.msg || 'Not sent', msg.code === 'internal' || msg.code === 'rate_limited' || msg.code === 'not_bound');
    if (msg.code === 'not_bound' && socket && socket.ws) socket.drop(socket.ws, 4003, 'not bound');
  }
}

function peerEvent(msg) {
  const from = Number(msg.from_id);
  const data = msg.data;
  if (!Number.isSafeInteger(from) || !data || typeof data !== 'object') return;
  if ('typing' in data) setTyping(from, data.typing === true);
}

function setTyping(peer, on) {
  clearTimeout(typingTimers.get(peer));
  typingTimers.delete(peer);
  const was = typingUntil.has(peer);
  if (on) {
    typingUntil.set(peer, Date.now() + TYPING_SHOWN_MS);
    typingTimers.set(
      peer,
      setTimeout(() => setTyping(peer, false), TYPING_SHOWN_MS),
    );
  } else {
    typingUntil.delete(peer);
  }
  if (peer === current) conv.setTyping(on);
  if (was !== on) scheduleListRender();
}

// ---- sending ----------------------------------------------------------------------

function typingChanged(active) {
  if (current === null || !socket) return;
  const now = Date.now();
  if (active) {
    if (now - lastTypingSent >= TYPING_EVERY_MS && socket.send({ type: 'event', to_id: current, data: { typing: true } })) {
      lastTypingSent = now;
      typingPeer = current;
    }
  } else {
    stopTyping();
  }
}

function stopTyping() {
  if (lastTypingSent && typingPeer !== null && socket) socket.send({ type: 'event', to_id: typingPeer, data: { typing: false } });
  lastTypingSent = 0;
  typingPeer = null;
}

function sendMessage(type, data) {
  if (current === null || !store) return false;
  if (bytes(data) > MAX_TEXT_BYTES) {
    toast(`This message is too long: ${MAX_TEXT_BYTES} bytes at most.`);
    return false;
  }
  const peer = current;
  const me = session.user;
  const m = {
    id: 0,
    client_msg_id: uuid(),
    from_id: me.id,
    to_id: peer,
    from_username: me.username,
    from_userpic: me.userpic || '',
    type,
    data,
    time: Date.now(),
    state: 'sending',
    retryable: true,
  };
  conv.stick = true;
  store.addPending(peer, m);
  store.bump(m);
  transmit(peer, m);
  return true;
}

function retryMessage(peer, cmid) {
  const m = store && store.pending(peer, cmid);
  if (m) transmit(peer, m);
}

/** Sends (again) one of our pending messages: over the socket, or over HTTP when it is down. */
function transmit(peer, m) {
  const s = store;
  const cmid = m.client_msg_id;
  s.updatePending(peer, cmid, { state: 'sending', error: '', retryable: true });
  clearSendTimer(cmid);
  sendTimers.set(
    cmid,
    setTimeout(() => {
      sendTimers.delete(cmid);
      const p = s === store && s.pending(peer, cmid);
      if (p && p.state === 'sending') markFailed(peer, cmid, 'No answer from the server', true);
    }, SEND_TIMEOUT_MS),
  );
  const body = { to_id: peer, type: m.type, data: m.data, client_msg_id: cmid };
  if (socket && socket.send({ type: 'send', message: body })) return;
  // The socket is down: try HTTP (same client_msg_id, so never stored twice).
  api
    .send(body)
    .then((stored) => {
      if (s !== store) return;
      clearSendTimer(cmid);
      s.merge(peer, [stored]);
      s.bump(stored);
      noteSeq(stored);
    })
    .catch((e) => {
      if (s !== store) return;
      // Unreachable: stays "sending" and goes out again when we are back online.
      if (!e.network) markFailed(peer, cmid, e.message, e.status >= 500 || e.status === 429);
    });
}

function clearSendTimer(cmid) {
  if (!cmid) return;
  clearTimeout(sendTimers.get(cmid));
  sendTimers.delete(cmid);
}

function markFailed(peer, cmid, error, retryable) {
  clearSendTimer(cmid);
  store.updatePending(peer, cmid, { state: 'failed', error, retryable });
}

/** After (re)connecting: sends what is still on its way, and what failed for want of a connection. */
function flushPending() {
  if (!store) return;
  for (const peer of store.cachedPeers()) {
    for (const m of store.pendingIn(peer)) {
      if (m.state === 'sending' || m.retryable) transmit(peer, m);
    }
  }
}

// ---- start ------------------------------------------------------------------------

const saved = loadSession();
if (saved) startSession(saved);
route();
