// The SDK's pure parts, without a server: the state (store.js) with recall
// notices, deletes, pending messages and seq cursors; the storage keys and
// their override; backoff; conversation keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChatStore, backoffDelay, conversationKey, defaultKeys, groupKey, memoryStorage } from '../../clients/js/src/index.js';

const ME = { id: 5, username: 'me', userpic: '' };
const msg = (o) => ({ id: 0, seq: 0, to_id: ME.id, from_id: 9, from_username: 'nine', from_userpic: '', type: 'text', data: 'x', time: 1, client_msg_id: null, ...o });

test('a recall notice marks the message it names; a later copy stays recalled', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  s.merge(9, [msg({ id: 10, seq: 1, data: 'hello' }), msg({ id: 11, seq: 2, type: 'image', data: '/media/a.png', width: 4, height: 3 })]);
  assert.deepEqual(s.detail(9).messages.map((m) => [m.id, m.width, m.height]), [[10, undefined, undefined], [11, 4, 3]]);
  s.merge(9, [msg({ id: 12, seq: 3, type: 'recall', data: JSON.stringify({ message_id: 11 }) })]);
  const m = s.detail(9).messages.find((x) => x.id === 11);
  assert.equal(m.recalled, true);
  assert.equal(m.data, '');
  assert.equal(m.width, undefined);
  assert.deepEqual(s.detail(9).messages.map((x) => x.id), [10, 11, 12], 'the notice is held (seq 3), for views to skip');
  // History fetched later carries recalled: true.
  s.merge(9, [msg({ id: 10, seq: 1, data: '', recalled: true })]);
  assert.equal(s.detail(9).messages.find((x) => x.id === 10).recalled, true);
  // The list item whose last message was recalled shows it withdrawn.
  s.setList([{ chat_type: 'single', userid: 9, username: 'nine', type: 'text', data: 'hello', time: 1, noreadnum: 0, last_message_id: 10, last_seq: 3 }], null);
  s.applyRecall(9, 10);
  assert.equal(s.item(9).recalled, true);
  assert.equal(s.item(9).data, '');
});

test('messages deleted for us are flagged and emptied everywhere; the list item is marked', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  s.setList([{ chat_type: 'single', userid: 9, username: 'nine', type: 'text', data: 'b', time: 2, noreadnum: 0, last_message_id: 21, last_seq: 2 }], null);
  s.merge(9, [msg({ id: 20, seq: 1, data: 'a' }), msg({ id: 21, seq: 2, data: 'b' }), msg({ id: 22, seq: 3, data: '', deleted: true })]);
  const flags = () => s.detail(9).messages.map((m) => [m.id, !!m.deleted, m.data]);
  assert.deepEqual(flags(), [[20, false, 'a'], [21, false, 'b'], [22, true, '']]);
  s.hideMessages([21, 999]);
  assert.deepEqual(flags(), [[20, false, 'a'], [21, true, ''], [22, true, '']]);
  assert.equal(s.item(9).deleted, true, 'the list item whose last message it was');
  assert.equal(s.item(9).data, '');
  s.merge(9, [msg({ id: 20, seq: 1, data: 'a', deleted: true })]);
  assert.deepEqual(flags(), [[20, true, ''], [21, true, ''], [22, true, '']], 'a copy that says deleted flags it');
  s.setDeletedCursor(7);
  s.setDeletedCursor(3);
  assert.equal(new ChatStore(ME, { storage: s.storage }).deletedCursor, 7, 'the cursor is kept and never moves back');
});

test('a pending message is replaced by its stored copy, by client_msg_id', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  s.addPending(9, { id: 0, client_msg_id: 'c1', from_id: ME.id, to_id: 9, type: 'text', data: 'hi', time: 5, state: 'sending' });
  s.merge(9, [{ ...msg({ id: 30, seq: 1, from_id: ME.id, to_id: 9, data: 'hi' }), client_msg_id: 'c1' }]);
  assert.deepEqual(s.detail(9).messages.map((m) => [m.id, m.state]), [[30, undefined]]);
});

test('seq cursors: the next seq moves the cursor, a hole is reported until filled', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  assert.equal(s.noteSeq(9, 1), false);
  assert.equal(s.cursor(9), 1);
  assert.equal(s.noteSeq(9, 3), true, 'seq 2 is missing');
  assert.equal(s.hasGaps(), true);
  assert.equal(s.noteSeq(9, 2), false);
  assert.equal(s.cursor(9), 3, 'filled: the cursor moves over the seq seen ahead');
  assert.equal(s.hasGaps(), false);
  assert.deepEqual(s.cursorsFor(), { 9: 3 });
  s.setCursor(-7, 4);
  assert.deepEqual(s.cursorsFor(), { 9: 3, g7: 4 }, 'a group\'s cursor key is g<id>');
});

test('storage: the seed\'s keys by default, any of them overridden, and sign-out removes them all', () => {
  const storage = memoryStorage();
  const s = new ChatStore(ME, { storage });
  s.setList([{ chat_type: 'single', userid: 9, username: 'nine', type: 'text', data: 'x', time: 1, noreadnum: 2, last_message_id: 1, last_seq: 1 }], null);
  s.merge(9, [msg({ id: 1, seq: 1 })]);
  s.merge(-7, [msg({ id: 2, seq: 1, group_id: 7, to_id: undefined })]);
  s.setCursor(9, 1);
  assert.deepEqual(storage.keys().sort(), ['chatdetail_5_-7', 'chatdetail_5_9', 'chatlist5', 'chatseq5', 'chatusers5', 'noreadnum5'].sort());
  assert.equal(storage.get('noreadnum5'), '2');
  assert.deepEqual(new ChatStore(ME, { storage }).cachedPeers().sort(), [-7, 9]);
  s.forget();
  assert.deepEqual(storage.keys(), []);

  // Keys with no common prefix for chatdetail: conversations are found in memory only.
  const other = memoryStorage();
  const o = new ChatStore(ME, { storage: other, keys: { chatdetail: (uid, peer) => `conv:${peer < 0 ? 'g' + -peer : peer}@${uid}`, noreadnum: (uid) => `unread-${uid}` } });
  o.setList([], null);
  o.merge(9, [msg({ id: 1, seq: 1 })]);
  assert.ok(other.keys().includes('conv:9@5'));
  assert.ok(other.keys().includes('unread-5'));
  assert.deepEqual(o.cachedPeers(), [9]);
  o.forget();
  assert.deepEqual(other.keys().filter((k) => !k.startsWith('conv:')), [], 'the keys it knows are gone');
  assert.equal(defaultKeys.chatdetail(5, -7), 'chatdetail_5_-7');
});

test('an older web client\'s chatlastid key is dropped; a broken cache is ignored', () => {
  const storage = memoryStorage();
  storage.set('chatlastid5', '17');
  storage.set('chatlist5', '{not json');
  storage.set('chatseq5', JSON.stringify({ 9: 3, bad: 1, 10: -1 }));
  const s = new ChatStore(ME, { storage });
  assert.equal(storage.get('chatlastid5'), null);
  assert.deepEqual(s.list, []);
  assert.deepEqual(s.cursors, { 9: 3 });
});

test('who wrote a 1:1 conversation\'s last message: the list item\'s from_id, else what was known', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  const item = (o) => ({ chat_type: 'single', userid: 9, username: 'nine', type: 'text', data: 'x', time: 1, noreadnum: 0, last_message_id: 3, last_seq: 3, ...o });
  s.setList([item({ from_id: ME.id })], null);
  assert.equal(s.item(9).from_me, true);
  s.setList([item({ from_id: 9 })], null);
  assert.equal(s.item(9).from_me, false);
  s.bump(msg({ id: 4, seq: 4, from_id: ME.id, to_id: 9 }));
  assert.deepEqual([s.item(9).from_me, s.item(9).from_id], [true, ME.id]);
  s.setList([item({ last_message_id: 4, last_seq: 4 })], null); // an older chatd: no from_id
  assert.equal(s.item(9).from_me, true, 'kept for the same last message');
});

test('names for users and groups not known yet can be given', () => {
  const s = new ChatStore(ME, { storage: memoryStorage() });
  assert.equal(s.user(42).username, 'User 42');
  assert.equal(s.user(-7).username, 'Group 7');
  const zh = new ChatStore(ME, { storage: memoryStorage(), names: { user: (id) => `用户 ${id}`, group: (id) => `群 ${id}` } });
  assert.equal(zh.user(42).username, '用户 42');
  assert.equal(zh.user(-7).username, '群 7');
});

test('backoff: equal jitter, doubling to the cap; conversation keys', () => {
  assert.equal(backoffDelay(0, 500, 15000, () => 0), 250);
  assert.equal(backoffDelay(0, 500, 15000, () => 1), 500);
  assert.equal(backoffDelay(3, 500, 15000, () => 0), 2000);
  assert.equal(backoffDelay(30, 500, 15000, () => 1), 15000);
  assert.equal(conversationKey(42), 42);
  assert.equal(conversationKey({ group_id: 7 }), -7);
  assert.equal(conversationKey({ to_id: 3 }), 3);
  assert.equal(conversationKey({ userid: 4 }), 4);
  assert.equal(conversationKey({ key: -9, userid: 1 }), -9);
  assert.equal(groupKey(7), -7);
});

test('client_msg_id: a UUID v4 with crypto.randomUUID, getRandomValues only, or no crypto at all', async () => {
  const { randomId } = await import('../../clients/js/src/util.js');
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'crypto');
  const real = globalThis.crypto;
  try {
    for (const crypto of [real, { getRandomValues: (a) => real.getRandomValues(a) }, undefined]) {
      Object.defineProperty(globalThis, 'crypto', { value: crypto, configurable: true });
      const ids = new Set(Array.from({ length: 50 }, () => randomId()));
      assert.equal(ids.size, 50);
      for (const id of ids) assert.match(id, UUID);
    }
  } finally {
    Object.defineProperty(globalThis, 'crypto', saved);
  }
});

test('storage full: only the conversation that does not fit is trimmed (its oldest stored messages); unsent messages are never dropped', () => {
  // WeChat's limits, scaled down: a key holds at most 4000 bytes, the storage 20000.
  const inner = memoryStorage();
  const storage = {
    ...inner,
    set(k, v) {
      if (k.length + v.length > 4000) throw new Error('setStorageSync:fail exceed storage item max length');
      let total = k.length + v.length;
      for (const o of inner.keys()) if (o !== k) total += o.length + inner.get(o).length;
      if (total > 20000) throw new Error('setStorageSync:fail exceed storage max size');
      inner.set(k, v);
    },
  };
  const s = new ChatStore(ME, { storage });
  s.addPending(8, { id: 0, client_msg_id: 'c8', from_id: ME.id, to_id: 8, type: 'text', data: 'unsent to 8', time: 5, state: 'sending' });
  s.merge(8, [msg({ id: 1, seq: 1, from_id: 8, data: 'from 8' })]);
  s.addPending(9, { id: 0, client_msg_id: 'c9', from_id: ME.id, to_id: 9, type: 'text', data: 'unsent to 9', time: 5, state: 'failed' });
  const big = 'x'.repeat(300);
  s.merge(9, Array.from({ length: 40 }, (_, i) => msg({ id: 100 + i, seq: i + 1, data: big + i })));
  assert.equal(s.detail(9).messages.length, 41, 'memory keeps every message');
  const again = new ChatStore(ME, { storage });
  assert.deepEqual(again.detail(8).messages.map((m) => m.data), ['from 8', 'unsent to 8'], 'the other conversation is untouched');
  const nine = again.detail(9).messages;
  assert.ok(nine.length > 1 && nine.length < 41, `${nine.length} kept`);
  assert.equal(nine.at(-1).client_msg_id, 'c9', 'the unsent message is kept');
  assert.equal(nine.at(-2).data, big + 39, 'the newest stored messages are kept');
  // A list too big for the storage left: the caches give their stored messages, never the unsent.
  for (let i = 0; i < 8; i++) s.merge(20 + i, Array.from({ length: 10 }, (_, j) => msg({ id: 1000 + i * 100 + j, seq: j + 1, from_id: 20 + i, data: big })));
  s.setList(Array.from({ length: 6 }, (_, i) => ({ chat_type: 'single', userid: 50 + i, username: 'u'.repeat(150), type: 'text', data: 'y', time: 1, noreadnum: 0, last_message_id: 1, last_seq: 1 })), null);
  const third = new ChatStore(ME, { storage });
  assert.equal(third.list.length, 6, 'the list was stored');
  assert.deepEqual(third.detail(8).messages.filter((m) => !m.id).map((m) => m.data), ['unsent to 8']);
  assert.deepEqual(third.detail(9).messages.filter((m) => !m.id).map((m) => m.data), ['unsent to 9']);
});

test('previewOf: a recall says who withdrew it (never the notice\'s JSON); pictures, notices, text with its author', async () => {
  const { previewOf, PREVIEW_ZH } = await import('../../clients/js/src/index.js');
  const s = new ChatStore(ME, { storage: memoryStorage() });
  const one = { chat_type: 'single', userid: 9, username: 'nine', time: 1, noreadnum: 0, last_message_id: 3, last_seq: 3 };
  const notice = { type: 'recall', data: JSON.stringify({ message_id: 1 }) };
  s.setList([{ ...one, ...notice, from_id: 9 }, { ...one, userid: 8, username: 'eight', ...notice, from_id: ME.id }], null);
  assert.equal(previewOf(s.item(9), ME.id, PREVIEW_ZH), '对方撤回了一条消息');
  assert.equal(previewOf(s.item(8), ME.id, PREVIEW_ZH), '你撤回了一条消息');
  assert.equal(previewOf(s.item(9), ME.id), 'nine withdrew a message');
  // Pushed: the notice bumps the item (from_id set from the message).
  s.bump(msg({ id: 4, seq: 4, from_id: 9, ...notice }));
  assert.equal(previewOf(s.item(9), ME.id, PREVIEW_ZH), '对方撤回了一条消息');
  // A recalled last message (recalled: true, data "").
  s.setList([{ ...one, type: 'text', data: '', recalled: true, from_id: ME.id }], null);
  assert.equal(previewOf(s.item(9), ME.id, PREVIEW_ZH), '你撤回了一条消息');
  const g = { chat_type: 'group', group_id: 7, name: 'trip', time: 1, noreadnum: 0, last_message_id: 3, last_seq: 3, from_id: 9, from_username: 'nine' };
  s.setList([{ ...g, ...notice }], null);
  assert.equal(previewOf(s.item(-7), ME.id, PREVIEW_ZH), '"nine"撤回了一条消息');
  s.setList([{ ...g, type: 'text', data: 'hi' }, { ...one, type: 'image', data: '/media/x.png', from_id: ME.id }, { ...g, group_id: 6, type: 'system', data: '{"event":"create"}' }], null);
  assert.equal(previewOf(s.item(-7), ME.id, PREVIEW_ZH), 'nine: hi');
  assert.equal(previewOf(s.item(9), ME.id, PREVIEW_ZH), '我: [图片]');
  assert.equal(previewOf(s.item(-6), ME.id, PREVIEW_ZH), '[群通知]');
  assert.equal(previewOf({ ...one, type: 'text', data: 'x', deleted: true }, ME.id), '');
});
