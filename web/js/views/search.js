// views/search.js: find a user by name to start a chat.
import { client } from '../chat.js';
import { avatar, h } from '../dom.js';
import { errText, onLangChange, t } from '../i18n.js';

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
      showHint(t('find.hint'));
      return;
    }
    showHint(t('find.searching'));
    let users;
    try {
      users = await client.api.search(q);
    } catch (e) {
      if (mine === seq) showHint(errText(e));
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
          h('a', { class: 'user-link', href: `#/chat/${u.id}` }, avatar(u), h('span', { class: 'user-name', text: u.username }), h('span', { class: 'user-action', text: t('find.message') })),
        );
      }),
    );
    showHint(users.length ? '' : t('find.none', { q }));
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
  onLangChange(() => run()); // the hint and the results' buttons in the new language
  return {
    reset() {
      input.value = '';
      results.replaceChildren();
      showHint(t('find.hint'));
    },
    focus() {
      input.focus();
    },
  };
}
