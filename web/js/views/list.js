// views/list.js: the chat list (avatar, name, last message, time, unread badge).
// 1:1 conversations and groups in one list, most recent first; a 1:1 item's
// avatar has an online dot, a group item names the last message's sender, a
// muted group shows a muted icon (its count stays on the item, not in the badge).
import { avatar, h, withPresence } from '../dom.js';
import { badgeText, listTime, preview, systemText } from '../format.js';
import { t } from '../i18n.js';
import { systemData } from '/sdk/index.js';
import { recallText } from './menu.js';

const MUTED_ICON = 'M11 5L6 9H3v6h3l5 4zM22 9l-6 6M16 9l6 6';

function mutedIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'muted-icon');
  svg.setAttribute('aria-label', t('list.muted'));
  svg.setAttribute('role', 'img');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', MUTED_ICON);
  svg.append(path);
  return svg;
}

/** The preview line of a list item. */
export function itemPreview(store, item) {
  // The last message recalled (or the recall notice), or deleted for us.
  if (item.type === 'recall' || item.recalled) return recallText(item.from_me, item.chat_type === 'group' ? item.from_username : item.username);
  if (item.deleted) return '';
  if (item.type === 'system') {
    return systemText(systemData(item), item.from_id === store.uid ? store.me.username : item.from_username, (id) => store.user(id).username);
  }
  const text = preview(item.type, item.data);
  if (store.pendingState(item) === 'failed') return t('preview.failed', { text });
  if (item.from_me) return t('preview.mine', { text });
  if (item.chat_type === 'group' && item.from_username) return t('preview.sender', { name: item.from_username, text });
  return text;
}

/**
 * Renders store.list into ul. Rows are kept per conversation so avatars do not reload.
 * @param {HTMLElement} ul
 * @param {import('/sdk/index.js').ChatStore} store
 * @param {{current: number|null, typing: Map<number, string>}} o  typing: conversation key -> what to show
 */
export function renderList(ul, store, { current = null, typing = new Map() } = {}) {
  const rows = new Map();
  for (const li of ul.children) rows.set(Number(li.dataset.peer), li);
  const wanted = [];
  for (const item of store.list) {
    const group = item.chat_type === 'group';
    let li = rows.get(item.key);
    const sig = `${item.username}\u0000${item.userpic}`;
    if (!li) {
      li = h('li', { class: `chat-item${group ? ' group' : ''}`, dataset: group ? { peer: item.key, group: item.group_id } : { peer: item.key } });
    }
    if (li.dataset.sig !== sig) {
      li.dataset.sig = sig;
      li._avatar = avatar({ id: group ? item.group_id : item.userid, username: item.username, userpic: item.userpic });
    }
    const typingText = typing.get(item.key) || '';
    const text = typingText || itemPreview(store, item);
    const failed = !typingText && store.pendingState(item) === 'failed';
    const p = group ? null : store.presenceOf(item.userid);
    const link = h(
      'a',
      { class: 'chat-link', href: group ? `#/group/${item.group_id}` : `#/chat/${item.userid}`, 'aria-current': current === item.key ? 'page' : null },
      group ? li._avatar : withPresence(li._avatar, !!(p && p.online)),
      h(
        'span',
        { class: 'chat-main' },
        h(
          'span',
          { class: 'chat-top' },
          h('span', { class: 'chat-name', text: item.username }),
          item.muted ? mutedIcon() : null,
          h('time', { class: 'chat-time', text: listTime(item.time) }),
        ),
        h(
          'span',
          { class: 'chat-bottom' },
          h('span', { class: `chat-preview${typingText ? ' typing' : ''}${item.type === 'system' && !typingText ? ' system' : ''}${failed ? ' failed' : ''}`, text }),
          item.noreadnum > 0
            ? h('span', { class: `unread${item.muted ? ' muted' : ''}`, 'aria-label': t('badge.unread', { count: item.noreadnum }), text: badgeText(item.noreadnum) })
            : null,
        ),
      ),
    );
    li.replaceChildren(link);
    li.dataset.unread = String(item.noreadnum);
    li.classList.toggle('active', current === item.key);
    li.classList.toggle('muted', !!item.muted);
    wanted.push(li);
  }
  // Put rows in order, moving only what moved.
  let cursor = ul.firstChild;
  for (const li of wanted) {
    if (li === cursor) cursor = cursor.nextSibling;
    else ul.insertBefore(li, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}
