// store.js: the signed-in user's chat state (chat list, conversations, sync
// cursors), cached through the adapter's storage with the seed's keys:
//   chatlist<uid>              the chat list
//   chatdetail_<uid>_<peer>    a conversation's messages (the newest detailCap), oldest first
//   noreadnum<uid>             the total unread
// and chatusers<uid> (names and pictures seen), chatreceipt<uid> (what each
// peer has read), chatseq<uid> (the sync cursors: per conversation, the seq
// up to which every message was seen; POST /chat/sync answers what comes
// after) and chatdeleted<uid> (the delete-for-me cursor). Every key is a
// function of keys.js, which an app may override. An older web client's
// chatlastid<uid> is dropped: its conversations get their cursors from the
// chat list's last_seq instead.
//
// A conversation is known by its key: the partner's user id for a 1:1
// conversation, minus the group id for a group (user and group ids are
// positive, so the two never meet). Keys name the caches above
// (chatdetail_<uid>_-7 is group 7) and the cursors; the server's "g7"
// cursor key is made only when syncing (cursorsFor).
//
// Values are JSON strings: the storage interface is get/set/remove of
// strings (localStorage, uni.getStorageSync/setStorageSync) plus keys().

import { defaultKeys, detailPrefix } from './keys.js';

export const DETAIL_CAP = 300;

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
  // Present only when true / set (docs/API.md): recalled (its data is gone), deleted (hidden for
  // this user), an image's size.
  if (m.recalled === true) out.recalled = true;
  if (m.deleted === true) out.deleted = true;
  if (out.recalled || out.deleted) out.data = ''; // as the server: the text or URL is gone
  else if (isDim(m.width) && isDim(m.height)) {
    out.width = m.width;
    out.height = m.height;
  }
  if (!out.id) {
    // A message of ours not acknowledged yet.
    if (!out.client_msg_id) return null;
    out.state = m.state === 'failed' ? 'failed' : 'sending';
    if (typeof m.error === 'string') out.error = m.error;
    if (typeof m.code === 'string' && m.code) out.code = m.code;
    out.retryable = m.retryable !== false;
  }
  return out;
}

/** A conversation's messages as stored: those after the first `skip` stored ones (pending ones all). */
function detailRecord(messages, skip) {
  const out = [];
  let n = 0;
  for (const m of messages) {
    if (m.id && n++ < skip) continue;
    const o = { ...m };
    if (o.id) {
      delete o.state;
      delete o.error;
      delete o.retryable;
    }
    out.push(o);
  }
  return out;
}

const str = (x) => (typeof x === 'string' ? x : '');
const isDim = (x) => Number.isSafeInteger(x) && x >= 1 && x <= 65535;

/** The message id a recall notice (type "recall", data {"message_id"}) names, or 0. */
export function recallTarget(m) {
  if (!m || m.type !== 'recall') return 0;
  try {
    const d = JSON.parse(m.data);
    return isObj(d) && Number.isSafeInteger(d.message_id) ? d.message_id : 0;
  } catch {
    return 0;
  }
}

/** The list item fields of a message's recall, delete and picture size. */
function itemExtras(out, i) {
  if (i.recalled === true) out.recalled = true;
  if (i.deleted === true) out.deleted = true;
  if (!out.recalled && isDim(i.width) && isDim(i.height)) {
    out.width = i.width;
    out.height = i.height;
  }
  return out;
}

function cleanItem(i) {
  if (!isObj(i)) return null;
  if (i.chat_type === 'group') {
    const gid = Number(i.group_id);
    if (!Number.isSafeInteger(gid) || gid <= 0) return null;
    return itemExtras({
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
    }, i);
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
  if (Number.isSafeInteger(i.from_id) && i.from_id > 0) out.from_id = i.from_id; // who wrote the last message (newer chatd)
  return itemExtras(out, i);
}

/** /chat/unread's counts by conversation key. */
function unreadCounts(unread) {
  const counts = new Map();
  for (const c of (unread && unread.conversations) || []) counts.set(Number(c.userid), Number(c.noreadnum) || 0);
  for (const g of (unread && unread.groups) || []) counts.set(-Number(g.group_id), Number(g.noreadnum) || 0);
  return counts;
}

/**
 * @typedef {object} KeyValueStorage  strings by key, synchronous (localStorage, uni's *StorageSync)
 * @property {(key: string) => string | null} get
 * @property {(key: string, value: string) => void} set  may throw (quota)
 * @property {(key: string) => void} remove
 * @property {() => string[]} keys  every key held
 */

/** Storage that keeps nothing (no adapter storage given). */
export function memoryStorage() {
  const m = new Map();
  return {
    get: (k) => (m.has(k) ? m.get(k) : null),
    set: (k, v) => void m.set(k, String(v)),
    remove: (k) => void m.delete(k),
    keys: () => [...m.keys()],
  };
}

export class ChatStore {
  /**
   * @param {{id: number, username: string, userpic?: string}} user  the signed-in user
   * @param {{storage?: KeyValueStorage, keys?: Partial<import('./keys.js').StorageKeys>, detailCap?: number,
   *          names?: {user?: (id: number) => string, group?: (id: number) => string}}} [o]
   *   names: what to call a user or group whose name is not known yet ("User 5", "Group 7")
   */
  constructor(user, { storage, keys, detailCap = DETAIL_CAP, names } = {}) {
    this.me = user;
    this.uid = user.id;
    this.storage = storage || memoryStorage();
    this.keys = { ...defaultKeys, ...(keys || {}) };
    this.detailCap = detailCap;
    this.names = { user: (id) => `User ${id}`, group: (id) => `Group ${id}`, ...(names || {}) };
    this.detailPrefix = detailPrefix(this.keys, this.uid);
    const list = this.load(this.keys.chatlist(this.uid), []);
    this.list = Array.isArray(list) ? list.map(cleanItem).filter(Boolean) : [];
    const users = this.load(this.keys.users(this.uid), {});
    this.users = isObj(users) ? users : {};
    const receipts = this.load(this.keys.receipts(this.uid), {});
    this.receipts = isObj(receipts) ? receipts : {};
    const cursors = this.load(this.keys.cursors(this.uid), {});
    this.cursors = {};
    if (isObj(cursors)) {
      for (const [k, v] of Object.entries(cursors)) if (/^-?[1-9]\d{0,15}$/.test(k) && Number.isSafeInteger(v) && v > 0) this.cursors[k] = v;
    }
    const deleted = this.load(this.keys.deleted(this.uid), 0);
    this.deletedCursor = Number.isSafeInteger(deleted) && deleted > 0 ? deleted : 0;
    for (const k of this.keys.legacy(this.uid)) this.storage.remove(k);
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

  load(key, fallback) {
    try {
      const v = this.storage.get(key);
      return v === null || v === undefined || v === '' ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  }

  /** Stores value as JSON under key; false when the storage refused it (a quota). */
  trySet(key, value) {
    try {
      this.storage.set(key, JSON.stringify(value));
      return true;
    } catch {
      return false;
    }
  }

  write(key, value) {
    if (this.trySet(key, value)) return;
    // Quota: make room in the conversation caches (their stored messages: the server has them;
    // ours not stored yet stay), and try once more.
    this.shrinkStoredDetails();
    this.trySet(key, value); // else: not cached this time
  }

  // ---- users -----------------------------------------------------------------

  rememberUser(u) {
    if (!u || !Number.isSafeInteger(Number(u.id)) || typeof u.username !== 'string' || !u.username) return;
    const id = Number(u.id);
    const cur = this.users[id];
    const next = { id, username: u.username, userpic: typeof u.userpic === 'string' ? u.userpic : '' };
    if (cur && cur.username === next.username && cur.userpic === next.userpic) return;
    this.users[id] = next;
    this.write(this.keys.users(this.uid), this.users);
  }

  user(peer) {
    if (peer < 0) {
      const item = this.item(peer);
      const g = this.groups.get(-peer);
      return { id: -peer, username: (g && g.name) || (item && item.username) || this.names.group(-peer), userpic: (g && g.avatar) || (item && item.userpic) || '' };
    }
    const u = this.users[peer];
    if (u) return u;
    const item = this.item(peer);
    if (item && item.username) return { id: peer, username: item.username, userpic: item.userpic };
    return { id: peer, username: this.names.user(peer), userpic: '' };
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
    this.write(this.keys.chatlist(this.uid), this.list);
    const total = this.total();
    this.write(this.keys.noreadnum(this.uid), total);
    if (total !== this.lastTotal) {
      this.lastTotal = total;
      this.emit('total', total);
    }
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
      // Who wrote the last message: the item says (from_id); an older chatd's does not: keep what we knew.
      if (i.from_id) i.from_me = i.from_id === this.uid;
      else if (prev && prev.last_message_id === i.last_message_id) i.from_me = prev.from_me;
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
    for (const k of ['recalled', 'deleted', 'width', 'height']) {
      if (m[k] !== undefined) item[k] = m[k];
      else delete item[k];
    }
    item.from_me = m.from_id === this.uid;
    if (!group) item.from_id = m.from_id;
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
    return this.keys.chatdetail(this.uid, peer);
  }

  hasDetail(peer) {
    if (this.details.has(peer)) return true;
    const v = this.storage.get(this.detailKey(peer));
    return v !== null && v !== undefined && v !== '';
  }

  detail(peer) {
    let d = this.details.get(peer);
    if (!d) {
      const raw = this.load(this.detailKey(peer), []);
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
    const key = this.detailKey(peer);
    const stored = d.messages.filter((m) => m.id).length;
    // The newest detailCap stored messages, and every message still on its way. When the
    // storage refuses them (a quota: WeChat keeps 1 MB a key, 10 MB in all), fewer stored ones
    // (the server has them): never our messages not stored yet, and no other conversation's.
    for (let keep = Math.min(stored, this.detailCap); ; keep = keep > 1 ? Math.floor(keep / 2) : 0) {
      if (this.trySet(key, detailRecord(d.messages, stored - keep))) return;
      if (keep === 0) return; // not even ours fit: they stay in memory
    }
  }

  /** Keys of the storage that hold this user's conversations, with their peers. */
  storedDetails() {
    const prefix = this.detailPrefix;
    const out = [];
    if (prefix === null) {
      for (const peer of this.details.keys()) out.push({ key: this.detailKey(peer), peer });
      return out;
    }
    let keys = [];
    try {
      keys = this.storage.keys();
    } catch {
      /* no listing */
    }
    for (const k of keys) {
      if (!k.startsWith(prefix)) continue;
      const peer = Number(k.slice(prefix.length));
      if (Number.isSafeInteger(peer) && peer !== 0) out.push({ key: k, peer });
    }
    return out;
  }

  /** Removes every conversation cache from storage (signing out). */
  dropDetailCaches() {
    for (const { key } of this.storedDetails()) this.storage.remove(key);
  }

  /**
   * Drops the stored messages of every conversation, in memory and in storage (the server has
   * them: too much was missed, or the storage is full). Our messages not stored yet are kept,
   * in memory and in storage, to be sent.
   */
  dropStoredMessages() {
    for (const peer of this.cachedPeers()) {
      const d = this.detail(peer);
      const had = d.messages.length;
      d.messages = d.messages.filter((m) => !m.id);
      d.complete = false;
      d.fresh = false;
      if (d.messages.length) this.trySet(this.detailKey(peer), detailRecord(d.messages, 0));
      else this.storage.remove(this.detailKey(peer));
      if (had !== d.messages.length) this.emit('detail', peer);
    }
  }

  /** Storage full: the conversation caches keep only our messages not stored yet (memory keeps all). */
  shrinkStoredDetails() {
    for (const { key, peer } of this.storedDetails()) {
      const d = this.details.get(peer);
      const raw = d ? d.messages : this.load(key, []);
      const pending = Array.isArray(raw) ? raw.map(cleanMessage).filter((m) => m && !m.id) : [];
      if (pending.length) this.trySet(key, detailRecord(pending, 0));
      else this.storage.remove(key);
    }
  }

  /** Peers with a cached conversation (in memory or in storage). */
  cachedPeers() {
    const peers = new Set(this.details.keys());
    for (const { peer } of this.storedDetails()) peers.add(peer);
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
      // A recall notice withdraws a message we may hold (a later copy of it says so too).
      const target = recallTarget(m);
      if (target && this.flagMessages(d, [target], 'recalled')) changed = true;
      if (ids.has(m.id)) {
        // Known: only what the server may change afterwards (recalled, deleted for us) is taken.
        if (m.recalled && this.flagMessages(d, [m.id], 'recalled')) changed = true;
        if (m.deleted && this.flagMessages(d, [m.id], 'deleted')) changed = true;
        continue;
      }
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

  /**
   * Marks stored messages of detail d recalled or deleted (flag), emptying their data as the
   * server does. Returns whether one changed; the caller saves and emits.
   */
  flagMessages(d, ids, flag) {
    const want = new Set(ids);
    let changed = false;
    for (const m of d.messages) {
      if (!m.id || !want.has(m.id) || m[flag]) continue;
      m[flag] = true;
      m.data = '';
      delete m.width;
      delete m.height;
      changed = true;
    }
    return changed;
  }

  /** A recall learned from an answer (POST /chat/recall): the message and its list preview. */
  applyRecall(peer, id) {
    if (this.hasDetail(peer) && this.flagMessages(this.detail(peer), [id], 'recalled')) {
      this.saveDetail(peer);
      this.emit('detail', peer);
    }
    this.flagItem(peer, id, 'recalled');
  }

  flagItem(peer, id, flag) {
    const i = this.item(peer);
    if (!i || i.last_message_id !== id || i[flag]) return false;
    i[flag] = true;
    i.data = '';
    delete i.width;
    delete i.height;
    this.saveList();
    this.emit('list');
    return true;
  }

  /**
   * Hides messages deleted for this user (here, on another device, or learned from sync): they
   * stay in their conversation flagged deleted (seq stays gapless; views skip them), and a list
   * preview that was one of them says so.
   */
  hideMessages(ids) {
    const want = ids.filter(Number.isSafeInteger);
    if (!want.length) return;
    for (const peer of this.cachedPeers()) {
      if (!this.flagMessages(this.detail(peer), want, 'deleted')) continue;
      this.saveDetail(peer);
      this.emit('detail', peer);
    }
    for (const i of this.list) for (const id of want) this.flagItem(i.key, id, 'deleted');
  }

  setDeletedCursor(n) {
    if (!Number.isSafeInteger(n) || n <= this.deletedCursor) return;
    this.deletedCursor = n;
    this.write(this.keys.deleted(this.uid), n);
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
    this.write(this.keys.receipts(this.uid), this.receipts);
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
    this.write(this.keys.cursors(this.uid), this.cursors);
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
    const k = this.keys;
    const u = this.uid;
    for (const key of [k.chatlist(u), k.noreadnum(u), k.users(u), k.receipts(u), k.cursors(u), k.deleted(u), ...k.legacy(u)]) this.storage.remove(key);
    this.dropDetailCaches();
  }
}
