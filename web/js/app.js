// app.js: the controller. Signs in, keeps the socket (socket.js) online,
// applies what the server pushes to the store (store.js), and drives the
// views. The flow follows the reference client: open the WebSocket, wait for
// init, POST /chat/bind (its client_id and bind_nonce); when bound go online,
// set the badge and fetch what was missed (/chat/list, /chat/unread, then
// POST /chat/sync with a cursor per conversation). Every stored message has
// seq, its place in its conversation: a pushed message whose seq is not the
// next one shows a push was missed, and the conversations are synced again.
// Groups go the same way under their conversation key (minus the group id,
// store.js); a group's system message makes the page fetch the list and the
// group's members again. Presence pushes move the online dots.
import { api, ApiError, onUnauthorized, setToken } from './api.js';
import { avatar, toast, uuid } from './dom.js';
import { badgeText, preview, typingText } from './format.js';
import { applyDocument, errText, onLangChange, t } from './i18n.js';
import { notify, setupNotifyPrompt } from './notify.js';
import { ChatSocket, socketUrl } from './socket.js';
import { ChatStore, SESSION_KEY, clearSession, loadSession, peerOf, saveSession, systemData } from './store.js';
import { setupAuth } from './views/auth.js';
import { ConversationView } from './views/conversation.js';
import { setupMembers, setupNewGroup } from './views/group.js';
import { renderList } from './views/list.js';
import { setupProfile } from './views/profile.js';
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
let current = null; // the open conversation's key (a peer's id, or minus a group's id)
let catchingUp = null; // messages pushed while catching up, or null
let everOnline = false;
let loadingOlder = false;
let lastTypingSent = 0;
let typingPeer = null;
const typingNow = new Map(); // conversation key -> Map(user id -> timer): who is typing there
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
    sub: $('conv-sub'),
    membersBtn: $('conv-members-btn'),
    notice: $('conv-notice'),
  },
  { send: sendMessage, retry: retryMessage, loadOlder, typing: typingChanged },
);

const notifyPrompt = setupNotifyPrompt($('chat-list'));

const newGroup = setupNewGroup($('group-dialog'), { create: createGroup, me: () => (session ? session.user.id : 0) });
$('new-group').addEventListener('click', () => session && newGroup.open());

const members = setupMembers($('members-panel'), {
  add: (ids) => groupCall(current, (gid) => api.groupAdd(gid, ids)),
  remove: (uid) => groupCall(current, (gid) => api.groupRemove(gid, uid)),
  role: (uid, role) => groupCall(current, (gid) => api.groupRole(gid, uid, role)),
  leave: () => groupCall(current, (gid) => api.groupLeave(gid)),
  rename: (name) => groupCall(current, (gid) => api.groupUpdate(gid, { name })),
  dissolve: () => groupCall(current, (gid) => api.groupDissolve(gid)),
  mute: async (muted) => {
    const key = current;
    const r = await api.groupMute(-key, muted);
    if (store) {
      store.patchItem(key, { muted: !!r.muted });
      if (typeof r.total === 'number' && r.total !== store.total()) refreshUnread();
    }
  },
});
$('conv-members-btn').addEventListener('click', () => {
  if (current === null || current > 0) return;
  if (members.open) members.hide();
  else {
    members.show(store, current);
    refreshGroupInfo(current);
  }
});

let listQueued = false;
function scheduleListRender() {
  if (listQueued) return;
  listQueued = true;
  // A microtask, not requestAnimationFrame: a hidden tab must keep its title right.
  queueMicrotask(() => {
    listQueued = false;
    if (!store) return;
    renderList($('chat-list'), store, { current, typing: typingTexts() });
    $('chats-empty').hidden = store.list.length > 0;
    updateBadge();
    if (current !== null && current < 0) conv.renderHeader(); // a group's name, members, left
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
  badge.setAttribute('aria-label', t('badge.unread', { count: total }));
  document.title = total > 0 ? `(${badgeText(total)}) chatd` : 'chatd';
}

function renderMe() {
  if (!session) return;
  $('me-avatar').replaceChildren(avatar(session.user, 'lg'));
  $('me-name').textContent = session.user.username;
  $('me-id').textContent = t('me.user_id', { id: session.user.id });
  profile.render();
}

// The "Me" tab's picture and password (views/profile.js).
const profile = setupProfile($('me-profile'), { user: () => session && session.user, clientId: () => clientId, changed: userChanged });

/** Our user changed (its picture): here, or on another device ({"type":"profile"} push). */
function userChanged(user) {
  if (!session || !user || Number(user.id) !== session.user.id) return;
  session.user = { ...session.user, userpic: typeof user.userpic === 'string' ? user.userpic : '' };
  saveSession(session);
  renderMe();
}

// ---- connection state ---------------------------------------------------------

let countdownTimer = 0;
let shownConn = ['stopped', {}]; // worded again when the language changes
function showConnection(state, info = {}) {
  shownConn = [state, info];
  const root = document.documentElement;
  const conn = state === 'online' ? 'online' : state === 'waiting' || state === 'stopped' ? 'offline' : 'connecting';
  root.dataset.conn = conn;
  const dot = $('conn-dot');
  dot.className = `conn-dot ${conn}`;
  dot.title = t(conn === 'online' ? 'conn.online' : conn === 'offline' ? 'conn.offline' : 'conn.connecting');
  $('me-conn').textContent = t(conn === 'online' ? 'conn.online' : conn === 'offline' ? 'conn.offline' : 'conn.connecting_text');
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
      if (navigator.onLine === false) text.textContent = t('conn.no_network');
      else text.textContent = s > 0 ? t('conn.reconnect_in', { s }) : t('conn.reconnecting');
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
    $('conn-retry').hidden = false;
    banner.hidden = false;
  } else if (state === 'stopped') {
    text.textContent = info.message ? t('conn.disconnected_why', { msg: info.message }) : t('conn.disconnected');
    $('conn-retry').hidden = false;
    banner.hidden = false;
  } else {
    text.textContent = t('conn.connecting_text');
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
    else if (what === 'presence') {
      // peer: a user id. The list's dots, the 1:1 header, the members panel.
      scheduleListRender();
      if (current === peer) conv.renderHeader();
      if (current !== null && current < 0) members.render();
    } else if (what === 'group' && peer === current) {
      conv.renderHeader();
      members.render();
    }
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
      stopMessage = errText(e);
    }
    // The reference client shows the server's message and closes.
    if (!e.network && e.status !== 401) toast(errText(e));
    throw e;
  }
  if (!(res && res.status && res.type === 'bind')) {
    toast(t('conn.bind_failed'));
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
  for (const who of typingNow.values()) for (const t of who.values()) clearTimeout(t);
  typingNow.clear();
  members.hide();
  profile.reset();
  if ($('group-dialog').open) $('group-dialog').close();
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

onUnauthorized(() => signOut({ remote: false, message: t('err.revoked') }));
$('sign-out').addEventListener('click', () => signOut());

// Another tab signed out, or in as someone else.
window.addEventListener('storage', (e) => {
  if (e.key !== SESSION_KEY && e.key !== null) return;
  const next = loadSession();
  if (!next && session) signOut({ remote: false });
  else if (next && (!session || next.user.id !== session.user.id)) location.reload();
});

// ---- routing --------------------------------------------------------------------

const TAB_TITLES = { chats: 'nav.chats', find: 'title.find', me: 'nav.me' }; // i18n keys

function parseRoute() {
  const [name, arg] = location.hash.replace(/^#\/?/, '').split('/');
  if (name === 'chat' && /^\d{1,15}$/.test(arg || '')) return { name, peer: Number(arg) };
  if (name === 'group' && /^[1-9]\d{0,14}$/.test(arg || '')) return { name: 'chat', peer: -Number(arg) };
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
  $('panel-title').textContent = t(TAB_TITLES[tab]);
  $('shell').dataset.view = r.name === 'chat' ? 'conversation' : 'list';
  if (r.name === 'chat') openConversation(r.peer);
  else closeConversation();
  if (r.name === 'find' && !matchMedia('(pointer: coarse)').matches) search.focus();
}

window.addEventListener('hashchange', route);

// ---- conversations ------------------------------------------------------------

function openConversation(peer) {
  if (current !== null && current !== peer) {
    stopTyping();
    members.hide();
  }
  current = peer;
  $('placeholder').hidden = true;
  $('conversation').hidden = false;
  const changed = conv.open(store, peer);
  conv.setTyping(typingTexts().get(peer) || '');
  scheduleListRender();
  if (!changed) return;
  if (peer < 0) refreshGroupInfo(peer);
  loadingOlder = false;
  const d = store.detail(peer);
  d.fresh = false;
  const item = store.item(peer);
  if (item && item.noreadnum > 0) conv.markUnread(item.noreadnum, item.last_message_id);
  if (d.complete) conv.setHistoryState('complete');
  markRead(peer);
  refreshNewest(peer);
  if (!matchMedia('(pointer: coarse)').matches) conv.focusInput();
}

function closeConversation() {
  if (current === null) return;
  stopTyping();
  members.hide();
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
  for (const m of page) if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
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

const listWaiters = new Set(); // per /chat/list on its way: the messages that arrived meanwhile

async function refreshList() {
  const s = store;
  const arrived = [];
  listWaiters.add(arrived);
  try {
    const [list, unread] = await Promise.all([api.list(), api.unread()]);
    if (s !== store) return;
    s.setList(list, unread);
    // The answer may have been read before these were stored (a PostgreSQL reader runs
    // beside the writer): bump() puts back what the list does not have yet.
    for (const m of arrived) s.bump(m, { unread: unreadFor(m) });
    // Its two answers may disagree about those (two reads): counts read after they came are right.
    if (arrived.length) refreshUnread();
  } catch {
    /* next catch-up will fix it */
  } finally {
    listWaiters.delete(arrived);
  }
}

async function refreshUnread() {
  const s = store;
  try {
    const u = await api.unread();
    if (s !== store) return;
    s.setUnreadCounts(u);
    const missing =
      (u.conversations || []).some((c) => c.noreadnum > 0 && !s.item(Number(c.userid))) ||
      (u.groups || []).some((g) => g.noreadnum > 0 && !s.item(-Number(g.group_id)));
    if (missing) {
      const list = await api.list();
      if (s === store) s.setList(list, u);
    }
  } catch {
    /* next catch-up will fix it */
  }
}

document.addEventListener('visibilitychange', () => {
  if (visible()) notifyPrompt.update(); // the permission may have changed in the browser's settings
  if (!visible() || !store) return;
  if (socket) {
    socket.reconnectNow();
    socket.probe(1000); // still there after the tab slept?
  }
  if (current !== null) {
    const item = store.item(current);
    if (item && item.noreadnum > 0) markRead(current);
  }
});
window.addEventListener('online', () => socket && socket.reconnectNow());
window.addEventListener('offline', () => socket && socket.networkLost());

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
      const peer = c.group_id ? -Number(c.group_id) : Number(c.userid);
      const msgs = Array.isArray(c.messages) ? c.messages : [];
      more ||= c.more === true;
      if (!msgs.length) continue;
      for (const m of msgs) if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
      if (s.hasDetail(peer)) s.merge(peer, msgs);
      s.learnLastAuthors(msgs);
      // A group changed (members, name, roles): the list and its members again.
      if (peer < 0 && msgs.some((m) => m.type === 'system')) {
        unknown = true;
        if (peer === current) refreshGroupInfo(peer);
      }
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
      if (!e.network && e.status !== 401) toast(errText(e));
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
    if (current < 0) refreshGroupInfo(current); // members and their presence may have changed meanwhile
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
    case 'profile':
      userChanged(msg.user);
      break;
    case 'read': {
      // Another device of ours read a conversation.
      const peer = msg.group_id ? -Number(msg.group_id) : Number(msg.userid);
      store.setNoRead(peer, 0);
      if (typeof msg.total === 'number' && msg.total !== store.total()) refreshUnread();
      break;
    }
    case 'mute': {
      // Another device of ours muted or unmuted a group.
      const peer = -Number(msg.group_id);
      store.patchItem(peer, { muted: msg.muted === true });
      if (peer === current) members.render();
      if (typeof msg.total === 'number' && msg.total !== store.total()) refreshUnread();
      break;
    }
    case 'presence': {
      const uid = Number(msg.uid);
      store.setPresence(uid, msg.online === true, msg.last_seen);
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
  const known = !!s.item(peer);
  if (peer < 0 && !known && !s.hasCursor(peer) && m.seq > 1) {
    // Added to a group: what came before is not ours to see; the cursor starts here, not at 0.
    const d = systemData(m);
    if (d && d.event === 'add' && Array.isArray(d.users) && d.users.some((u) => u && Number(u.userid) === s.uid)) s.setCursor(peer, m.seq - 1);
  }
  s.merge(peer, [m]);
  s.bump(m, { unread: unreadFor(m) });
  for (const w of listWaiters) w.push(m);
  // A conversation this page did not know (sent by another device of ours, a new peer, a
  // group we were just added to): the list has its name and the peer's presence.
  if (!known) refreshList();
  else if (peer < 0 && m.type === 'system') groupChanged(peer, m);
  if (m.client_msg_id && m.from_id === s.uid) clearSendTimer(m.client_msg_id);
  noteSeq(m);
  if (m.from_id !== s.uid) setTyping(peer, m.from_id, false);
  if (peer === current && m.from_id !== s.uid && visible()) scheduleRead(peer);
  if (m.from_id !== s.uid && !visible()) notifyIncoming(peer, m);
}

/** A desktop notification of a message that came while the page is hidden (not for a muted group). */
function notifyIncoming(peer, m) {
  const item = store.item(peer);
  if (m.type === 'system' || (item && item.muted)) return;
  const sender = m.from_username || store.user(m.from_id).username;
  const text = preview(m.type, m.data);
  const title = peer < 0 ? store.user(peer).username : sender;
  notify(title, peer < 0 ? t('preview.sender', { name: sender, text }) : text, `chatd-${store.uid}-${peer}`, () => {
    location.hash = peer < 0 ? `#/group/${-peer}` : `#/chat/${peer}`;
  });
}

/**
 * A group's system message arrived: what it says about us shows at once
 * (removed, left, added back, dissolved, renamed); then the list and, when
 * the group is open, its members are fetched again.
 */
function groupChanged(peer, m) {
  const d = systemData(m);
  if (d) {
    const me = store.uid;
    const aboutMe = Array.isArray(d.users) && d.users.some((u) => u && Number(u.userid) === me);
    if ((d.event === 'remove' || d.event === 'leave') && (aboutMe || (d.event === 'leave' && Number(d.actor) === me))) store.patchItem(peer, { left: true });
    else if ((d.event === 'add' || d.event === 'create') && aboutMe) store.patchItem(peer, { left: false });
    else if (d.event === 'dissolve') store.patchItem(peer, { dissolved: true });
    if (d.event === 'update' && typeof d.name === 'string' && d.name) store.patchItem(peer, { username: d.name });
    if (peer === current) conv.renderHeader();
  }
  refreshList();
  if (peer === current) refreshGroupInfo(peer);
}

/** GET the group's members and roles (a member who left gets the group, members []). */
async function refreshGroupInfo(peer) {
  const s = store;
  try {
    const info = await api.groupInfo(-peer);
    if (s === store) s.setGroupInfo(info);
  } catch (e) {
    if (s === store && peer === current && !e.network) conv.renderHeader();
  }
}

/** Creates a group and opens it. */
async function createGroup(name, ids) {
  const s = store;
  const r = await api.groupCreate(name, ids);
  if (s !== store) return;
  const gid = Number(r.group.group_id);
  applyGroupAnswer(-gid, r);
  location.hash = `#/group/${gid}`;
}

/** Runs a group change for the conversation key; its answer's system message shows at once. */
async function groupCall(peer, fn) {
  if (peer === null || peer > 0 || !store) return;
  const s = store;
  const r = await fn(-peer);
  if (s !== store) return;
  applyGroupAnswer(peer, r);
}

function applyGroupAnswer(peer, r) {
  const s = store;
  const m = r && r.message;
  if (m && Number.isSafeInteger(m.id)) {
    s.merge(peer, [m]);
    s.bump(m);
    const g = r.group;
    if (g && typeof g.name === 'string') {
      const patch = { username: g.name, userpic: g.avatar || '', dissolved: !!g.dissolved };
      if (g.member_count) patch.member_count = Number(g.member_count);
      if (Number(g.owner_id) === s.uid) patch.role = 'owner';
      s.patchItem(peer, patch);
    }
    noteSeq(m);
    groupChanged(peer, m);
  } else {
    refreshList();
    refreshGroupInfo(peer);
  }
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

// The server ended this session (its token): the socket closes next.
const SESSION_ENDED = {
  password_changed: 'err.password_changed',
  revoked: 'err.revoked',
  account_disabled: 'err.account_disabled',
};

function socketError(msg) {
  if (Object.hasOwn(SESSION_ENDED, msg.code)) {
    signOut({ remote: false, message: t(SESSION_ENDED[msg.code]) });
    return;
  }
  if (msg.op === 'send' && typeof msg.client_msg_id === 'string') {
    const f = store.findPending(msg.client_msg_id);
    if (f) markFailed(f.peer, msg.client_msg_id, msg.code || msg.msg ? errText(msg) : t('conv.not_sent'), msg.code === 'internal' || msg.code === 'rate_limited' || msg.code === 'not_bound');
    if (msg.code === 'not_bound' && socket && socket.ws) socket.drop(socket.ws, 4003, 'not bound');
  }
}

function peerEvent(msg) {
  const from = Number(msg.from_id);
  const data = msg.data;
  if (!Number.isSafeInteger(from) || !data || typeof data !== 'object') return;
  const gid = Number(msg.group_id);
  const peer = Number.isSafeInteger(gid) && gid > 0 ? -gid : from;
  if ('typing' in data) setTyping(peer, from, data.typing === true);
}

/** User uid is (or stops) typing in the conversation peer (a 1:1 peer types in its own). */
function setTyping(peer, uid, on) {
  let who = typingNow.get(peer);
  const was = !!who && who.has(uid);
  if (who) clearTimeout(who.get(uid));
  if (on) {
    if (!who) typingNow.set(peer, (who = new Map()));
    who.set(
      uid,
      setTimeout(() => setTyping(peer, uid, false), TYPING_SHOWN_MS),
    );
  } else if (who) {
    who.delete(uid);
    if (!who.size) typingNow.delete(peer);
  }
  if (peer === current) conv.setTyping(typingTexts().get(peer) || '');
  if (was !== on) scheduleListRender();
}

/** What to show per conversation where someone types: "typing…" (1:1), "alice is typing…" (group). */
function typingTexts() {
  const out = new Map();
  for (const [peer, who] of typingNow) {
    if (!who.size) continue;
    out.set(peer, peer > 0 ? t('typing.peer') : typingText([...who.keys()].map((uid) => store.user(uid).username)));
  }
  return out;
}

/** The socket's target of a conversation: {to_id} or {group_id}. */
function target(peer) {
  return peer < 0 ? { group_id: -peer } : { to_id: peer };
}

// ---- sending ----------------------------------------------------------------------

function typingChanged(active) {
  if (current === null || !socket) return;
  const now = Date.now();
  if (active) {
    if (now - lastTypingSent >= TYPING_EVERY_MS && socket.send({ type: 'event', ...target(current), data: { typing: true } })) {
      lastTypingSent = now;
      typingPeer = current;
    }
  } else {
    stopTyping();
  }
}

function stopTyping() {
  if (lastTypingSent && typingPeer !== null && socket) socket.send({ type: 'event', ...target(typingPeer), data: { typing: false } });
  lastTypingSent = 0;
  typingPeer = null;
}

function sendMessage(type, data) {
  if (current === null || !store) return false;
  if (bytes(data) > MAX_TEXT_BYTES) {
    toast(t('conv.too_long', { max: MAX_TEXT_BYTES }));
    return false;
  }
  const peer = current;
  const me = session.user;
  const m = {
    id: 0,
    client_msg_id: uuid(),
    from_id: me.id,
    ...(peer < 0 ? { to_id: 0, group_id: -peer } : { to_id: peer }),
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
      if (p && p.state === 'sending') markFailed(peer, cmid, t('conv.no_answer'), true);
    }, SEND_TIMEOUT_MS),
  );
  const body = { ...target(peer), type: m.type, data: m.data, client_msg_id: cmid };
  if (socket && socket.send({ type: 'send', message: body })) {
    socket.probe(1000); // a dead connection shows in seconds, not after SEND_TIMEOUT_MS
    return;
  }
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
      if (!e.network) markFailed(peer, cmid, errText(e), e.status >= 500 || e.status === 429);
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

// The static page in the browser's (or the chosen) language; a change in the Me tab words
// everything again without a reload (the views that keep their own words listen themselves).
applyDocument();
onLangChange(() => {
  renderMe();
  updateBadge();
  scheduleListRender();
  showConnection(...shownConn);
  route();
});

const saved = loadSession();
if (saved) startSession(saved);
route();
