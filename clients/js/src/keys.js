// keys.js: the storage keys the SDK uses, per signed-in user uid. The first
// three are the seed tutorial's (its uni-app client keeps the same data
// under them), so an app that used them reads the same cache; the others
// are the SDK's own. Pass `keys: {chatlist: (uid) => ..., ...}` to
// ChatClient to change any of them.

/**
 * @typedef {object} StorageKeys
 * @property {(uid: number) => string} chatlist  the chat list (JSON array)
 * @property {(uid: number, peer: number) => string} chatdetail  one conversation's newest messages (JSON array, oldest first); peer is the partner's id, or minus a group's id
 * @property {(uid: number) => string} noreadnum  the unread total (JSON number)
 * @property {(uid: number) => string} users  names and pictures seen
 * @property {(uid: number) => string} receipts  what each peer has read
 * @property {(uid: number) => string} cursors  the sync cursors (seq per conversation)
 * @property {(uid: number) => string} deleted  the delete-for-me cursor
 * @property {(uid: number) => string[]} legacy  keys of older clients, removed when seen
 */

/** @type {StorageKeys} */
export const defaultKeys = Object.freeze({
  chatlist: (uid) => `chatlist${uid}`,
  chatdetail: (uid, peer) => `chatdetail_${uid}_${peer}`,
  noreadnum: (uid) => `noreadnum${uid}`,
  users: (uid) => `chatusers${uid}`,
  receipts: (uid) => `chatreceipt${uid}`,
  cursors: (uid) => `chatseq${uid}`,
  deleted: (uid) => `chatdeleted${uid}`,
  legacy: (uid) => [`chatlastid${uid}`],
});

/**
 * The prefix of every chatdetail key of uid, found by asking the key function for a
 * marker peer; null when the keys do not share one (then cached conversations are
 * found only in memory).
 * @param {StorageKeys} keys
 * @param {number} uid
 */
export function detailPrefix(keys, uid) {
  const a = keys.chatdetail(uid, 1);
  const b = keys.chatdetail(uid, 2);
  if (!a.endsWith('1') || !b.endsWith('2') || a.slice(0, -1) !== b.slice(0, -1)) return null;
  const prefix = a.slice(0, -1);
  return keys.chatdetail(uid, -7) === `${prefix}-7` ? prefix : null;
}
