// store.js: the signed-in user's state, cached in localStorage per user with
// the reference client's keys:
//   chatlist<uid>              the chat list
//   chatdetail_<uid>_<peer>    a conversation's messages (the newest DETAIL_CAP), oldest first
//   noreadnum<uid>             the total unread
// and, for this client, chatusers<uid> (names and pictures seen),
// chatreceipt<uid> (what each peer has read) and chatseq<uid> (the sync
// cursors: per conversation, the seq up to which this client has seen every
// message; POST /chat/sync answers what comes after). An older client's
// chatlastid<uid> (one message id for GET /chat/sync) is dropped: its
// conversations get their cursors from the chat list's last_seq instead,
// and their cached messages (without seq) stay, healed by history when
// opened.
//
// A conversation is known by its key: the partner's user id for a 1:1
// conversation, minus the group id for a group (user and group ids are
// positive, so the two never meet). Keys name the caches above
// (chatdetail_<uid>_-7 is group 7) and the cursors; the server's "g7"
// cursor key is made only when syncing (cursorsFor).

import { t } from './i18n.js';

export const SESSION_KEY = 'chatd_session';
export const DETAIL_CAP = 300;

export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY));
    if (s && typeof s.token === 'string' && s.user && Number.isSafeInteger(s.user.id)) return s;
  } catch {
    /* none or broken */
  }
  return null;
}

export function saveSession(s) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
}

export function clearSession() {
  localStorage.removeItem(SESSION_KEY);
}

function load(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    return v === null ? fallback : JSON.parse(v);
  } catch {
    return fallback;
  }
}

function isObj(x) {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

/** The conversation key of a message for user uid: its partner's id, or minus its group's id. */
export function peerOf(m, uid) {
  if (m.group_id) return -Number(m.group_id);
  return m.from_id === uid ? Number(m.to_id) : Number(m.from_id);
}

/** A conversation's key as the server's body names it: {group_id} or {userid}. */
export function convRef(key) {
  return key < 0 ? { group_id: -key } : { userid: key };
}

/** The data of a system message (a JSON object in a string), or null. */
export function systemData(m) {
  if (!m || m.type !== 'system') return null;
  try {
    const d = JSON.parse(m.data);
    return isObj(d) ? d : null;
  } catch {
    return null;
  }
}

/** A stable key for a message: its client_msg_id from its sender, or its id. */
export function messageKey(m) {
  return m.client_msg_id ? `c${m.from_id}:${m.client_msg_id}` : `i${m.id}`;
}

function byOrder(a, b) {
  const ai = a.id || 0;
  const bi = b.id || 0;
  if (ai && bi) return ai - bi;
  if (ai) return -1; // stored messages before pending ones
  if (bi) return 1;
  return (a.time || 0) - (b.time || 0);
}

function cleanMessage(m) {
  if (!isObj(m)) return null;
  const from = Number(m.from_id);
  const gid = Number(m.group_id) || 0;
  const to = gid ? 0 : Number(m.to_id);
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || !Number.isSafeInteger(gid) || gid < 0) return null;
  const out = {
    id: Number.isSafeInteger(m.id) ? m.id : 0,
    seq: Number.isSafeInteger(m.seq) && m.seq > 0 ? m.seq : 0,
    from_id: from,
    to_id: to,
    ...(gid ? { group_id: gid } : {}),
    from_username: typeof m.from_username === 'string' ? m.from_username : '',
    from_userpic: typeof m.from_userpic === 'string' ? m.from_userpic : '',
    type: typeof m.type === 'string' ? m.type : 'text',
    data: typeof m.data === 'string' ? m.data : String(m.data ?? ''),
    time: Number(m.time) || 0,
    client_msg_id: typeof m.client_msg_id === 'string' && m.client_msg_id ? m.client_msg_id : null,
  };
  if (!out.id) {
    // A message of ours not acknowledged yet.
    if (!out.client_msg_id) return null;
    out.state = m.state === 'failed' ? 'failed' : 'sending';
    if (typeof m.error === 'string') out.error = m.error;
    out.retryable = m.retryable !== false;
  }
  return out;
}

const str = (x) => (typeof x === 'string' ? x : '');

function cleanItem(i) {
  if (!isObj(i)) return null;
  if (i.chat_type === 'group') {
    const gid = Number(i.group_id);
    if (!Number.isSafeInteger(gid) || gid <= 0) return null;
    return {
      key: -gid,
      chat_type: 'group',
      group_id: gid,
      username: str(i.name) || str(i.username), // the name and picture under the keys 1:1 items use
      userpic: str(i.avatar) || str(i.userpic),
      type: str(i.type) || 'text',
      data: str(i.data),
      time: Number(i.time) || 0,
      noreadnum: Math.max(0, Number(i.noreadnum) || 0),
      last_message_id: Number(i.last_message_id) || 0,
      last_seq: Number.isSafeInteger(i.last_seq) && i.last_seq > 0 ? i.last_seq : 0,
      from_id: Number(i.from_id) || 0,
      from_username: str(i.from_username),
      from_me: !!i.from_me,
      pending_cmid: str(i.pending_cmid),
      muted: !!i.muted,
      role: str(i.role) || 'member',
      member_count: Number(i.member_count) || 0,
      dissolved: !!i.dissolved,
      left: !!i.left,
    };
  }
  if (!Number.isSafeInteger(Number(i.userid))) return null;
  const out = {
    key: Number(i.userid),
    chat_type: 'single',
    userid: Number(i.userid),
    username: typeof i.username === 'string' ? i.username : '',
    userpic: typeof i.userpic === 'string' ? i.userpic : '',
    type: typeof i.type === 'string' ? i.type : 'text',
    data: typeof i.data === 'string' ? i.data : '',
    time: Number(i.time) || 0,
    noreadnum: Math.max(0, Number(i.noreadnum) || 0),
    last_message_id: Number(i.last_message_id) || 0,
    last_seq: Number.isSafeInteger(i.last_seq) && i.last_seq > 0 ? i.last_seq : 0,
    from_me: !!i.from_me,
    pending_cmid: str(i.pending_cmid),
  };
  if (typeof i.online === 'boolean') out.online = i.online;
  if (Number.isSafeInteger(i.last_seen) || i.last_seen === null) out.last_seen = i.last_seen;
  return out;
}

/** /chat/unread's counts by conversation key. */
function unreadCounts(unread) {
  const counts = new Map();
  for (const c of (unread && unread.conversations) || []) counts.set(Number(c.userid), Number(c.noreadnum) || 0);
  for (const g of (unread && unread.groups) || []) counts.set(-Number(g.group_id), Number(g.noreadnum) || 0);
  return counts;
}

export class ChatStore {
  constructor(user) {
    this.me = user;
    this.uid = user.id;
    const list = load(`chatlist${this.uid}`, []);
    this.list = Array.isArray(list) ? list.map(cleanItem).filter(Boolean) : [];
    const users = load(`chatusers${this.uid}`, {});
    this.users = isObj(users) ? users : {};
    const receipts = load(`chatreceipt${this.uid}`, {});
    this.receipts = isObj(receipts) ? receipts : {};
    const cursors = load(`chatseq${this.uid}`, {});
    this.cursors = {};
    if (isObj(cursors)) {
      for (const [k, v] of Object.entries(cursors)) if (/^-?[1-9]\d{0,15}$/.test(k) && Number.isSafeInteger(v) && v > 0) this.cursors[k] = v;
    }
    localStorage.removeItem(`chatlastid${this.uid}`);
    this.ahead = new Map(); // peer -> Set of seqs seen above its cursor (a hole in between)
    this.details = new Map();
    this.presence = new Map(); // user id -> {online, last_seen} (not cached: the server says on each catch-up)
    this.groups = new Map(); // group id -> /group/info's answer
    this.listeners = new Set();
    this.rememberUser(user);
  }

  // ---- change notifications ------------------------------------------------

  on(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(what, peer) {
    for (const fn of this.listeners) fn(what, peer);
  }

  write(key, value) {
    try {
      localStorage.setItem(key, JSON.stringify(value));
    } catch {
      // Quota: drop the conversation caches (the server has them) and try once more.
      this.dropDetailCaches();
      try {
        localStorage.setItem(key, JSON.stringify(value));
      } catch {
        /* give up on caching this */
      }
    }
  }

  // ---- users -----------------------------------------------------------------

  rememberUser(u) {
    if (!u || !Number.isSafeInteger(Number(u.id)) || typeof u.username !== 'string' || !u.username) return;
    const id = Number(u.id);
    const cur = this.users[id];
    const next = { id, username: u.username, userpic: typeof u.userpic === 'string' ? u.userpic : '' };
    if (cur && cur.username === next.username && cur.userpic === next.userpic) return;
    this.users[id] = next;
    this.write(`chatusers${this.uid}`, this.users);
  }

  user(peer) {
    if (peer < 0) {
      const item = this.item(peer);
      const g = this.groups.get(-peer);
      return { id: -peer, username: (g && g.name) || (item && item.username) || t('group.fallback', { id: -peer }), userpic: (g && g.avatar) || (item && item.userpic) || '' };
    }
    const u = this.users[peer];
    if (u) return u;
    const item = this.item(peer);
    if (item && item.username) return { id: peer, username: item.username, userpic: item.userpic };
    return { id: peer, username: t('user.fallback', { id: peer }), userpic: '' };
  }

  // ---- the chat list -----------------------------------------------------------

  item(peer) {
    return this.list.find((i) => i.key === peer);
  }

  /** The unread total of the badge and the title: muted groups left out, as the server's total. */
  total() {
    return this.list.reduce((n, i) => n + (i.muted ? 0 : i.noreadnum), 0);
  }

  /** Changes fields of a list item (a group's name, muted, left...). */
  patchItem(peer, patch) {
    const i = this.item(peer);
    if (!i) return;
    let changed = false;
    for (const [k, v] of Object.entries(patch)) {
      if (i[k] !== v) {
        i[k] = v;
        changed = true;
      }
    }
    if (!changed) return;
    this.saveList();
    this.emit('list');
    this.emit('detail', peer);
  }

  // ---- presence and groups ----------------------------------------------------

  /** A user's presence, {online, last_seen}, or null when unknown. */
  presenceOf(uid) {
    return this.presence.get(uid) || null;
  }

  setPresence(uid, online, lastSeen) {
    if (!Number.isSafeInteger(uid) || typeof online !== 'boolean') return;
    const cur = this.presence.get(uid);
    const last_seen = Number.isSafeInteger(lastSeen) ? lastSeen : null;
    if (cur && cur.online === online && cur.last_seen === last_seen) return;
    this.presence.set(uid, { online, last_seen });
    this.emit('presence', uid);
  }

  /** Keeps a group's /group/info answer (members, roles, presence). */
  setGroupInfo(info) {
    const gid = Number(info && info.group_id);
    if (!Number.isSafeInteger(gid) || gid <= 0) return;
    const members = Array.isArray(info.members) ? info.members : [];
    for (const m of members) {
      const id = Number(m.userid);
      this.rememberUser({ id, username: m.username, userpic: m.userpic });
      if (typeof m.online === 'boolean') this.setPresence(id, m.online, m.last_seen);
    }
    this.groups.set(gid, { ...info, members });
    this.patchItem(-gid, {
      username: str(info.name) || this.user(-gid).username,
      userpic: str(info.avatar),
      member_count: Number(info.member_count) || members.length,
      role: str(info.role) || 'member',
      left: !!info.left,
      dissolved: !!info.dissolved,
      muted: !!info.muted,
    });
    this.emit('detail', -gid);
    this.emit('group', -gid);
  }

  saveList() {
    this.write(`chatlist${this.uid}`, this.list);
    this.write(`noreadnum${this.uid}`, this.total());
  }

  /** Replaces the list with the server's (most recent first), unread counts from /chat/unread. */
  setList(serverList, unread) {
    const counts = unread ? unreadCounts(unread) : new Map();
    const old = new Map(this.list.map((i) => [i.key, i]));
    this.list = (Array.isArray(serverList) ? serverList : []).map(cleanItem).filter(Boolean);
    for (const i of this.list) {
      if (counts.has(i.key)) i.noreadnum = counts.get(i.key);
      if (i.chat_type === 'group') {
        i.from_me = i.from_id === this.uid;
        if (i.from_id && i.from_username) this.rememberUser({ id: i.from_id, username: i.from_username });
        continue;
      }
      const prev = old.get(i.key);
      // The server's list does not say who wrote the last message; keep what we knew.
      if (prev && prev.last_message_id === i.last_message_id) i.from_me = prev.from_me;
      else i.from_me = this.lastFromMe(i);
      this.rememberUser({ id: i.userid, username: i.username, userpic: i.userpic });
      if (typeof i.online === 'boolean') this.setPresence(i.userid, i.online, i.last_seen);
    }
    // Our messages still waiting for the server keep their conversation on top.
    for (const prev of old.values()) {
      if (!this.item(prev.key) && this.pendingIn(prev.key).length) this.list.unshift({ ...prev, noreadnum: 0 });
    }
    this.saveList();
    this.emit('list');
  }

  lastFromMe(item) {
    const d = this.details.get(item.key);
    const m = d && d.messages.find((x) => x.id === item.last_message_id);
    return m ? m.from_id === this.uid : false;
  }

  /** Learns from stored messages who wrote each conversation's last message ("You: " in the list). */
  learnLastAuthors(messages) {
    let changed = false;
    for (const m of messages) {
      const item = this.item(peerOf(m, this.uid));
      if (item && item.last_message_id === m.id && item.from_me !== (m.from_id === this.uid)) {
        item.from_me = m.from_id === this.uid;
        changed = true;
      }
    }
    if (changed) {
      this.saveList();
      this.emit('list');
    }
  }

  /** Applies counts from /chat/unread to the list. */
  setUnreadCounts(unread) {
    const counts = unreadCounts(unread);
    for (const i of this.list) i.noreadnum = counts.get(i.key) || 0;
    this.saveList();
    this.emit('list');
  }

  setNoRead(peer, n) {
    const i = this.item(peer);
    if (!i || i.noreadnum === n) return;
    i.noreadnum = n;
    this.saveList();
    this.emit('list');
  }

  /**
   * Moves a message's conversation to the top with it as the preview, as the
   * reference client's __UpdateChatlist. A message the list already reflects
   * (id not above the conversation's last_message_id) changes nothing.
   * Returns whether the list changed.
   */
  bump(m, { unread = false } = {}) {
    const peer = peerOf(m, this.uid);
    const group = peer < 0;
    let idx = this.list.findIndex((i) => i.key === peer);
    let item = idx >= 0 ? this.list[idx] : null;
    if (item && m.id && item.last_message_id && m.id <= item.last_message_id) return false;
    if (!item) {
      if (group) {
        // A group this client did not know (the caller fetches the list for its name).
        const g = this.user(peer);
        item = cleanItem({ chat_type: 'group', group_id: -peer, name: g.username, avatar: g.userpic });
      } else {
        const u = m.from_id === this.uid ? this.user(peer) : { username: m.from_username, userpic: m.from_userpic };
        item = { key: peer, chat_type: 'single', userid: peer, username: u.username, userpic: u.userpic, noreadnum: 0, last_message_id: 0 };
      }
      this.list.unshift(item);
      idx = 0;
    } else if (idx !== 0) {
      this.list.unshift(this.list.splice(idx, 1)[0]);
    }
    item.type = m.type;
    item.data = m.data;
    item.time = m.time;
    item.from_me = m.from_id === this.uid;
    // Our message still on its way (or failed): the list shows its state, not "You: ".
    item.pending_cmid = m.id ? '' : str(m.client_msg_id);
    if (m.id) item.last_message_id = m.id;
    if (m.seq && m.seq > (item.last_seq || 0)) item.last_seq = m.seq;
    if (group) {
      item.from_id = m.from_id;
      item.from_username = m.from_username || this.user(m.from_id).username;
    } else if (m.from_id !== this.uid) {
      if (m.from_username) item.username = m.from_username;
      if (typeof m.from_userpic === 'string') item.userpic = m.from_userpic;
    }
    if (unread) item.noreadnum += 1;
    this.saveList();
    this.emit('list');
    return true;
  }

  // ---- conversations -----------------------------------------------------------

  detailKey(peer) {
    return `chatdetail_${this.uid}_${peer}`;
  }

  hasDetail(peer) {
    return this.details.has(peer) || localStorage.getItem(this.detailKey(peer)) !== null;
  }

  detail(peer) {
    let d = this.details.get(peer);
    if (!d) {
      const raw = load(this.detailKey(peer), []);
      const messages = Array.isArray(raw) ? raw.map(cleanMessage).filter(Boolean) : [];
      messages.sort(byOrder);
      d = { peer, messages, complete: false, fresh: false };
      this.details.set(peer, d);
    }
    return d;
  }

  saveDetail(peer) {
    const d = this.details.get(peer);
    if (!d) return;
    let msgs = d.messages;
    if (msgs.length > DETAIL_CAP) {
      // Keep the newest, and every message still on its way.
      const cut = msgs.length - DETAIL_CAP;
      msgs = msgs.filter((m, i) => i >= cut || !m.id);
    }
    this.write(
      this.detailKey(peer),
      msgs.map((m) => {
        const o = { ...m };
        if (o.id) {
          delete o.state;
          delete o.error;
          delete o.retryable;
        }
        return o;
      }),
    );
  }

  dropDetailCaches() {
    const prefix = `chatdetail_${this.uid}_`;
    for (const k of Object.keys(localStorage)) if (k.startsWith(prefix)) localStorage.removeItem(k);
  }

  /** Peers with a cached conversation (in memory or in localStorage). */
  cachedPeers() {
    const prefix = `chatdetail_${this.uid}_`;
    const peers = new Set(this.details.keys());
    for (const k of Object.keys(localStorage)) if (k.startsWith(prefix)) peers.add(Number(k.slice(prefix.length)));
    return [...peers].filter(Number.isSafeInteger);
  }

  /**
   * Merges stored messages (from a push, an ack, history or sync) into a
   * conversation: never twice (by id), and replacing our pending message of
   * the same client_msg_id. Returns the messages that were new.
   */
  merge(peer, incoming) {
    const d = this.detail(peer);
    const ids = new Set(d.messages.filter((m) => m.id).map((m) => m.id));
    const added = [];
    let changed = false;
    for (const raw of incoming) {
      const m = cleanMessage(raw);
      if (!m || !m.id) continue;
      if (ids.has(m.id)) continue;
      ids.add(m.id);
      if (m.client_msg_id && m.from_id === this.uid) {
        const idx = d.messages.findIndex((x) => !x.id && x.client_msg_id === m.client_msg_id);
        if (idx >= 0) {
          d.messages[idx] = m;
          changed = true;
          continue;
        }
      }
      d.messages.push(m);
      added.push(m);
      changed = true;
    }
    if (changed) {
      d.messages.sort(byOrder);
      this.saveDetail(peer);
      this.emit('detail', peer);
    }
    return added;
  }

  /** Forgets cached stored messages of a conversation (kept: ours still on the way). */
  resetDetail(peer) {
    const d = this.detail(peer);
    d.messages = d.messages.filter((m) => !m.id);
    d.complete = false;
  }

  addPending(peer, m) {
    const d = this.detail(peer);
    d.messages.push(m);
    this.saveDetail(peer);
    this.emit('detail', peer);
  }

  pending(peer, cmid) {
    const d = this.detail(peer);
    return d.messages.find((m) => !m.id && m.client_msg_id === cmid) || null;
  }

  pendingIn(peer) {
    if (!this.hasDetail(peer)) return [];
    return this.detail(peer).messages.filter((m) => !m.id);
  }

  updatePending(peer, cmid, patch) {
    const m = this.pending(peer, cmid);
    if (!m) return null;
    Object.assign(m, patch);
    this.saveDetail(peer);
    this.emit('detail', peer);
    const item = this.item(peer);
    if (item && item.pending_cmid === cmid) this.emit('list'); // its preview shows the state
    return m;
  }

  /** The state of the list item's last message when it is ours and not stored yet: 'sending' | 'failed' | ''. */
  pendingState(item) {
    if (!item.from_me || !item.pending_cmid) return '';
    const m = this.pending(item.key, item.pending_cmid);
    return m ? m.state || 'sending' : '';
  }

  /** Finds the conversation of our pending message with this client_msg_id. */
  findPending(cmid) {
    for (const peer of this.cachedPeers()) {
      const m = this.pendingIn(peer).find((x) => x.client_msg_id === cmid);
      if (m) return { peer, message: m };
    }
    return null;
  }

  // ---- receipts and the sync cursors ---------------------------------------------

  setReceipt(peer, lastReadId) {
    if (!(lastReadId > (this.receipts[peer] || 0))) return;
    this.receipts[peer] = lastReadId;
    this.write(`chatreceipt${this.uid}`, this.receipts);
    this.emit('detail', peer);
  }

  /** The seq up to which every message of the conversation with peer was seen (0: none). */
  cursor(peer) {
    return this.cursors[peer] || 0;
  }

  hasCursor(peer) {
    return peer in this.cursors;
  }

  /** Moves a conversation's cursor forward (never back) over seq and the seqs seen right after it. */
  setCursor(peer, seq) {
    let cur = this.cursor(peer);
    if (!Number.isSafeInteger(seq) || (seq <= cur && this.hasCursor(peer))) return;
    cur = Math.max(cur, seq);
    const ahead = this.ahead.get(peer);
    if (ahead) {
      while (ahead.delete(cur + 1)) cur += 1;
      for (const x of ahead) if (x <= cur) ahead.delete(x);
      if (!ahead.size) this.ahead.delete(peer);
    }
    this.cursors[peer] = cur;
    this.write(`chatseq${this.uid}`, this.cursors);
  }

  /**
   * Notes a stored message's seq as seen. The cursor moves when it is the
   * next one; a seq further on is kept aside, and true is returned: a
   * message in between was missed (a push lost) and the caller syncs.
   */
  noteSeq(peer, seq) {
    if (!Number.isSafeInteger(seq) || seq <= 0) return false;
    const cur = this.cursor(peer);
    if (seq === cur + 1) this.setCursor(peer, seq);
    else if (seq > cur) {
      if (!this.ahead.has(peer)) this.ahead.set(peer, new Set());
      this.ahead.get(peer).add(seq);
    }
    return this.ahead.has(peer);
  }

  /** Whether some conversation has seen a seq past a hole. */
  hasGaps() {
    return this.ahead.size > 0;
  }

  /**
   * Gives every conversation this client knows a cursor: one from the chat
   * list starts at its newest message (what came before is history, fetched
   * when opened); one only cached here, at the newest cached seq.
   */
  seedCursors() {
    for (const i of this.list) if (!this.hasCursor(i.key)) this.setCursor(i.key, i.last_seq);
    for (const peer of this.cachedPeers()) {
      if (this.hasCursor(peer)) continue;
      this.setCursor(peer, Math.max(0, ...this.detail(peer).messages.map((m) => m.seq || 0)));
    }
  }

  /** Every conversation at its newest message, as the list says (after too much was missed). */
  cursorsFromList() {
    this.ahead.clear();
    for (const i of this.list) this.setCursor(i.key, i.last_seq);
  }

  /** The cursors to send: the most recent conversations first, at most max (the server's bound). */
  cursorsFor(max = 1000) {
    const out = {};
    const name = (k) => (Number(k) < 0 ? `g${-Number(k)}` : String(k));
    let n = 0;
    for (const i of this.list) {
      if (n >= max) return out;
      if (this.hasCursor(i.key)) {
        out[name(i.key)] = this.cursor(i.key);
        n += 1;
      }
    }
    for (const [k, v] of Object.entries(this.cursors)) {
      if (n >= max) break;
      if (!(name(k) in out)) {
        out[name(k)] = v;
        n += 1;
      }
    }
    return out;
  }

  /** Removes everything this user cached (sign out). */
  forget() {
    const keys = [`chatlist${this.uid}`, `noreadnum${this.uid}`, `chatusers${this.uid}`, `chatreceipt${this.uid}`, `chatseq${this.uid}`, `chatlastid${this.uid}`];
    for (const k of keys) localStorage.removeItem(k);
    this.dropDetailCaches();
  }
}
