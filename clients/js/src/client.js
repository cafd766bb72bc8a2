// client.js: ChatClient, the SDK's one object. It signs in (or takes a token),
// keeps the socket online (connection.js), applies what the server pushes to
// the state (store.js), and tells the app through events. The flow is the
// seed's: open the socket, wait for init, POST /chat/bind with its client_id
// and bind_nonce; when bound go online, set the badge and fetch what was
// missed (/chat/list, /chat/unread, then POST /chat/sync with a cursor per
// conversation). Every stored message has seq, its place in its conversation:
// a pushed message whose seq is not the next one shows a push was missed, and
// the conversations are synced again. Groups go the same way under their
// conversation key (minus the group id); a group's system message makes the
// client fetch the list (and the group's members when it is open) again.
//
// The class is in three files: this one (the session, the connection, the
// pushes, groups, users), client-sync.js (catching up, the seq cursors and
// gaps) and client-messages.js (conversations, typing, sending, recall and
// delete), whose methods are the class's own (defined on its prototype below).
//
// Nothing here touches a platform's globals: the socket, HTTP, uploads,
// storage, the badge and the platform's online/visibility events all come
// from the adapter (adapters/browser.js, adapters/uniapp.js).

import { Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { ChatError, CLIENT_CODES } from './errors.js';
import { Api } from './http.js';
import { messageMethods } from './client-messages.js';
import { syncMethods } from './client-sync.js';
import { ChatStore, peerOf, recallTarget, systemData } from './store.js';
import { conversationKey, DEFAULT_MAX_TEXT, handled } from './util.js';

export { conversationKey, groupKey } from './util.js';

const PAGE = 30; // history page (halved while the server's --page-limit is lower)

/**
 * Session-ending socket errors: the server closes the socket next. Not among them, logged_out
 * (the token was logged out, by another tab of this session or elsewhere): the socket closes,
 * and the bind of the reconnect gets its 401, which ends the session as any 401 does.
 */
const SESSION_ENDED_CODES = new Set(['password_changed', 'revoked', 'account_disabled']);

/**
 * @typedef {object} Adapter  what a platform gives the SDK (adapters/browser.js, adapters/uniapp.js)
 * @property {(url: string, h: import('./connection.js').SocketHandlers) => import('./connection.js').SocketLike} connect
 * @property {(r: import('./http.js').HttpRequest) => Promise<import('./http.js').HttpAnswer>} request
 * @property {(r: import('./http.js').UploadRequest) => Promise<import('./http.js').HttpAnswer>} [upload]
 * @property {import('./store.js').KeyValueStorage} [storage]
 * @property {(total: number) => void} [badge]  the unread total changed (a tab bar badge, a title)
 * @property {() => boolean} [isVisible]  whether the app is shown now
 * @property {(h: {online: () => void, offline: () => void, visibility: (visible: boolean) => void}) => (() => void)} [watch]
 *   subscribes to the platform's network and visibility events; returns the unsubscribe
 * @property {string} [baseUrl]  the default baseUrl (a browser page: its own origin)
 */

/**
 * @typedef {object} ChatClientOptions
 * @property {Adapter} adapter
 * @property {string} [baseUrl]  chatd's origin, "https://chat.example.com" ("" in a page served by chatd)
 * @property {string} [wsUrl]  default: baseUrl with ws(s): and the path "/ws"
 * @property {{token: string, user?: {id: number, username: string, userpic?: string}}} [session]
 * @property {Partial<import('./keys.js').StorageKeys>} [keys]  storage key functions (default: the seed's)
 * @property {number} [sendTimeoutMs]  an unacknowledged message fails after this (15000)
 * @property {number} [requestTimeoutMs]  (15000)
 * @property {number} [detailCap]  messages kept per conversation in storage (300)
 * @property {{user?: (id: number) => string, group?: (id: number) => string}} [names]
 *   what to call a user or group whose name is not known yet (default "User 5", "Group 7")
 * @property {(err: ChatError) => string} [errorText]  how a failed message's `error` is worded
 *   (default: the ChatError's message; the code is kept beside it as `code`)
 * @property {Partial<typeof import('./connection.js').DEFAULT_TIMING>} [timing]  backoff and ping timing
 */

export class ChatClient extends Emitter {
  /** @param {ChatClientOptions} o */
  constructor(o) {
    super();
    if (!o || !o.adapter) throw new TypeError('ChatClient needs an adapter');
    this.o = o;
    this.adapter = o.adapter;
    this.baseUrl = o.baseUrl !== undefined ? o.baseUrl : this.adapter.baseUrl || '';
    this.wsUrl = o.wsUrl || wsUrlOf(this.baseUrl);
    this.sendTimeoutMs = o.sendTimeoutMs || 15000;
    /** @type {{token: string, user: {id: number, username: string, userpic: string}} | null} */
    this.session = null;
    /** @type {ChatStore | null} */
    this.store = null;
    /** @type {Connection | null} */
    this.conn = null;
    this.clientId = null;
    /** The open conversation's key, or null: its messages do not count as unread while visible. */
    this.current = null;
    this.visibleNow = this.adapter.isVisible ? !!this.adapter.isVisible() : true;
    this.serverConfig = null;
    this.api = new Api({
      adapter: this.adapter,
      baseUrl: this.baseUrl,
      token: () => (this.session ? this.session.token : null),
      onUnauthorized: () => this.endSession('unauthorized', 'The session has ended'),
      timeoutMs: o.requestTimeoutMs || 15000,
    });
    this.reset();
    this.unwatch = null;
    /** The server refused the session (a 401, a bind refused, a session-ending socket error): no restart but connect(). */
    this.authStopped = false;
    this.connectWaiters = []; // connect() calls waiting for the bind and the catch-up
    if (o.session) this.setSession(o.session);
  }

  /** Per-session state back to its start. */
  reset() {
    this.catchingUp = null; // messages pushed while catching up, or null
    clearTimeout(this.gapTimer);
    this.gapTimer = 0;
    this.gapSyncing = false;
    this.gapRetries = 0;
    this.historyLimit = PAGE;
    this.lastTypingSent = 0;
    this.typingPeer = null;
    this.deletedUnsupported = false;
    if (this.typingNow) for (const who of this.typingNow.values()) for (const t of who.values()) clearTimeout(t);
    this.typingNow = new Map(); // conversation key -> Map(user id -> timer)
    if (this.sendTimers) for (const t of this.sendTimers.values()) clearTimeout(t);
    this.sendTimers = new Map(); // client_msg_id -> timer
    // Sends still waiting for their ack end with the session (their messages stay pending in storage).
    if (this.waiters) for (const w of this.waiters.values()) w.reject(new ChatError(CLIENT_CODES.CANCELLED, 'the session was closed'));
    this.waiters = new Map(); // client_msg_id -> {resolve, reject, promise}
    if (this.readTimers) for (const t of this.readTimers.values()) clearTimeout(t);
    this.readTimers = new Map();
    this.listWaiters = new Set();
    this.loading = new Map(); // conversation key -> history load on its way
  }

  // ---- session ------------------------------------------------------------------------

  get user() {
    return this.session ? this.session.user : null;
  }

  get uid() {
    return this.session && this.session.user ? this.session.user.id : 0;
  }

  get online() {
    return !!(this.conn && this.conn.online);
  }

  /** The connection's state: 'connecting' | 'binding' | 'online' | 'waiting' | 'stopped'. */
  get state() {
    return this.conn ? this.conn.state : 'stopped';
  }

  /** POST /user/login; keeps the session. Resolves to {token, user}. */
  async login(username, password) {
    const r = await this.api.login(username, password);
    this.setSession(r);
    return r;
  }

  /** POST /user/register; keeps the session. Resolves to {token, user}. */
  async register(username, password, userpic) {
    const r = await this.api.register(username, password, userpic);
    this.setSession(r);
    return r;
  }

  /**
   * Uses a token (a login token, or your site's JWT with --jwt-secret). Without
   * the user, connect() asks GET /user/me first.
   * @param {{token: string, user?: {id: number, username: string, userpic?: string}}} s
   */
  setSession(s) {
    if (!s || typeof s.token !== 'string' || !s.token) throw new TypeError('setSession needs {token}');
    const same = this.session && s.user && this.session.user && Number(s.user.id) === this.session.user.id;
    if (!same) this.closeSession();
    this.session = { token: s.token, user: s.user ? normalUser(s.user) : null };
    if (this.session.user && !this.store) this.openStore();
  }

  openStore() {
    const user = this.session.user;
    this.store = new ChatStore(user, { storage: this.adapter.storage, keys: this.o.keys, detailCap: this.o.detailCap, names: this.o.names });
    this.store.on((what, arg) => {
      if (what === 'total') {
        this.badge(arg);
        this.emit('total', arg);
      } else this.emit(what, arg);
    });
    // The seed's initTabbarBadge: the cached total until the server says.
    this.badge(this.store.total());
  }

  /**
   * Gives the adapter's badge the unread total again (uni-app: a tab bar badge set while a
   * page that is not a tab bar page was shown did not take; call it in tab bar pages' onShow).
   * Done for you when the app is shown again.
   */
  refreshBadge() {
    if (this.store) this.badge(this.store.total());
  }

  badge(total) {
    if (this.adapter.badge) {
      try {
        this.adapter.badge(total);
      } catch {
        /* the platform's badge is best effort */
      }
    }
  }

  /** Stops and forgets the session in memory (storage is kept: see signOut). */
  closeSession() {
    this.disconnect();
    this.reset();
    this.session = null;
    this.store = null;
    this.clientId = null;
    this.current = null;
  }

  /**
   * Signs out: POST /user/logout (remote), stops the socket and removes this
   * user's cache from storage (forget).
   */
  async signOut({ remote = true, forget = true } = {}) {
    if (!this.session) return;
    const store = this.store;
    const logout = remote ? this.api.logout().catch(() => {}) : null;
    this.closeSession();
    if (forget && store) store.forget();
    this.badge(0);
    if (logout) await logout;
  }

  /** The server ended the session (401, or a socket error such as revoked). */
  endSession(code, message) {
    if (!this.session) return;
    const err = new ChatError(code, message, { status: code === 'unauthorized' ? 401 : 0 });
    this.authStopped = true;
    if (this.conn) this.conn.stop({ error: err });
    this.settleConnect(err);
    this.emit('session_ended', { code, message });
  }

  /** Ends the connect() calls waiting: resolved (no error) once bound and caught up, or rejected. */
  settleConnect(err) {
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) {
      if (err) w.reject(err);
      else w.resolve();
    }
  }

  // ---- the connection ---------------------------------------------------------------------

  /**
   * Opens the socket (and keeps it open: reconnects with backoff until
   * disconnect()). Needs a session; fetches the user when the session has none.
   * Resolves once bound and caught up (the first `synced`; at once when it is
   * already); rejects when the server refuses the session (the bind's 401 or
   * 403: `unauthorized`, ...) or when disconnect() comes first (`cancelled`).
   * While the network is down it waits: the client retries by itself.
   */
  connect() {
    return handled(this.connectNow());
  }

  async connectNow() {
    if (!this.session) throw new ChatError(CLIENT_CODES.NOT_SIGNED_IN, 'no session: login() or setSession() first');
    if (!this.session.user) {
      const s = this.session;
      const me = await this.api.me();
      if (this.session !== s) throw new ChatError(CLIENT_CODES.CANCELLED, 'the session changed');
      s.user = normalUser(me);
      this.openStore();
    }
    this.authStopped = false; // the app asks again (a new token, or the same one tried again)
    if (this.conn && this.online && !this.catchingUp) return;
    const ready = new Promise((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.conn) {
      if (this.conn.stopped) this.conn.start();
      return ready;
    }
    this.conn = new Connection({
      url: this.wsUrl,
      connect: (url, h) => this.adapter.connect(url, h),
      bind: (cid, nonce) => this.bind(cid, nonce),
      onOnline: (cid) => this.onOnline(cid),
      onOffline: () => this.onOffline(),
      onMessage: (msg) => this.onMessage(msg),
      onState: (state, info) => this.emit('state', state, info),
      visible: () => this.visibleNow,
      timing: this.o.timing,
    });
    if (this.adapter.watch && !this.unwatch) {
      this.unwatch = this.adapter.watch({
        online: () => this.reconnectNow(),
        offline: () => this.conn && this.conn.networkLost(),
        visibility: (v) => this.setVisible(v),
      });
    }
    this.conn.start();
    return ready;
  }

  /** Closes the socket and stops reconnecting. */
  disconnect() {
    if (this.unwatch) {
      this.unwatch();
      this.unwatch = null;
    }
    if (this.conn) this.conn.stop();
    this.conn = null;
    this.settleConnect(new ChatError(CLIENT_CODES.CANCELLED, 'disconnected'));
  }

  /**
   * Reconnects now when waiting (a "Retry" button, the network back); restarts a client stopped
   * otherwise, but not one the server refused (session ended, bind refused): that one waits for
   * connect() (with a new token).
   */
  reconnectNow() {
    if (!this.conn || this.authStopped) return;
    if (this.conn.stopped) this.conn.start();
    else this.conn.reconnectNow();
  }

  /** Checks the connection now with a ping (a dead one is dropped within a few seconds). */
  probe(minSilenceMs = 0) {
    if (this.conn) this.conn.probe(minSilenceMs);
  }

  /** The app was shown (true) or hidden (false): App.onShow / onHide, or visibilitychange. */
  setVisible(visible) {
    this.visibleNow = !!visible;
    if (!visible || !this.store) return;
    this.refreshBadge();
    if (this.conn) {
      this.conn.reconnectNow();
      this.conn.probe(1000); // still there after the app slept?
    }
    if (this.current !== null) {
      const item = this.store.item(this.current);
      if (item && item.noreadnum > 0) this.markRead(this.current);
    }
  }

  async bind(cid, nonce) {
    const s = this.session;
    let res;
    try {
      res = await this.api.bind(cid, nonce);
    } catch (e) {
      if (s !== this.session) throw e;
      if (e.status === 401 || e.status === 403) {
        e.fatal = true; // the connection stops
        this.authStopped = true;
        this.settleConnect(e);
      }
      if (!e.network && e.status !== 401) this.emit('error', e);
      throw e;
    }
    if (!(res && res.status && res.type === 'bind')) {
      const e = new ChatError(CLIENT_CODES.BIND_FAILED, (res && res.msg) || 'bind failed');
      this.emit('error', e);
      throw e;
    }
  }

  onOnline(cid) {
    this.clientId = cid;
    this.emit('online', cid);
    this.catchUp();
  }

  onOffline() {
    this.clientId = null;
    this.catchingUp = null;
    clearTimeout(this.gapTimer);
    this.gapTimer = 0;
    this.emit('offline');
  }

  /** GET /chat/config (cached): {recall_window, max_text, max_upload, page_limit, message_types}. */
  async config({ refresh = false } = {}) {
    if (this.serverConfig && !refresh) return this.serverConfig;
    try {
      this.serverConfig = await this.api.config();
    } catch (e) {
      if (e.status !== 404) throw e;
      // An older chatd without it: its defaults.
      this.serverConfig = { recall_window: 0, max_text: DEFAULT_MAX_TEXT, max_upload: 10485760, page_limit: 100, message_types: ['text', 'image', 'emoji'], fallback: true };
    }
    return this.serverConfig;
  }

  // ---- pushes ---------------------------------------------------------------------------

  onMessage(msg) {
    const s = this.store;
    if (!s) return;
    switch (msg.type) {
      case 'message':
        this.incoming(msg.message);
        break;
      case 'ack':
        this.acked(msg);
        break;
      case 'error':
        this.socketError(msg);
        break;
      case 'result':
        break;
      case 'profile':
        this.userChanged(msg.user);
        break;
      case 'read': {
        // Another device of ours read a conversation.
        const peer = msg.group_id ? -Number(msg.group_id) : Number(msg.userid);
        s.setNoRead(peer, 0);
        if (typeof msg.total === 'number' && msg.total !== s.total()) this.refreshUnread();
        this.emit('read', peer);
        break;
      }
      case 'mute': {
        // Another device of ours muted or unmuted a group.
        const peer = -Number(msg.group_id);
        s.patchItem(peer, { muted: msg.muted === true });
        if (typeof msg.total === 'number' && msg.total !== s.total()) this.refreshUnread();
        this.emit('mute', peer, msg.muted === true);
        break;
      }
      case 'presence':
        s.setPresence(Number(msg.uid), msg.online === true, msg.last_seen);
        break;
      case 'receipt':
        s.setReceipt(Number(msg.userid), Number(msg.last_read_id));
        this.emit('receipt', Number(msg.userid), Number(msg.last_read_id));
        break;
      case 'deleted':
        this.deletedPush(msg);
        break;
      case 'event':
        this.peerEvent(msg);
        break;
      default:
        this.emit('push', msg); // a type this SDK does not know (or a server API send_to_*)
        break;
    }
  }

  incoming(m) {
    if (!m || typeof m !== 'object' || !Number.isSafeInteger(m.id)) return;
    const s = this.store;
    const peer = peerOf(m, s.uid);
    if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
    const known = !!s.item(peer);
    if (peer < 0 && !known && !s.hasCursor(peer) && m.seq > 1) {
      // Added to a group: what came before is not ours to see; the cursor starts here, not at 0.
      const d = systemData(m);
      if (d && d.event === 'add' && Array.isArray(d.users) && d.users.some((u) => u && Number(u.userid) === s.uid)) s.setCursor(peer, m.seq - 1);
    }
    s.merge(peer, [m]);
    s.bump(m, { unread: this.unreadFor(m) });
    for (const w of this.listWaiters) w.push(m);
    // A conversation this client did not know (sent by another device of ours, a new peer, a
    // group we were just added to): the list has its name and the peer's presence.
    if (!known) this.refreshList();
    else if (peer < 0 && m.type === 'system') this.groupChanged(peer, m);
    if (m.client_msg_id && m.from_id === s.uid) this.settle(m.client_msg_id, m);
    this.noteSeq(m);
    if (m.from_id !== s.uid) this.setTyping(peer, m.from_id, false);
    const target = recallTarget(m);
    if (target) {
      s.applyRecall(peer, target);
      this.emit('recall', { key: peer, message_id: target, notice: m });
      return;
    }
    this.emit('message', m, peer);
    if (peer === this.current && m.from_id !== s.uid && this.visibleNow) this.scheduleRead(peer);
  }

  acked(msg) {
    const m = msg.message;
    if (!m || !Number.isSafeInteger(m.id)) return;
    const s = this.store;
    const peer = peerOf(m, s.uid);
    s.merge(peer, [m]);
    s.bump(m);
    this.settle(m.client_msg_id, m);
    this.noteSeq(m);
  }

  deletedPush(msg) {
    const s = this.store;
    const ids = Array.isArray(msg.message_ids) ? msg.message_ids.filter(Number.isSafeInteger) : [];
    if (!ids.length) return;
    // The cursor moves only with a sync answer: a push may have followed others this client missed.
    s.hideMessages(ids);
    this.emit('deleted', ids);
  }

  socketError(msg) {
    const err = new ChatError(String(msg.code || 'error'), typeof msg.msg === 'string' ? msg.msg : String(msg.code), { op: msg.op || '', data: msg });
    if (SESSION_ENDED_CODES.has(msg.code)) {
      this.endSession(msg.code, err.message);
      return;
    }
    if (msg.code === 'logged_out') return;
    if (msg.op === 'send' && typeof msg.client_msg_id === 'string') {
      const f = this.store.findPending(msg.client_msg_id);
      const retryable = msg.code === 'internal' || msg.code === 'rate_limited' || msg.code === 'not_bound';
      if (f) this.markFailed(f.peer, msg.client_msg_id, err, retryable);
      if (msg.code === 'not_bound' && this.conn && this.conn.ws) this.conn.drop(this.conn.ws, 4003, 'not bound');
      return;
    }
    this.emit('error', err);
  }

  userChanged(user) {
    if (!this.session || !user || Number(user.id) !== this.uid) return;
    this.session.user = { ...this.session.user, userpic: typeof user.userpic === 'string' ? user.userpic : '' };
    if (typeof user.username === 'string' && user.username) this.session.user.username = user.username;
    this.store.me = this.session.user;
    this.emit('profile', this.session.user);
  }

  peerEvent(msg) {
    const from = Number(msg.from_id);
    const data = msg.data;
    if (!Number.isSafeInteger(from)) return;
    const gid = Number(msg.group_id);
    const peer = Number.isSafeInteger(gid) && gid > 0 ? -gid : from;
    if (data && typeof data === 'object' && 'typing' in data) {
      this.setTyping(peer, from, data.typing === true);
      return;
    }
    this.emit('event', { key: peer, from_id: from, data });
  }

  // ---- groups ------------------------------------------------------------------------------

  /** POST /group/create; the group is in the chat list at once. Resolves to {group, message}. */
  async createGroup(name, members, avatar) {
    const r = await this.api.groupCreate(name, members, avatar);
    this.applyGroupAnswer(-Number(r.group.group_id), r);
    return r;
  }

  /** POST /group/info: members with roles and presence; kept in store.groups. */
  async groupInfo(groupId) {
    const s = this.store;
    const info = await this.api.groupInfo(groupId);
    if (s === this.store) s.setGroupInfo(info);
    return info;
  }

  addMembers(groupId, members) {
    return this.groupCall(groupId, () => this.api.groupAdd(groupId, members));
  }

  removeMember(groupId, userid) {
    return this.groupCall(groupId, () => this.api.groupRemove(groupId, userid));
  }

  leaveGroup(groupId) {
    return this.groupCall(groupId, () => this.api.groupLeave(groupId));
  }

  /** fields: {name?, avatar?} */
  updateGroup(groupId, fields) {
    return this.groupCall(groupId, () => this.api.groupUpdate(groupId, fields));
  }

  setRole(groupId, userid, role) {
    return this.groupCall(groupId, () => this.api.groupRole(groupId, userid, role));
  }

  dissolveGroup(groupId) {
    return this.groupCall(groupId, () => this.api.groupDissolve(groupId));
  }

  /** Mutes a group (its unread count leaves the total). Resolves to {group_id, muted, total}. */
  async muteGroup(groupId, muted) {
    const s = this.store;
    const r = await this.api.groupMute(groupId, muted);
    if (s === this.store) {
      s.patchItem(-Number(groupId), { muted: !!r.muted });
      if (typeof r.total === 'number' && r.total !== s.total()) this.refreshUnread();
    }
    return r;
  }

  async groupCall(groupId, fn) {
    const s = this.store;
    const r = await fn();
    if (s === this.store) this.applyGroupAnswer(-Number(groupId), r);
    return r;
  }

  /** A group change's answer: its system message shows at once. */
  applyGroupAnswer(key, r) {
    const s = this.store;
    if (!s) return;
    const m = r && r.message;
    if (m && Number.isSafeInteger(m.id)) {
      s.merge(key, [m]);
      s.bump(m);
      const g = r.group;
      if (g && typeof g.name === 'string') {
        const patch = { username: g.name, userpic: g.avatar || '', dissolved: !!g.dissolved };
        if (g.member_count) patch.member_count = Number(g.member_count);
        if (Number(g.owner_id) === s.uid) patch.role = 'owner';
        s.patchItem(key, patch);
      }
      this.noteSeq(m);
      this.groupChanged(key, m);
    } else {
      this.refreshList();
      if (key === this.current) this.groupInfo(-key).catch(() => {});
    }
  }

  /**
   * A group's system message arrived: what it says about us shows at once
   * (removed, left, added back, dissolved, renamed); then the list and, when
   * the group is open, its members are fetched again.
   */
  groupChanged(key, m) {
    const s = this.store;
    const d = systemData(m);
    if (d) {
      const me = s.uid;
      const aboutMe = Array.isArray(d.users) && d.users.some((u) => u && Number(u.userid) === me);
      if ((d.event === 'remove' || d.event === 'leave') && (aboutMe || (d.event === 'leave' && Number(d.actor) === me))) s.patchItem(key, { left: true });
      else if ((d.event === 'add' || d.event === 'create') && aboutMe) s.patchItem(key, { left: false });
      else if (d.event === 'dissolve') s.patchItem(key, { dissolved: true });
      if (d.event === 'update' && typeof d.name === 'string' && d.name) s.patchItem(key, { username: d.name });
    }
    this.emit('group_changed', key, d);
    this.refreshList();
    if (key === this.current) this.groupInfo(-key).catch(() => {});
  }

  // ---- users -----------------------------------------------------------------------------

  /** GET /user/search: users whose name starts with q. */
  searchUsers(q) {
    return this.api.search(q);
  }

  /** POST /user/profile (a picture URL, e.g. uploadMedia's url; "" removes it). */
  async setProfile(userpic) {
    const u = await this.api.profile(userpic, this.clientId);
    this.userChanged(u);
    return u;
  }

  /** POST /user/password: the user's other sessions are signed out; this one goes on. */
  changePassword(oldPassword, newPassword) {
    return this.api.password(oldPassword, newPassword);
  }

  /** A user's presence, {online, last_seen}, or null when not known. */
  presenceOf(uid) {
    return this.store ? this.store.presenceOf(Number(uid)) : null;
  }
}


function normalUser(u) {
  return { id: Number(u.id), username: typeof u.username === 'string' ? u.username : '', userpic: typeof u.userpic === 'string' ? u.userpic : '' };
}

/** The WebSocket URL of an HTTP base URL ("" : the page's origin is the adapter's business). */
export function wsUrlOf(baseUrl, path = '/ws') {
  if (!baseUrl) return path;
  return baseUrl.replace(/\/+$/, '').replace(/^http(s?):/i, 'ws$1:') + path;
}

// The methods of the other two files, getters included (Object.assign would copy a getter's value).
for (const methods of [syncMethods, messageMethods]) {
  const descriptors = Object.getOwnPropertyDescriptors(methods);
  for (const d of Object.values(descriptors)) d.enumerable = false; // as a class's own methods
  Object.defineProperties(ChatClient.prototype, descriptors);
}
