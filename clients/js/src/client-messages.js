// client-messages.js: the ChatClient's conversations, typing, sending, recall
// and delete-for-me (its methods, mixed into the class by client.js). Every
// method runs with `this` the client.

import { ChatError, CLIENT_CODES } from './errors.js';
import { peerOf, recallTarget } from './store.js';
import { conversationKey, DEFAULT_MAX_TEXT, handled, randomId, socketTarget, utf8Length } from './util.js';

const TYPING_EVERY_MS = 3000; // at most one typing event this often
const TYPING_SHOWN_MS = 6000; // "typing…" lasts this long after the last event

/** @type {ThisType<import('./client.js').ChatClient>} */
export const messageMethods = {
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
  },

  /** The user ids typing in a conversation now. */
  typingIn(key) {
    const who = this.typingNow.get(conversationKey(key));
    return who ? [...who.keys()] : [];
  },

  /** Every conversation where someone types: Map(key -> [user ids]). */
  typingAll() {
    const out = new Map();
    for (const [k, who] of this.typingNow) if (who.size) out.set(k, [...who.keys()]);
    return out;
  },

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
  },

  stopTyping() {
    if (this.lastTypingSent && this.typingPeer !== null && this.conn) this.conn.send({ type: 'event', ...socketTarget(this.typingPeer), data: { typing: false } });
    this.lastTypingSent = 0;
    this.typingPeer = null;
  },

  /** A transient event to a user or a group's online members (not stored). False when offline. */
  sendEvent(target, data) {
    const key = conversationKey(target);
    return !!this.conn && this.conn.send({ type: 'event', ...socketTarget(key), data });
  },

  // ---- conversations -----------------------------------------------------------------------

  /** The chat list, most recent first (items: see docs/SDK.md). */
  get chatList() {
    return this.store ? this.store.list : [];
  },

  /** The unread total (muted groups left out, as the server's). */
  get total() {
    return this.store ? this.store.total() : 0;
  },

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
  },

  /**
   * Opens a conversation: its messages stop counting as unread while the app
   * is visible, it is marked read, and (load) its newest page is fetched.
   * Resolves when that page is in. Offline (no answer from the server) it
   * resolves too: the cached messages are what there is, and the catch-up
   * after the reconnect marks it read and brings what is new.
   */
  async open(target, { load = true } = {}) {
    const key = conversationKey(target);
    if (!this.store || !Number.isSafeInteger(key)) return;
    if (this.current !== null && this.current !== key) this.stopTyping();
    this.current = key;
    this.markRead(key); // also when the list says 0: the peer's receipt, the server's count
    if (key < 0) this.groupInfo(-key).catch(() => {});
    if (!load) return;
    try {
      await this.loadNewest(key);
    } catch (e) {
      if (!e || !e.network) throw e;
    }
  },

  /**
   * Leaves the open conversation. With a target, only when that one is open (a page closing
   * after another conversation's page was opened over it leaves that one open).
   */
  close(target) {
    if (target !== undefined && conversationKey(target) !== this.current) return;
    this.stopTyping();
    this.current = null;
  },

  /** POST /chat/read for a conversation now (whether visible or not). Resolves to {total}. */
  async read(target) {
    const key = conversationKey(target);
    const s = this.store;
    s.setNoRead(key, 0);
    const r = await this.api.read(key, this.clientId);
    if (s === this.store && r && typeof r.total === 'number' && r.total !== s.total()) this.refreshUnread();
    return r;
  },

  markRead(key) {
    if (!this.visibleNow || !this.store) return;
    clearTimeout(this.readTimers.get(key));
    this.readTimers.delete(key);
    this.read(key).catch(() => {});
  },

  scheduleRead(key) {
    clearTimeout(this.readTimers.get(key));
    this.readTimers.set(
      key,
      setTimeout(() => {
        this.readTimers.delete(key);
        if (this.current === key) this.markRead(key);
      }, 150),
    );
  },

  /** GET /chat/history: one page, newest first. */
  history(target, { before = 0, limit } = {}) {
    return this.api.history(conversationKey(target), before, limit);
  },

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
  },

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
  },

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
  },

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
  },

  /** Sends text. */
  sendText(target, text) {
    return this.send(target, 'text', text);
  },

  /**
   * Sends a picture: uploads it (POST /media, onProgress 0..1), then sends an
   * image message with its URL, width and height. file: a Blob (browser) or a
   * file path (uni-app); or {url, width, height} of a picture already uploaded.
   */
  async sendImage(target, file, { onProgress, signal } = {}) {
    let media = file;
    if (!(file && typeof file === 'object' && typeof file.url === 'string')) media = await this.uploadMedia(file, { onProgress, signal });
    return this.send(target, 'image', media.url, { width: media.width, height: media.height });
  },

  /** POST /media: resolves to {url, type, width, height, size}; signal (an AbortSignal) cancels it. */
  uploadMedia(file, { onProgress, timeoutMs, signal } = {}) {
    return this.api.upload(file, { onProgress, timeoutMs, signal });
  },

  /** Sends one of our failed (or still pending) messages again. */
  retry(target, clientMsgId) {
    const key = conversationKey(target);
    const m = this.store && this.store.pending(key, clientMsgId);
    if (!m) return handled(Promise.reject(new ChatError('not_found', 'no such pending message')));
    const p = this.waitFor(clientMsgId);
    this.transmit(key, m);
    return p;
  },

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
  },

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
  },

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
  },

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
        const err = new ChatError(CLIENT_CODES.TIMEOUT, 'No answer from the server', { network: true });
        if (p && p.state === 'sending') this.markFailed(key, cmid, err, true);
        else this.settle(cmid, null, err); // whatever became of the message, its promise settles
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
  },

  markFailed(key, cmid, err, retryable) {
    const error = this.o.errorText ? String(this.o.errorText(err)) : err.message;
    const m = this.store.updatePending(key, cmid, { state: 'failed', error, code: err.code, retryable });
    this.settle(cmid, null, err);
    if (m) this.emit('failed', m, key, err);
  },

  /** After (re)connecting: sends what is still on its way, and what failed for want of a connection. */
  flushPending() {
    const s = this.store;
    if (!s) return;
    for (const peer of s.cachedPeers()) {
      for (const m of s.pendingIn(peer)) {
        if (m.state === 'sending' || m.retryable) this.transmit(peer, m);
      }
    }
  },

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
  },

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
};
