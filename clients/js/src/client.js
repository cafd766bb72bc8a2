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
// Nothing here touches a platform's globals: the socket, HTTP, uploads,
// storage, the badge and the platform's online/visibility events all come
// from the adapter (adapters/browser.js, adapters/uniapp.js).

import { Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { ChatError, CLIENT_CODES } from './errors.js';
import { Api } from './http.js';
import { ChatStore, peerOf, recallTarget, systemData } from './store.js';

const PAGE = 30; // history page (halved while the server's --page-limit is lower)
const SYNC_MAX_PAGES = 20; // /chat/sync pages of the server's --page-limit each
const GAP_WAIT_MS = 250; // a seq hole may be a push still on its way (an HTTP answer can overtake it)
const TYPING_EVERY_MS = 3000; // at most one typing event this often
const TYPING_SHOWN_MS = 6000; // "typing…" lasts this long after the last event
const DEFAULT_MAX_TEXT = 4096;

/**
 * Session-ending socket errors: the server closes the socket next. Not among them, logged_out
 * (the token was logged out, by another tab of this session or elsewhere): the socket closes,
 * and the bind of the reconnect gets its 401, which ends the session as any 401 does.
 */
const SESSION_ENDED_CODES = new Set(['password_changed', 'revoked', 'account_disabled']);

const utf8Length = (s) => {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
};

function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  let s = '';
  for (let i = 0; i < 32; i++) s += Math.floor(Math.random() * 16).toString(16);
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-4${s.slice(13, 16)}-a${s.slice(17, 20)}-${s.slice(20)}`;
}

/**
 * A conversation key from what an app has at hand: a key (a user id, or minus
 * a group id), {userid}, {to_id}, {group_id}, a chat list item or a message.
 * @param {number | {userid?: number, to_id?: number, group_id?: number, key?: number}} target
 * @returns {number}
 */
export function conversationKey(target) {
  if (typeof target === 'number' || typeof target === 'string') return Number(target);
  if (target && typeof target === 'object') {
    if (Number.isSafeInteger(target.key)) return target.key;
    if (target.group_id) return -Number(target.group_id);
    if (target.userid) return Number(target.userid);
    if (target.to_id) return Number(target.to_id);
  }
  return NaN;
}

/** The key of group gid (minus its id). */
export const groupKey = (gid) => -Number(gid);

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
    if (o.session) this.setSession(o.session);
  }

  /** Per-session state back to its start. */
  reset() {
    this.catchingUp = null; // messages pushed while catching up, or null
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
    this.waiters = new Map(); // client_msg_id -> {resolve, reject}
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
    return this.session ? this.session.user.id : 0;
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
    this.store = new ChatStore(user, { storage: this.adapter.storage, keys: this.o.keys, detailCap: this.o.detailCap });
    this.store.on((what, arg) => {
      if (what === 'total') {
        this.badge(arg);
        this.emit('total', arg);
      } else this.emit(what, arg);
    });
    // The seed's initTabbarBadge: the cached total until the server says.
    this.badge(this.store.total());
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
    if (this.conn) this.conn.stop({ error: new ChatError(code, message) });
    this.emit('session_ended', { code, message });
  }

  // ---- the connection ---------------------------------------------------------------------

  /**
   * Opens the socket (and keeps it open: reconnects with backoff until
   * disconnect()). Needs a session; fetches the user when the session has none.
   */
  async connect() {
    if (!this.session) throw new ChatError(CLIENT_CODES.NOT_SIGNED_IN, 'no session: login() or setSession() first');
    if (!this.session.user) {
      const s = this.session;
      const me = await this.api.me();
      if (this.session !== s) return;
      s.user = normalUser(me);
      this.openStore();
    }
    if (this.conn) {
      if (this.conn.stopped) this.conn.start();
      return;
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
  }

  /** Closes the socket and stops reconnecting. */
  disconnect() {
    if (this.unwatch) {
      this.unwatch();
      this.unwatch = null;
    }
    if (this.conn) this.conn.stop();
    this.conn = null;
  }

  /** Reconnects now when waiting (a "Retry" button, the network back); restarts a stopped client. */
  reconnectNow() {
    if (!this.conn) return;
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
      if (e.status === 401 || e.status === 403) e.fatal = true;
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

  // ---- catching up ------------------------------------------------------------------------

  unreadFor(m) {
    if (m.from_id === this.uid || m.type === 'recall') return false;
    return !(peerOf(m, this.uid) === this.current && this.visibleNow);
  }

  /** Fetches what was missed while offline: the list, the unread counts, the messages. */
  async catchUp() {
    const s = this.store;
    if (!s) return;
    const pushed = [];
    this.catchingUp = pushed;
    try {
      const [list, unread] = await Promise.all([this.api.list(), this.api.unread()]);
      if (s !== this.store) return;
      s.setList(list, unread);
      // Pushes that raced the list: bump() ignores what the list already has.
      for (const m of pushed) s.bump(m, { unread: this.unreadFor(m) });
      s.seedCursors();
      if (!(await this.syncCursors(s, { deletions: true }))) return;
    } catch (e) {
      if (s === this.store && this.catchingUp === pushed) {
        this.catchingUp = null;
        if (!e.network && e.status !== 401) this.emit('error', e);
      }
      return;
    }
    if (this.catchingUp === pushed) this.catchingUp = null;
    // Pushed meanwhile: most are in what the sync answered; a later one moves a cursor on.
    let gap = false;
    for (const m of pushed) gap = s.noteSeq(peerOf(m, s.uid), m.seq) || gap;
    if (gap) this.scheduleGapSync();
    if (this.current !== null) {
      const item = s.item(this.current);
      if (item && item.noreadnum > 0) this.markRead(this.current);
      if (this.current < 0) this.groupInfo(-this.current).catch(() => {}); // members may have changed meanwhile
    }
    this.flushPending();
    this.emit('synced');
  }

  /** Syncs now (what a reconnect does): the list, the unread counts and every conversation's missed messages. */
  sync() {
    return this.catchUp();
  }

  /**
   * Syncs by cursors until no conversation says `more`: merges what came into
   * the conversations, moves the cursors, and updates the list's previews;
   * with deletions (after a reconnect: online, the "deleted" push tells), also
   * asks for what was deleted for us after the deleted cursor (deleted_after)
   * and hides it. Too much missed
   * (SYNC_MAX_PAGES pages) to patch the caches: they are dropped (the server
   * has everything) and the cursors start from the list. Resolves to false
   * when the store changed (signed out) meanwhile.
   */
  async syncCursors(s, { deletions = false } = {}) {
    let unknown = false;
    let deletedMore = deletions && !this.deletedUnsupported;
    for (let pages = 0; ; pages++) {
      if (pages >= SYNC_MAX_PAGES) {
        s.dropDetailCaches();
        for (const peer of [...s.details.keys()]) if (peer !== this.current) s.details.delete(peer);
        if (this.current !== null) s.resetDetail(this.current);
        const list = await this.api.list();
        if (s !== this.store) return false;
        s.setList(list, null);
        s.cursorsFromList();
        if (this.current !== null) this.loadNewest(this.current).catch(() => {});
        break;
      }
      let res;
      try {
        res = await this.api.sync(s.cursorsFor(), { deletedAfter: deletedMore ? s.deletedCursor : undefined });
      } catch (e) {
        // A chatd without delete-for-me refuses the field: ask without it from now on.
        if (!(deletedMore && e.status === 400 && /deleted_after/.test(e.message))) throw e;
        this.deletedUnsupported = true;
        deletedMore = false;
        res = await this.api.sync(s.cursorsFor());
      }
      if (s !== this.store) return false;
      let more = false;
      if (deletedMore) {
        const d = res.deleted;
        if (d && Array.isArray(d.message_ids)) {
          s.hideMessages(d.message_ids);
          if (d.message_ids.length) this.emit('deleted', d.message_ids.slice());
          s.setDeletedCursor(Number(d.cursor));
          deletedMore = d.more === true;
          more ||= deletedMore;
        } else deletedMore = false;
      }
      for (const c of res.conversations || []) {
        const peer = c.group_id ? -Number(c.group_id) : Number(c.userid);
        const msgs = Array.isArray(c.messages) ? c.messages : [];
        more ||= c.more === true;
        if (!msgs.length) continue;
        for (const m of msgs) if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
        s.merge(peer, msgs); // every message is kept, as the seed's chatdetail does
        s.learnLastAuthors(msgs);
        for (const m of msgs) {
          const target = recallTarget(m);
          if (target) {
            s.applyRecall(peer, target);
            this.emit('recall', { key: peer, message_id: target, notice: m });
          }
        }
        // A group changed (members, name, roles): the list and its members again.
        if (peer < 0 && msgs.some((m) => m.type === 'system')) {
          unknown = true;
          if (peer === this.current) this.groupInfo(-peer).catch(() => {});
        }
        // Newer than the list: the preview, and counted as unread (bump skips what the list has).
        if (!s.item(peer)) unknown = true;
        else for (const m of msgs) s.bump(m, { unread: this.unreadFor(m) });
        s.setCursor(peer, msgs[msgs.length - 1].seq);
      }
      if (!more) break;
    }
    // A conversation the list does not have yet: its name and counts.
    if (unknown) await this.refreshList();
    return s === this.store;
  }

  /** Notes a stored message's seq (push, ack, HTTP answer); a hole before it starts a sync. */
  noteSeq(m) {
    const s = this.store;
    if (!s) return;
    if (this.catchingUp) {
      this.catchingUp.push(m); // the catch-up notes it once its sync is in
      return;
    }
    if (s.noteSeq(peerOf(m, s.uid), m.seq)) {
      this.gapRetries = 0;
      this.scheduleGapSync();
    }
  }

  scheduleGapSync() {
    if (this.gapTimer || this.gapSyncing) return;
    this.gapTimer = setTimeout(() => this.syncGaps(), GAP_WAIT_MS * 2 ** Math.min(this.gapRetries, 6));
  }

  /** Syncs while some conversation has a hole: fetches exactly what came after each cursor. */
  async syncGaps() {
    this.gapTimer = 0;
    const s = this.store;
    if (!s || this.catchingUp || !this.online || !s.hasGaps()) return;
    this.gapSyncing = true;
    this.emit('gap');
    try {
      if (!(await this.syncCursors(s))) return;
    } catch {
      /* the next message or reconnect tries again */
    } finally {
      this.gapSyncing = false;
    }
    if (s !== this.store) return;
    // A hole that opened meanwhile (or that the answer, read just before a commit, did not cover).
    if (s.hasGaps() && this.gapRetries < 5) {
      this.gapRetries += 1;
      this.scheduleGapSync();
    }
    // Messages that were missed were not counted as unread.
    this.refreshUnread();
    if (this.current !== null && this.visibleNow) {
      const item = s.item(this.current);
      if (item && item.noreadnum > 0) this.scheduleRead(this.current);
    }
  }

  /** GET /chat/list and /chat/unread again. */
  async refreshList() {
    const s = this.store;
    if (!s) return;
    const arrived = [];
    this.listWaiters.add(arrived);
    try {
      const [list, unread] = await Promise.all([this.api.list(), this.api.unread()]);
      if (s !== this.store) return;
      s.setList(list, unread);
      // The answer may have been read before these were stored (a PostgreSQL reader runs
      // beside the writer): bump() puts back what the list does not have yet.
      for (const m of arrived) s.bump(m, { unread: this.unreadFor(m) });
      // Its two answers may disagree about those (two reads): counts read after they came are right.
      if (arrived.length) this.refreshUnread();
    } catch {
      /* the next catch-up fixes it */
    } finally {
      this.listWaiters.delete(arrived);
    }
  }

  /** GET /chat/unread again (and the list when it names a conversation the list has not). */
  async refreshUnread() {
    const s = this.store;
    if (!s) return;
    try {
      const u = await this.api.unread();
      if (s !== this.store) return;
      s.setUnreadCounts(u);
      const missing =
        (u.conversations || []).some((c) => c.noreadnum > 0 && !s.item(Number(c.userid))) ||
        (u.groups || []).some((g) => g.noreadnum > 0 && !s.item(-Number(g.group_id)));
      if (missing) {
        const list = await this.api.list();
        if (s === this.store) s.setList(list, u);
      }
    } catch {
      /* the next catch-up fixes it */
    }
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

  // ---- typing ---------------------------------------------------------------------------

  /** User uid is (or stops) typing in the conversation peer (a 1:1 peer types in its own). */
  setTyping(peer, uid, on) {
    let who = this.typingNow.get(peer);
    const was = !!who && who.has(uid);
    if (who) clearTimeout(who.get(uid));
    if (on) {
      if (!who) this.typingNow.set(peer, (who = new Map()));
      who.set(
        uid,
        setTimeout(() => this.setTyping(peer, uid, false), TYPING_SHOWN_MS),
      );
    } else if (who) {
      who.delete(uid);
      if (!who.size) this.typingNow.delete(peer);
    }
    if (was !== on) this.emit('typing', peer, this.typingIn(peer));
  }

  /** The user ids typing in a conversation now. */
  typingIn(key) {
    const who = this.typingNow.get(conversationKey(key));
    return who ? [...who.keys()] : [];
  }

  /** Every conversation where someone types: Map(key -> [user ids]). */
  typingAll() {
    const out = new Map();
    for (const [k, who] of this.typingNow) if (who.size) out.set(k, [...who.keys()]);
    return out;
  }

  /**
   * Tells the peer (or the group) that we type (active) or stopped: call it on
   * every input; at most one event goes out every 3 s.
   */
  typing(target, active) {
    const key = conversationKey(target);
    if (!this.conn || !Number.isSafeInteger(key)) return;
    const now = Date.now();
    if (active) {
      if (this.typingPeer !== null && this.typingPeer !== key) this.stopTyping();
      if (now - this.lastTypingSent >= TYPING_EVERY_MS && this.conn.send({ type: 'event', ...socketTarget(key), data: { typing: true } })) {
        this.lastTypingSent = now;
        this.typingPeer = key;
      }
    } else {
      this.stopTyping();
    }
  }

  stopTyping() {
    if (this.lastTypingSent && this.typingPeer !== null && this.conn) this.conn.send({ type: 'event', ...socketTarget(this.typingPeer), data: { typing: false } });
    this.lastTypingSent = 0;
    this.typingPeer = null;
  }

  /** A transient event to a user or a group's online members (not stored). False when offline. */
  sendEvent(target, data) {
    const key = conversationKey(target);
    return !!this.conn && this.conn.send({ type: 'event', ...socketTarget(key), data });
  }

  // ---- conversations -----------------------------------------------------------------------

  /** The chat list, most recent first (items: see docs/SDK.md). */
  get chatList() {
    return this.store ? this.store.list : [];
  }

  /** The unread total (muted groups left out, as the server's). */
  get total() {
    return this.store ? this.store.total() : 0;
  }

  /**
   * A conversation's messages to show, oldest first: ours still on the way
   * have id 0 and a state; a recalled one has recalled: true (show "… withdrew
   * a message" in its place). Left out: messages deleted for us, and recall
   * notices whose message is held (the message says it). With all: every
   * message held, as store.detail(key).messages.
   */
  messages(target, { all = false } = {}) {
    if (!this.store) return [];
    const list = this.store.detail(conversationKey(target)).messages;
    if (all) return list;
    const held = new Set(list.filter((m) => m.id && !m.deleted).map((m) => m.id));
    return list.filter((m) => !m.deleted && !(m.type === 'recall' && held.has(recallTarget(m))));
  }

  /**
   * Opens a conversation: its messages stop counting as unread while the app
   * is visible, it is marked read, and (load) its newest page is fetched.
   * Resolves when that page is in.
   */
  async open(target, { load = true } = {}) {
    const key = conversationKey(target);
    if (!this.store || !Number.isSafeInteger(key)) return;
    if (this.current !== null && this.current !== key) this.stopTyping();
    this.current = key;
    this.markRead(key); // also when the list says 0: the peer's receipt, the server's count
    if (key < 0) this.groupInfo(-key).catch(() => {});
    if (load) await this.loadNewest(key);
  }

  /** Leaves the open conversation. */
  close() {
    this.stopTyping();
    this.current = null;
  }

  /** POST /chat/read for a conversation now (whether visible or not). Resolves to {total}. */
  async read(target) {
    const key = conversationKey(target);
    const s = this.store;
    s.setNoRead(key, 0);
    const r = await this.api.read(key, this.clientId);
    if (s === this.store && r && typeof r.total === 'number' && r.total !== s.total()) this.refreshUnread();
    return r;
  }

  markRead(key) {
    if (!this.visibleNow || !this.store) return;
    clearTimeout(this.readTimers.get(key));
    this.readTimers.delete(key);
    this.read(key).catch(() => {});
  }

  scheduleRead(key) {
    clearTimeout(this.readTimers.get(key));
    this.readTimers.set(
      key,
      setTimeout(() => {
        this.readTimers.delete(key);
        if (this.current === key) this.markRead(key);
      }, 150),
    );
  }

  /** GET /chat/history: one page, newest first. */
  history(target, { before = 0, limit } = {}) {
    return this.api.history(conversationKey(target), before, limit);
  }

  /** One page of history, newest first; {page, limit}. Adapts to a server with a lower --page-limit. */
  async fetchHistory(key, before) {
    for (;;) {
      const limit = this.historyLimit;
      try {
        return { page: await this.api.history(key, before, limit), limit };
      } catch (e) {
        if (e.status !== 400 || limit <= 1) throw e;
        this.historyLimit = Math.max(1, Math.floor(limit / 2));
      }
    }
  }

  /**
   * Fetches the newest page of a conversation and merges it with the cache.
   * Resolves to {added, complete}: the messages that were new, and whether the
   * whole history is now held.
   */
  async loadNewest(target) {
    const key = conversationKey(target);
    const s = this.store;
    const d = s.detail(key);
    const { page, limit } = await this.fetchHistory(key, 0);
    if (s !== this.store) return { added: [], complete: false };
    const known = d.messages.filter((m) => m.id);
    if (page.length === limit && known.length) {
      const oldestFetched = Math.min(...page.map((m) => m.id));
      const newestKnown = Math.max(...known.map((m) => m.id));
      // Messages are missing between the cache and this page: start over from the page.
      if (oldestFetched > newestKnown) s.resetDetail(key);
    }
    for (const m of page) if (m.from_id !== s.uid) s.rememberUser({ id: m.from_id, username: m.from_username, userpic: m.from_userpic });
    const added = s.merge(key, page);
    if (page.length < limit) d.complete = true;
    d.fresh = true;
    return { added, complete: d.complete };
  }

  /** Fetches the page before the oldest held message. Resolves to {added, complete}. */
  async loadOlder(target) {
    const key = conversationKey(target);
    const s = this.store;
    const d = s.detail(key);
    if (d.complete) return { added: [], complete: true };
    if (this.loading.has(key)) return this.loading.get(key);
    const oldest = d.messages.find((m) => m.id);
    const p = (async () => {
      const { page, limit } = await this.fetchHistory(key, oldest ? oldest.id : 0);
      if (s !== this.store) return { added: [], complete: false };
      if (page.length < limit) d.complete = true;
      const added = s.merge(key, page);
      return { added, complete: d.complete };
    })();
    this.loading.set(key, p);
    try {
      return await p;
    } finally {
      this.loading.delete(key);
    }
  }

  // ---- sending ----------------------------------------------------------------------------

  /**
   * Sends a message. It is in the conversation at once (id 0, state
   * "sending"), goes over the socket (over HTTP while the socket is down),
   * and resolves to the stored message when acknowledged. It rejects with a
   * ChatError when refused or not acknowledged within sendTimeoutMs (code
   * "timeout"); a retryable failure is sent again after the next reconnect
   * (an "ack" event then tells), and retry() sends it again now. The same
   * client_msg_id is used every time, so it is never stored twice.
   * @param {number | object} target  a conversation key, {to_id} / {userid} / {group_id}, or a list item
   * @param {string} type  "text", "image", "emoji" (the server's --message-types)
   * @param {string} data
   * @param {{width?: number, height?: number, client_msg_id?: string}} [extra]
   * @returns {Promise<object>}
   */
  send(target, type, data, extra = {}) {
    const key = conversationKey(target);
    const s = this.store;
    if (!s || !this.session) return handled(Promise.reject(new ChatError(CLIENT_CODES.NOT_SIGNED_IN, 'not signed in')));
    if (!Number.isSafeInteger(key) || key === 0) return handled(Promise.reject(new ChatError('bad_field', 'no such conversation')));
    const maxText = (this.serverConfig && this.serverConfig.max_text) || DEFAULT_MAX_TEXT;
    if (typeof data !== 'string' || utf8Length(data) > maxText) {
      return handled(Promise.reject(new ChatError(CLIENT_CODES.TOO_LONG, `${maxText} bytes at most`)));
    }
    const me = this.session.user;
    const m = {
      id: 0,
      client_msg_id: extra.client_msg_id || randomId(),
      from_id: me.id,
      ...(key < 0 ? { to_id: 0, group_id: -key } : { to_id: key }),
      from_username: me.username,
      from_userpic: me.userpic || '',
      type,
      data,
      time: Date.now(),
      state: 'sending',
      retryable: true,
    };
    if (Number.isSafeInteger(extra.width) && Number.isSafeInteger(extra.height)) {
      m.width = extra.width;
      m.height = extra.height;
    }
    const p = this.waitFor(m.client_msg_id);
    s.addPending(key, m);
    s.bump(m);
    this.transmit(key, m);
    return p;
  }

  /** Sends text. */
  sendText(target, text) {
    return this.send(target, 'text', text);
  }

  /**
   * Sends a picture: uploads it (POST /media, onProgress 0..1), then sends an
   * image message with its URL, width and height. file: a Blob (browser) or a
   * file path (uni-app); or {url, width, height} of a picture already uploaded.
   */
  async sendImage(target, file, { onProgress, signal } = {}) {
    let media = file;
    if (!(file && typeof file === 'object' && typeof file.url === 'string')) media = await this.uploadMedia(file, { onProgress, signal });
    return this.send(target, 'image', media.url, { width: media.width, height: media.height });
  }

  /** POST /media: resolves to {url, type, width, height, size}; signal (an AbortSignal) cancels it. */
  uploadMedia(file, { onProgress, timeoutMs, signal } = {}) {
    return this.api.upload(file, { onProgress, timeoutMs, signal });
  }

  /** Sends one of our failed (or still pending) messages again. */
  retry(target, clientMsgId) {
    const key = conversationKey(target);
    const m = this.store && this.store.pending(key, clientMsgId);
    if (!m) return handled(Promise.reject(new ChatError('not_found', 'no such pending message')));
    const p = this.waitFor(clientMsgId);
    this.transmit(key, m);
    return p;
  }

  /** Drops one of our pending (failed) messages. */
  discard(target, clientMsgId) {
    const key = conversationKey(target);
    const s = this.store;
    if (!s) return;
    const d = s.detail(key);
    const i = d.messages.findIndex((x) => !x.id && x.client_msg_id === clientMsgId);
    if (i < 0) return;
    d.messages.splice(i, 1);
    s.saveDetail(key);
    s.emit('detail', key);
    this.settle(clientMsgId, null, new ChatError(CLIENT_CODES.CANCELLED, 'discarded'));
  }

  waitFor(cmid) {
    let w = this.waiters.get(cmid);
    if (!w) {
      w = {};
      w.promise = handled(
        new Promise((resolve, reject) => {
          w.resolve = resolve;
          w.reject = reject;
        }),
      );
      this.waiters.set(cmid, w);
    }
    return w.promise;
  }

  /** Our message cmid was stored (m) or failed (err). */
  settle(cmid, m, err) {
    if (!cmid) return;
    clearTimeout(this.sendTimers.get(cmid));
    this.sendTimers.delete(cmid);
    const w = this.waiters.get(cmid);
    this.waiters.delete(cmid);
    if (m) {
      if (w) w.resolve(m);
      this.emit('ack', m, peerOf(m, this.uid));
    } else if (w) w.reject(err);
  }

  /** Sends (again) one of our pending messages: over the socket, or over HTTP when it is down. */
  transmit(key, m) {
    const s = this.store;
    const cmid = m.client_msg_id;
    s.updatePending(key, cmid, { state: 'sending', error: '', retryable: true });
    clearTimeout(this.sendTimers.get(cmid));
    this.sendTimers.set(
      cmid,
      setTimeout(() => {
        this.sendTimers.delete(cmid);
        const p = s === this.store && s.pending(key, cmid);
        if (p && p.state === 'sending') this.markFailed(key, cmid, new ChatError(CLIENT_CODES.TIMEOUT, 'No answer from the server', { network: true }), true);
      }, this.sendTimeoutMs),
    );
    const body = { ...socketTarget(key), type: m.type, data: m.data, client_msg_id: cmid };
    if (m.width && m.height) {
      body.width = m.width;
      body.height = m.height;
    }
    if (this.conn && this.conn.send({ type: 'send', message: body })) {
      this.conn.probe(1000); // a dead connection shows in seconds, not after sendTimeoutMs
      return;
    }
    // The socket is down: try HTTP (same client_msg_id, so never stored twice).
    this.api
      .send(body)
      .then((stored) => {
        if (s !== this.store) return;
        s.merge(key, [stored]);
        s.bump(stored);
        this.settle(cmid, stored);
        this.noteSeq(stored);
      })
      .catch((e) => {
        if (s !== this.store) return;
        // Unreachable: stays "sending" and goes out again when we are back online.
        if (!e.network) this.markFailed(key, cmid, e, e.status >= 500 || e.status === 429);
      });
  }

  markFailed(key, cmid, err, retryable) {
    const m = this.store.updatePending(key, cmid, { state: 'failed', error: err.message, code: err.code, retryable });
    this.settle(cmid, null, err);
    if (m) this.emit('failed', m, key, err);
  }

  /** After (re)connecting: sends what is still on its way, and what failed for want of a connection. */
  flushPending() {
    const s = this.store;
    if (!s) return;
    for (const peer of s.cachedPeers()) {
      for (const m of s.pendingIn(peer)) {
        if (m.state === 'sending' || m.retryable) this.transmit(peer, m);
      }
    }
  }

  // ---- recall and delete ---------------------------------------------------------------------

  /**
   * Recalls (撤回) one of our messages within the server's recall window:
   * POST /chat/recall. Resolves to {message, notice}; the message shows
   * recalled here at once, and everywhere through the notice.
   */
  async recall(messageId) {
    const s = this.store;
    const r = await this.api.recall(messageId, this.clientId);
    if (s !== this.store || !r) return r;
    const m = r.message;
    if (m && Number.isSafeInteger(m.id)) {
      const key = peerOf(m, s.uid);
      const msgs = [m, r.notice].filter((x) => x && Number.isSafeInteger(x.id));
      s.merge(key, msgs);
      s.applyRecall(key, m.id);
      for (const x of msgs) s.bump(x);
      if (r.notice && Number.isSafeInteger(r.notice.id)) this.noteSeq(r.notice);
      this.emit('recall', { key, message_id: m.id, notice: r.notice || null });
    }
    return r;
  }

  /** Deletes messages for me (on all my devices): POST /chat/delete. Resolves to {message_ids, cursor}. */
  async deleteForMe(messageIds) {
    const ids = Array.isArray(messageIds) ? messageIds : [messageIds];
    const s = this.store;
    const r = await this.api.deleteForMe(ids, this.clientId);
    if (s !== this.store || !r) return r;
    const gone = Array.isArray(r.message_ids) ? r.message_ids.filter(Number.isSafeInteger) : [];
    s.hideMessages(gone);
    if (gone.length) this.emit('deleted', gone.slice());
    return r;
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

/** The socket's target of a conversation: {to_id} or {group_id}. */
function socketTarget(key) {
  return key < 0 ? { group_id: -key } : { to_id: key };
}

/** The WebSocket URL of an HTTP base URL ("" : the page's origin is the adapter's business). */
export function wsUrlOf(baseUrl, path = '/ws') {
  if (!baseUrl) return path;
  return baseUrl.replace(/\/+$/, '').replace(/^http(s?):/i, 'ws$1:') + path;
}

/** A promise whose rejection, when nobody waits for it, is not reported as unhandled. */
function handled(p) {
  p.catch(() => {});
  return p;
}
