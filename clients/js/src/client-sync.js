// client-sync.js: the ChatClient's catching up (its methods, mixed into the
// class by client.js). After every (re)connect: /chat/list and /chat/unread,
// then POST /chat/sync with one seq cursor per conversation until nothing
// says `more`; while online, a pushed seq past the cursor + 1 means a push was
// lost, and the same sync runs after a short wait (an HTTP answer can overtake
// a push). Every method runs with `this` the client.

import { peerOf, recallTarget } from './store.js';

const SYNC_MAX_PAGES = 20; // /chat/sync pages of the server's --page-limit each
const GAP_WAIT_MS = 250; // a seq hole may be a push still on its way (an HTTP answer can overtake it)

/** @type {ThisType<import('./client.js').ChatClient>} */
export const syncMethods = {
  // ---- catching up ------------------------------------------------------------------------

  unreadFor(m) {
    if (m.from_id === this.uid || m.type === 'recall') return false;
    return !(peerOf(m, this.uid) === this.current && this.visibleNow);
  },

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
    // /chat/list and /chat/unread are two reads: a message stored between them is counted by one
    // and not the other (then once more as the push it also was). Counts read now are right.
    if (pushed.length) await this.refreshUnread();
    if (s !== this.store) return;
    if (this.current !== null) {
      const item = s.item(this.current);
      if (item && item.noreadnum > 0) this.markRead(this.current);
      if (this.current < 0) this.groupInfo(-this.current).catch(() => {}); // members may have changed meanwhile
    }
    this.flushPending();
    this.settleConnect(null);
    this.emit('synced');
  },

  /** Syncs now (what a reconnect does): the list, the unread counts and every conversation's missed messages. */
  sync() {
    return this.catchUp();
  },

  /**
   * Syncs by cursors until no conversation says `more`: merges what came into
   * the conversations, moves the cursors, and updates the list's previews;
   * with deletions (after a reconnect: online, the "deleted" push tells), also
   * asks for what was deleted for us after the deleted cursor (deleted_after)
   * and hides it. Too much missed
   * (SYNC_MAX_PAGES pages) to patch the caches: their stored messages are
   * dropped (the server has everything; ours still on the way are kept) and
   * the cursors start from the list. Resolves to false
   * when the store changed (signed out) meanwhile.
   */
  async syncCursors(s, { deletions = false } = {}) {
    let unknown = false;
    let deletedMore = deletions && !this.deletedUnsupported;
    for (let pages = 0; ; pages++) {
      if (pages >= SYNC_MAX_PAGES) {
        // Our messages not stored yet stay (in memory and storage), and are sent after this.
        s.dropStoredMessages();
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
  },

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
  },

  scheduleGapSync() {
    if (this.gapTimer || this.gapSyncing) return;
    this.gapTimer = setTimeout(() => this.syncGaps(), GAP_WAIT_MS * 2 ** Math.min(this.gapRetries, 6));
  },

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
  },

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
  },

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
};
