// preview.js: the one line a chat list item shows for its last message, in the app's words:
// a recall (the notice, or the message recalled) says who withdrew it, a picture is "[Picture]",
// a group's system message a notice, text is the text (with "You: " or the sender's name).

/** English words (the default). Functions get what varies. */
export const PREVIEW_EN = Object.freeze({
  recalledByMe: 'You withdrew a message',
  /** name: the peer's (1:1) or the group member's name; group: whether the item is a group. */
  recalledBy: (name) => (name ? `${name} withdrew a message` : 'A message was withdrawn'),
  deleted: '',
  image: '[Picture]',
  system: '[Group update]',
  other: (type) => `[${type}]`,
  mine: (text) => `You: ${text}`,
  sender: (name, text) => `${name}: ${text}`,
});

/** 中文 (the seed's words). */
export const PREVIEW_ZH = Object.freeze({
  recalledByMe: '你撤回了一条消息',
  recalledBy: (name, group) => (group ? `"${name}"撤回了一条消息` : '对方撤回了一条消息'),
  deleted: '',
  image: '[图片]',
  system: '[群通知]',
  other: (type) => `[${type}]`,
  mine: (text) => `我: ${text}`,
  sender: (name, text) => `${name}: ${text}`,
});

/**
 * The preview of a chat list item (client.chatList's): never the raw data of a recall notice
 * ('{"message_id":1}') or of a system message.
 * @param {object} item  a chat list item
 * @param {number} uid  the signed-in user's id (client.uid)
 * @param {Partial<typeof PREVIEW_EN>} [words]  PREVIEW_ZH, or your own (any subset of PREVIEW_EN's)
 * @returns {string}
 */
export function previewOf(item, uid, words = {}) {
  const w = { ...PREVIEW_EN, ...words };
  const group = item.chat_type === 'group';
  // Who wrote the last message: from_id (groups, and 1:1 items of a newer chatd), else from_me.
  const mine = item.from_id ? Number(item.from_id) === Number(uid) : !!item.from_me;
  const name = group ? item.from_username || '' : item.username || '';
  // A recall notice's author is the one who withdrew; a recalled message's author too.
  if (item.type === 'recall' || item.recalled) return mine ? w.recalledByMe : w.recalledBy(name, group);
  if (item.deleted) return w.deleted;
  if (item.type === 'system') return w.system;
  let text;
  if (item.type === 'text' || item.type === 'emoji') text = item.data || '';
  else if (item.type === 'image') text = w.image;
  else text = w.other(item.type);
  if (mine) return w.mine(text);
  if (group && name) return w.sender(name, text);
  return text;
}
