// app.js: the controller. Signs in, keeps the chat client (chat.js: the SDK
// served at /sdk/, docs/SDK.md) online and drives the views from what it
// tells. The SDK does the protocol: the socket with reconnection and the
// heartbeat, bind (POST /chat/bind with the socket's client_id and
// bind_nonce), the catch-up after each (re)connect (/chat/list, /chat/unread,
// POST /chat/sync with a seq cursor per conversation), the sync when a pushed
// seq leaves a hole, sending with acks and retry, read, typing, presence,
// groups, recall and delete-for-me (a recall notice marks its message
// recalled; the "deleted" push and the catch-up sync's deleted_after hide what
// another device deleted for us), and the cache in localStorage under the
// reference client's keys. This file keeps the session, the routes, the
// connection banner, the badge and title, desktop notifications and the views
// (views/menu.js's Recall and Delete call the client).
import { client } from './chat.js';
import { avatar, toast } from './dom.js';
import { badgeText, preview, typingText } from './format.js';
import { applyDocument, errText, onLangChange, t } from './i18n.js';
import { notify, setupNotifyPrompt } from './notify.js';
import { setupAuth } from './views/auth.js';
import { ConversationView } from './views/conversation.js';
import { setupMembers, setupNewGroup } from './views/group.js';
import { renderList } from './views/list.js';
import { setupProfile } from './views/profile.js';
import { setupSearch } from './views/search.js';

const MAX_TEXT_BYTES = 4096;
const SESSION_KEY = 'chatd_session'; // {token, user} of the signed-in user, shared by the tabs

const $ = (id) => document.getElementById(id);
const bytes = (s) => new TextEncoder().encode(s).length;
const visible = () => document.visibilityState !== 'hidden';

/** @type {{token: string, user: {id: number, username: string, userpic: string}} | null} */
let session = null;
/** The SDK's state of the signed-in user (chat list, conversations, presence, groups), or null. */
let store = null;
let current = null; // the open conversation's key (a peer's id, or minus a group's id)
let everOnline = false;
let loadingOlder = false;

function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (s && typeof s.token === 'string' && s.user && Number.isSafeInteger(s.user.id)) return s;
  } catch {
    /* none or broken */
  }
  return null;
}

const saveSession = (s) => localStorage.setItem(SESSION_KEY, JSON.stringify(s));
const clearSession = () => localStorage.removeItem(SESSION_KEY);

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
  {
    send: sendMessage,
    retry: (peer, cmid) => client.retry(peer, cmid).catch(() => {}), // a failure shows on the message
    loadOlder,
    typing: (active) => current !== null && client.typing(current, active),
    recall: (m) => client.recall(m.id),
    deleteForMe: (m) => client.deleteForMe([m.id]),
    config: () => client.serverConfig, // GET /chat/config's answer once known (null: no recall offered)
  },
);

const notifyPrompt = setupNotifyPrompt($('chat-list'));

const newGroup = setupNewGroup($('group-dialog'), { create: createGroup, me: () => (session ? session.user.id : 0) });
$('new-group').addEventListener('click', () => session && newGroup.open());

// The open group's members panel: each change goes through the SDK, which shows its system message.
const gid = () => (current !== null && current < 0 ? -current : 0);
const members = setupMembers($('members-panel'), {
  add: (ids) => client.addMembers(gid(), ids),
  remove: (uid) => client.removeMember(gid(), uid),
  role: (uid, role) => client.setRole(gid(), uid, role),
  leave: () => client.leaveGroup(gid()),
  rename: (name) => client.updateGroup(gid(), { name }),
  dissolve: () => client.dissolveGroup(gid()),
  mute: (muted) => client.muteGroup(gid(), muted),
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
const profile = setupProfile($('me-profile'), { user: () => session && session.user, clientId: () => client.clientId, changed: userChanged });

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

$('conn-retry').addEventListener('click', () => client.reconnectNow());

// ---- the client's events ----------------------------------------------------------

client.on('state', (state, info) => showConnection(state, { ...info, message: state === 'stopped' && info.error ? errText(info.error) : '' }));
client.on('online', () => {
  everOnline = true;
  client.config().catch(() => {}); // recall_window, max_upload: for the message menu and uploads
});
client.on('list', () => scheduleListRender());
client.on('detail', (key) => key === current && scheduleConvRender());
client.on('presence', (uid) => {
  // The list's dots, the 1:1 header, the members panel.
  scheduleListRender();
  if (current === uid) conv.renderHeader();
  if (current !== null && current < 0) members.render();
});
client.on('group', (key) => {
  if (key !== current) return;
  conv.renderHeader();
  members.render();
});
client.on('group_changed', (key) => key === current && conv.renderHeader());
client.on('mute', (key) => key === current && members.render());
client.on('typing', (key) => {
  if (key === current) conv.setTyping(typingTexts().get(key) || '');
  scheduleListRender();
});
client.on('message', (m, key) => {
  if (m.from_id !== client.uid && !visible()) notifyIncoming(key, m);
});
client.on('profile', (user) => userChanged(user));
// A failure with nobody to tell (a bind or a catch-up refused), worded by its code.
client.on('error', (e) => {
  if (e.network || e.status === 401 || e.op) return;
  toast(e.code === 'bind_failed' ? t('conn.bind_failed') : errText(e));
});

// The server ended this session (its token): back to sign in.
const SESSION_ENDED = {
  password_changed: 'err.password_changed',
  revoked: 'err.revoked',
  account_disabled: 'err.account_disabled',
  unauthorized: 'err.revoked',
};
client.on('session_ended', ({ code }) => signOut({ remote: false, message: t(SESSION_ENDED[code] || SESSION_ENDED.unauthorized) }));

/** What to show per conversation where someone types: "typing…" (1:1), "alice is typing…" (group). */
function typingTexts() {
  const out = new Map();
  for (const [peer, who] of client.typingAll()) {
    out.set(peer, peer > 0 ? t('typing.peer') : typingText(who.map((uid) => store.user(uid).username)));
  }
  return out;
}

// ---- session ------------------------------------------------------------------

function signedIn(sess) {
  saveSession(sess);
  startSession(sess);
  history.replaceState(null, '', '#/chats');
  route();
}

function startSession(sess) {
  session = sess;
  client.setSession(sess);
  store = client.store;
  renderMe();
  scheduleListRender();
  search.reset();
  client.connect().catch(() => {});
}

function signOut({ remote = true, message = '' } = {}) {
  if (!session) return;
  client.signOut({ remote }); // POST /user/logout, the socket closed, this user's cache removed
  session = null;
  store = null;
  current = null;
  everOnline = false;
  members.hide();
  profile.reset();
  conv.uploader.clear();
  if ($('group-dialog').open) $('group-dialog').close();
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
    client.close(); // stops our typing there
    members.hide();
  }
  current = peer;
  client.current = peer; // its messages are read, not counted unread, while the page is visible
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
  client.markRead(peer);
  refreshNewest(peer);
  if (!matchMedia('(pointer: coarse)').matches) conv.focusInput();
}

function closeConversation() {
  if (current === null) return;
  client.close();
  members.hide();
  current = null;
  conv.close();
  $('conversation').hidden = true;
  $('placeholder').hidden = false;
  scheduleListRender();
}

/** Fetches the newest page of a conversation (merged with the cache by the SDK). */
async function refreshNewest(peer) {
  const s = store;
  const d = s.detail(peer);
  if (!d.messages.some((m) => m.id) && current === peer) conv.setHistoryState('loading');
  try {
    await client.loadNewest(peer);
  } catch (e) {
    if (s === store && current === peer) conv.setHistoryState(e.network ? 'idle' : 'error');
    return;
  }
  if (s !== store || current !== peer) return;
  conv.renderHeader();
  conv.render();
  conv.setHistoryState(d.complete ? 'complete' : 'idle');
  fillScreen(peer);
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
  loadingOlder = true;
  conv.setHistoryState('loading');
  try {
    await client.loadOlder(peer);
  } catch {
    loadingOlder = false;
    if (s === store && current === peer) conv.setHistoryState('error');
    return;
  }
  loadingOlder = false;
  if (s !== store || current !== peer) return;
  conv.render();
  conv.setHistoryState(d.complete ? 'complete' : 'idle');
  fillScreen(peer);
}

document.addEventListener('visibilitychange', () => {
  // The permission may have changed in the browser's settings. (The client itself reconnects,
  // checks its socket and reads the open conversation when the page is shown.)
  if (visible()) notifyPrompt.update();
});

/** A desktop notification of a message that came while the page is hidden (not for a muted group). */
function notifyIncoming(peer, m) {
  const item = store.item(peer);
  if (m.type === 'system' || m.type === 'recall' || (item && item.muted)) return;
  const sender = m.from_username || store.user(m.from_id).username;
  const text = preview(m.type, m.data);
  const title = peer < 0 ? store.user(peer).username : sender;
  notify(title, peer < 0 ? t('preview.sender', { name: sender, text }) : text, `chatd-${store.uid}-${peer}`, () => {
    location.hash = peer < 0 ? `#/group/${-peer}` : `#/chat/${peer}`;
  });
}

/** GET the group's members and roles (a member who left gets the group, members []). */
async function refreshGroupInfo(peer) {
  const s = store;
  try {
    await client.groupInfo(-peer);
  } catch (e) {
    if (s === store && peer === current && !e.network) conv.renderHeader();
  }
}

/** Creates a group and opens it. */
async function createGroup(name, ids) {
  const s = store;
  const r = await client.createGroup(name, ids);
  if (s !== store) return;
  location.hash = `#/group/${Number(r.group.group_id)}`;
}

// ---- sending ----------------------------------------------------------------------

/** Sends a message to the open conversation (or peer): false when refused before sending. */
function sendMessage(type, data, extra = {}, peer = current) {
  if (peer === null || !store) return false;
  if (bytes(data) > MAX_TEXT_BYTES) {
    toast(t('conv.too_long', { max: MAX_TEXT_BYTES }));
    return false;
  }
  if (peer === current) conv.stick = true;
  // Shown at once as "sending"; a failure shows on the message (Retry), never as a rejection here.
  client.send(peer, type, data, extra.width && extra.height ? { width: extra.width, height: extra.height } : {}).catch(() => {});
  return true;
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
