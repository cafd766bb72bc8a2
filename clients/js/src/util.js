// util.js: small helpers the client's modules share: conversation keys, the
// socket's target of one, ids for client_msg_id, UTF-8 lengths.

/** The server's default --max-text, until GET /chat/config says. */
export const DEFAULT_MAX_TEXT = 4096;

/** Bytes of s in UTF-8 (what the server's limits count). */
export const utf8Length = (s) => {
  let n = 0;
  for (const ch of s) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
};

/** A UUID v4 for client_msg_id (crypto.randomUUID where the platform has it). */
export function randomId() {
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

/** The socket's target of a conversation: {to_id} or {group_id}. */
export function socketTarget(key) {
  return key < 0 ? { group_id: -key } : { to_id: key };
}

/** A promise whose rejection, when nobody waits for it, is not reported as unhandled. */
export function handled(p) {
  p.catch(() => {});
  return p;
}
