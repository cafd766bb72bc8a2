// views/group.js: groups. The "New group" dialog (a name, members picked from
// /user/search) and a group's members panel (members with their roles and
// online dots; add, remove, roles and ownership, rename, mute, leave and
// dissolve, each offered only to whom the server allows it: docs/API.md
// "Groups"). Every name goes into the page as text.
import { client } from '../chat.js';
import { avatar, h, withPresence } from '../dom.js';
import { errText, onLangChange, t } from '../i18n.js';

const bytes = (s) => new TextEncoder().encode(s).length;
const ROLE_LABEL = { owner: 'group.role_owner', admin: 'group.role_admin', member: '' };

/** A debounced /user/search into a list of users, each with one button. */
function searchBox(input, results, hint, button) {
  let timer = 0;
  let seq = 0;
  const run = async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      results.replaceChildren();
      hint.hidden = true;
      return;
    }
    let users;
    try {
      users = await client.api.search(q);
    } catch (e) {
      if (mine === seq) {
        hint.textContent = errText(e);
        hint.hidden = false;
      }
      return;
    }
    if (mine !== seq) return;
    hint.textContent = users.length ? '' : t('find.none', { q });
    hint.hidden = !!users.length;
    results.replaceChildren(
      ...users.map((u) => h('li', { class: 'user-item', dataset: { user: u.id } }, avatar(u, 'sm'), h('span', { class: 'user-name', text: u.username }), button(u))),
    );
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, 200);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      clearTimeout(timer);
      run();
    }
  });
  onLangChange(() => input.value.trim() && run());
  return {
    rerun: run,
    reset() {
      seq += 1;
      input.value = '';
      results.replaceChildren();
      hint.hidden = true;
    },
  };
}

/**
 * The "New group" dialog.
 * @param {HTMLDialogElement} dialog
 * @param {{create: (name: string, ids: number[]) => Promise<void>, me: () => number}} o
 */
export function setupNewGroup(dialog, { create, me }) {
  const $ = (sel) => dialog.querySelector(sel);
  const name = $('#group-name');
  const picked = $('#group-picked');
  const error = $('#group-error');
  const submit = $('#group-create');
  const chosen = new Map(); // id -> user
  const showError = (msg) => {
    error.textContent = msg || '';
    error.hidden = !msg;
  };
  const renderPicked = () => {
    picked.replaceChildren(
      ...[...chosen.values()].map((u) =>
        h('li', { class: 'chip', dataset: { user: u.id } }, h('span', { text: u.username }), h('button', { type: 'button', class: 'chip-x', 'aria-label': t('group.remove_chip', { name: u.username }), text: '×', onclick: () => toggle(u) })),
      ),
    );
    picked.hidden = chosen.size === 0;
    search.rerun();
  };
  const toggle = (u) => {
    if (chosen.has(u.id)) chosen.delete(u.id);
    else chosen.set(u.id, u);
    renderPicked();
  };
  const search = searchBox($('#group-q'), $('#group-results'), $('#group-hint'), (u) => {
    if (u.id === me()) return h('span', { class: 'user-action', text: t('group.you') });
    const on = chosen.has(u.id);
    return h('button', { type: 'button', class: `pick${on ? ' on' : ''}`, 'aria-pressed': String(on), text: on ? t('group.added') : t('group.add'), onclick: () => toggle(u) });
  });
  let busy = false;
  dialog.querySelector('form').addEventListener('submit', async (e) => {
    e.preventDefault();
    if (busy) return;
    const n = name.value.trim();
    if (!n || bytes(n) > 64) return showError(t('group.name_length'));
    if (/[\u0000-\u001f\u007f]/.test(n)) return showError(t('group.name_control'));
    busy = true;
    submit.disabled = true;
    showError('');
    try {
      await create(n, [...chosen.keys()]);
      dialog.close();
    } catch (err) {
      showError(errText(err));
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });
  $('#group-cancel').addEventListener('click', () => dialog.close());
  return {
    open() {
      chosen.clear();
      name.value = '';
      search.reset();
      renderPicked();
      showError('');
      dialog.showModal();
      name.focus();
    },
  };
}

/**
 * The members panel of the open group.
 * @param {HTMLElement} panel
 * @param {{add, remove, role, leave, rename, mute, dissolve}} actions  each (…) => Promise
 */
export function setupMembers(panel, actions) {
  const $ = (sel) => panel.querySelector(sel);
  let state = { store: null, key: 0 };
  const run = async (fn, ...args) => {
    try {
      await fn(...args);
    } catch (e) {
      const err = $('#members-error');
      err.textContent = errText(e);
      err.hidden = false;
    }
  };
  const search = searchBox($('#members-q'), $('#members-results'), $('#members-hint'), (u) => {
    const g = state.store && state.store.groups.get(-state.key);
    const member = g && g.members.some((m) => Number(m.userid) === u.id);
    if (member) return h('span', { class: 'user-action', text: t('group.member') });
    return h('button', { type: 'button', class: 'pick', text: t('group.add'), onclick: () => run(actions.add, [u.id]).then(() => search.reset()) });
  });
  $('#group-rename-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const n = $('#group-rename').value.trim();
    if (n) run(actions.rename, n);
  });
  $('#group-mute').addEventListener('change', (e) => run(actions.mute, e.target.checked));
  $('#group-leave').addEventListener('click', () => {
    if (confirm(t('group.leave_confirm'))) run(actions.leave);
  });
  $('#group-dissolve').addEventListener('click', () => {
    if (confirm(t('group.dissolve_confirm'))) run(actions.dissolve);
  });
  $('#members-close').addEventListener('click', () => view.hide());

  const view = {
    get open() {
      return !panel.hidden;
    },
    show(store, key) {
      const fresh = state.key !== key;
      state = { store, key };
      if (fresh) {
        search.reset();
        $('#group-rename').value = '';
      }
      panel.hidden = false;
      view.render();
    },
    hide() {
      panel.hidden = true;
      search.reset();
    },
    /** Brings the panel in line with the store's group info (when shown). */
    render() {
      const { store, key } = state;
      if (panel.hidden || !store) return;
      const gid = -key;
      const g = store.groups.get(gid);
      const item = store.item(key) || {};
      const role = (g && g.role) || item.role || 'member';
      const active = !(item.left || item.dissolved || (g && (g.left || g.dissolved)));
      const manager = active && (role === 'owner' || role === 'admin');
      $('#members-error').hidden = true;
      $('#members-add').hidden = !manager;
      $('#group-rename-form').hidden = !manager;
      if (manager && !$('#group-rename').value && document.activeElement !== $('#group-rename')) $('#group-rename').value = store.user(key).username;
      $('#group-mute-row').hidden = !active;
      $('#group-mute').checked = !!item.muted;
      $('#group-leave').hidden = !active;
      $('#group-dissolve').hidden = !(active && role === 'owner');
      const members = (g && g.members) || [];
      $('#members-count').textContent = members.length ? t('conv.members', { count: members.length }) : '';
      $('#members-list').replaceChildren(
        ...members.map((m) => {
          const id = Number(m.userid);
          const p = store.presenceOf(id);
          const u = { id, username: m.username, userpic: m.userpic };
          const me = id === store.uid;
          const buttons = [];
          if (active && !me) {
            const canRemove = role === 'owner' || (role === 'admin' && m.role === 'member');
            if (role === 'owner' && m.role !== 'owner') {
              const next = m.role === 'admin' ? 'member' : 'admin';
              buttons.push(h('button', { type: 'button', class: 'member-role', text: t(next === 'admin' ? 'group.make_admin' : 'group.make_member'), onclick: () => run(actions.role, id, next) }));
              buttons.push(
                h('button', {
                  type: 'button',
                  class: 'member-owner',
                  text: t('group.make_owner'),
                  onclick: () => confirm(t('group.owner_confirm', { name: m.username })) && run(actions.role, id, 'owner'),
                }),
              );
            }
            if (canRemove && m.role !== 'owner') buttons.push(h('button', { type: 'button', class: 'member-remove danger', text: t('group.remove'), onclick: () => run(actions.remove, id) }));
          }
          return h(
            'li',
            { class: 'member', dataset: { user: id, role: m.role, online: String(!!(p && p.online)) } },
            withPresence(avatar(u, 'sm'), !!(p && p.online)),
            h('span', { class: 'member-main' }, h('span', { class: 'member-name', text: me ? t('group.me', { name: m.username }) : m.username }), ROLE_LABEL[m.role] ? h('span', { class: 'member-role-label', text: t(ROLE_LABEL[m.role]) }) : null),
            buttons.length ? h('span', { class: 'member-actions' }, buttons) : null,
          );
        }),
      );
      if (!active) $('#members-count').textContent = item.dissolved ? t('group.was_dissolved') : t('group.no_longer');
    },
  };
  onLangChange(() => view.render());
  return view;
}
