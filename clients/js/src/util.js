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

/**
 * A UUID v4 for client_msg_id: crypto.randomUUID where the platform has it (a browser page has
 * it only in a secure context), else crypto.getRandomValues (any page), else Math.random (a
 * mini-program without crypto: ids need to be unique per sender, not secret).
 */
export function randomId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') {
    try {
      return c.randomUUID();
    } catch {
      /* not a secure context */
    }
  }
  let b;
  if (c && typeof c.getRandomValues === 'function') b = c.getRandomValues(new Uint8Array(16));
  else b = Uint8Array.from({ length: 16 }, () => Math.floor(Math.random() * 256));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
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
