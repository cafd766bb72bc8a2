// views/list.js: the chat list (avatar, name, last message, time, unread badge).
import { avatar, h } from '../dom.js';
import { badgeText, listTime, preview } from '../format.js';

/**
 * Renders store.list into ul. Rows are kept per peer so avatars do not reload.
 * @param {HTMLElement} ul
 * @param {import('../store.js').ChatStore} store
 * @param {{current: number|null, typing: Set<number>}} o
 */
export function renderList(ul, store, { current = null, typing = new Set() } = {}) {
  const rows = new Map();
  for (const li of ul.children) rows.set(Number(li.dataset.peer), li);
  const wanted = [];
  for (const item of store.list) {
    let li = rows.get(item.userid);
    const sig = `${item.username}\u0000${item.userpic}`;
    if (!li) {
      li = h('li', { class: 'chat-item', dataset: { peer: item.userid } });
    }
    if (li.dataset.sig !== sig) {
      li.dataset.sig = sig;
      li._avatar = avatar({ id: item.userid, username: item.username, userpic: item.userpic });
    }
    const isTyping = typing.has(item.userid);
    const text = isTyping ? 'typing…' : (item.from_me ? 'You: ' : '') + preview(item.type, item.data);
    const link = h(
      'a',
      { class: 'chat-link', href: `#/chat/${item.userid}`, 'aria-current': current === item.userid ? 'page' : null },
      li._avatar,
      h(
        'span',
        { class: 'chat-main' },
        h('span', { class: 'chat-top' }, h('span', { class: 'chat-name', text: item.username }), h('time', { class: 'chat-time', text: listTime(item.time) })),
        h(
          'span',
          { class: 'chat-bottom' },
          h('span', { class: `chat-preview${isTyping ? ' typing' : ''}`, text }),
          item.noreadnum > 0
            ? h('span', { class: 'unread', 'aria-label': `${item.noreadnum} unread`, text: badgeText(item.noreadnum) })
            : null,
        ),
      ),
    );
    li.replaceChildren(link);
    li.dataset.unread = String(item.noreadnum);
    li.classList.toggle('active', current === item.userid);
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
