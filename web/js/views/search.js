// views/search.js: find a user by name to start a chat.
import { client } from '../chat.js';
import { avatar, h } from '../dom.js';

/**
 * @param {object} o
 * @param {HTMLInputElement} o.input
 * @param {HTMLElement} o.results
 * @param {HTMLElement} o.hint
 * @param {() => import('/sdk/index.js').ChatStore} o.store
 */
export function setupSearch({ input, results, hint }, getStore) {
  let timer = 0;
  let seq = 0;
  const showHint = (text) => {
    hint.textContent = text;
    hint.hidden = !text;
  };
  const run = async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      results.replaceChildren();
      showHint('Type a name to find people to chat with.');
      return;
    }
    showHint('Searching…');
    let users;
    try {
      users = await client.api.search(q);
    } catch (e) {
      if (mine === seq) showHint(e.message);
      return;
    }
    if (mine !== seq) return;
    const store = getStore();
    results.replaceChildren(
      ...users.map((u) => {
        if (store) store.rememberUser(u);
        return h(
          'li',
          { class: 'user-item', dataset: { user: u.id } },
          h('a', { class: 'user-link', href: `#/chat/${u.id}` }, avatar(u), h('span', { class: 'user-name', text: u.username }), h('span', { class: 'user-action', text: 'Message' })),
        );
      }),
    );
    showHint(users.length ? '' : `No one is called “${q}”.`);
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, 200);
  });
  input.form?.addEventListener('submit', (e) => {
    e.preventDefault();
    clearTimeout(timer);
    run();
  });
  return {
    reset() {
      input.value = '';
      results.replaceChildren();
      showHint('Type a name to find people to chat with.');
    },
    focus() {
      input.focus();
    },
  };
}
