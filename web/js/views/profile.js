// views/profile.js: the "Me" tab's profile forms. The picture: pick a file,
// upload it to POST /media with a progress bar (XMLHttpRequest's upload
// progress), then POST /user/profile with the URL it got; or remove it. The
// password: the current one, the new one twice; on success the server signs
// every other session of the user out (their sockets get "password_changed"
// and the page there lands on the sign-in screen) and this one goes on.
// The language: 简体中文 or English (i18n.js), switched here without a reload.
import { client } from '../chat.js';
import { h } from '../dom.js';
import { LANGS, errText, lang, onLangChange, setLang, t } from '../i18n.js';

const PASSWORD_MIN = 6; // the server's sign-up rules (docs/API.md)
const PASSWORD_MAX = 128;
const ACCEPT = 'image/jpeg,image/png,image/gif,image/webp';

const bytes = (s) => new TextEncoder().encode(s).length;

/** The words for a failed password change, by the server's code. */
function passwordError(e) {
  if (e.code === 'bad_credentials') return t('profile.wrong_password');
  if (e.code === 'rate_limited') return t('profile.rate_limited');
  return errText(e, 'profile.failed');
}

/**
 * Builds the forms into root.
 * @param {HTMLElement} root
 * @param {{user: () => ({id: number, username: string, userpic: string} | null),
 *          clientId: () => (string | null),
 *          changed: (user: object) => void}} o
 *   changed: the server answered the user with its new picture.
 * @returns {{render: () => void, reset: () => void}}
 */
export function setupProfile(root, { user, clientId, changed }) {
  // ---- picture ----
  const file = h('input', { id: 'me-pic-file', type: 'file', accept: ACCEPT, hidden: true });
  const pick = h('button', { id: 'me-pic-change', type: 'button', class: 'primary' });
  const remove = h('button', { id: 'me-pic-remove', type: 'button', hidden: true });
  const progress = h('progress', { id: 'me-pic-progress', class: 'profile-progress', max: '1', value: '0', hidden: true });
  const picError = h('p', { id: 'me-pic-error', class: 'form-error', role: 'alert', hidden: true });
  let busy = false;

  function picBusy(on) {
    busy = on;
    pick.disabled = on;
    remove.disabled = on;
  }

  function showPicError(msg) {
    picError.textContent = msg;
    picError.hidden = !msg;
  }

  async function setPicture(url) {
    const u = await client.api.profile(url, clientId());
    changed(u);
  }

  pick.addEventListener('click', () => {
    if (!busy) file.click();
  });
  file.addEventListener('change', async () => {
    const f = file.files && file.files[0];
    file.value = ''; // the same file may be picked again
    if (!f || busy || !user()) return;
    showPicError('');
    picBusy(true);
    progress.value = 0;
    progress.hidden = false;
    try {
      const media = await client.uploadMedia(f, { onProgress: (x) => (progress.value = x) });
      await setPicture(media.url);
    } catch (e) {
      showPicError(errText(e, 'profile.upload_failed'));
    } finally {
      progress.hidden = true;
      picBusy(false);
    }
  });
  remove.addEventListener('click', async () => {
    if (busy || !user()) return;
    showPicError('');
    picBusy(true);
    try {
      await setPicture('');
    } catch (e) {
      showPicError(errText(e, 'profile.remove_failed'));
    } finally {
      picBusy(false);
    }
  });

  // ---- password ----
  const field = (id, label, autocomplete) =>
    h(
      'label',
      { class: 'field' },
      h('span', { 'data-i18n': label, text: t(label) }),
      h('input', { id, type: 'password', autocomplete, maxlength: String(PASSWORD_MAX), required: true }),
    );
  const pwError = h('p', { id: 'me-pw-error', class: 'form-error', role: 'alert', hidden: true });
  const pwDone = h('p', { id: 'me-pw-done', class: 'hint', role: 'status', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary wide' });
  const form = h(
    'form',
    { id: 'me-pw-form', class: 'profile-password', novalidate: true },
    h('h2', { class: 'profile-title', 'data-i18n': 'profile.password', text: t('profile.password') }),
    // a hidden username field lets password managers file the new password under the right account
    h('input', { id: 'me-pw-user', type: 'text', autocomplete: 'username', hidden: true, 'aria-hidden': 'true', tabindex: '-1' }),
    field('me-pw-old', 'profile.old', 'current-password'),
    field('me-pw-new', 'profile.new', 'new-password'),
    field('me-pw-confirm', 'profile.again', 'new-password'),
    pwError,
    pwDone,
    submit,
  );
  const input = (id) => /** @type {HTMLInputElement} */ (form.querySelector(`#${id}`));

  function showPwError(msg) {
    pwError.textContent = msg;
    pwError.hidden = !msg;
    if (msg) pwDone.hidden = true;
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!user() || submit.disabled) return;
    const oldPw = input('me-pw-old').value;
    const newPw = input('me-pw-new').value;
    const again = input('me-pw-confirm').value;
    pwDone.hidden = true;
    if (!oldPw) return showPwError(t('profile.old_missing'));
    const n = bytes(newPw);
    if (n < PASSWORD_MIN || n > PASSWORD_MAX) return showPwError(t('profile.new_length', { min: PASSWORD_MIN, max: PASSWORD_MAX }));
    if (newPw !== again) return showPwError(t('profile.mismatch'));
    showPwError('');
    submit.disabled = true;
    try {
      const r = await client.api.password(oldPw, newPw);
      form.reset();
      const n = Number(r && r.tokens_deleted) || 0;
      pwDone.textContent = n > 0 ? t('profile.done_signed_out', { count: n }) : t('profile.done');
      pwDone.hidden = false;
    } catch (e) {
      showPwError(passwordError(e));
    } finally {
      submit.disabled = false;
    }
  });

  // ---- language ----
  // Two buttons (the current one pressed), each language named in itself.
  const langButtons = Object.keys(LANGS).map((code) =>
    h('button', { type: 'button', lang: code, dataset: { lang: code }, text: t(`lang.${code}`), onclick: () => setLang(code) }),
  );
  const langBox = h(
    'div',
    { class: 'profile-language' },
    h('h2', { id: 'me-lang-title', class: 'profile-title', 'data-i18n': 'lang.label', text: t('lang.label') }),
    h('div', { id: 'me-lang', class: 'profile-actions', role: 'group', 'aria-labelledby': 'me-lang-title' }, langButtons),
  );

  root.replaceChildren(
    langBox,
    h(
      'div',
      { class: 'profile-picture' },
      h('h2', { class: 'profile-title', 'data-i18n': 'profile.picture', text: t('profile.picture') }),
      h('div', { class: 'profile-actions' }, pick, remove, file),
      progress,
      picError,
    ),
    form,
  );

  /** The words that are not data-i18n (those i18n.js words itself). */
  function words() {
    pick.textContent = t('profile.change_picture');
    remove.textContent = t('profile.remove_picture');
    progress.setAttribute('aria-label', t('profile.progress'));
    submit.textContent = t('profile.change_password');
    for (const b of langButtons) {
      const on = b.dataset.lang === lang();
      b.className = on ? 'primary' : '';
      b.setAttribute('aria-pressed', String(on));
    }
  }
  words();
  onLangChange(() => {
    words();
    // A shown error or result is in the old language: gone (the next try words it anew).
    showPwError('');
    pwDone.hidden = true;
    showPicError('');
  });

  function render() {
    const u = user();
    remove.hidden = !(u && u.userpic);
    input('me-pw-user').value = u ? u.username : '';
  }

  function reset() {
    form.reset();
    showPwError('');
    pwDone.hidden = true;
    showPicError('');
    progress.hidden = true;
    render();
  }

  render();
  return { render, reset };
}
