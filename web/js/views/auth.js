// views/auth.js: sign in and sign up.
import { client } from '../chat.js';
import { safeUrl } from '../dom.js';
import { LANGS, errText, lang, onLangChange, setLang, t } from '../i18n.js';

const bytes = (s) => new TextEncoder().encode(s).length;


/**
 * @param {HTMLElement} root  the #auth section
 * @param {(session: {token: string, user: object}) => void} onSignedIn
 */
export function setupAuth(root, onSignedIn) {
  const form = root.querySelector('form');
  const title = root.querySelector('#auth-title');
  const submit = root.querySelector('#auth-submit');
  const error = root.querySelector('#auth-error');
  const username = root.querySelector('#auth-username');
  const password = root.querySelector('#auth-password');
  const userpic = root.querySelector('#auth-userpic');
  const picRow = root.querySelector('#auth-userpic-row');
  const switchText = root.querySelector('#auth-switch-text');
  const switchLink = root.querySelector('#auth-switch');
  let mode = 'login';
  let busy = false;
  const rule = document.createElement('p');
  rule.id = 'auth-username-rule';
  rule.className = 'field-rule';
  rule.textContent = t('auth.name_rule'); // the server's username rule (docs/API.md)
  rule.hidden = true;
  username.closest('label').after(rule);
  // The name's length in bytes, as the server counts it: a maxlength of 32 (UTF-16 units)
  // would cut a longer name silently, so the page allows 128 and the limit is shown and
  // explained instead.
  const count = document.createElement('span');
  count.id = 'auth-username-count';
  count.className = 'field-count';
  count.hidden = true;
  username.after(count);
  username.setAttribute('aria-describedby', `${rule.id} ${count.id}`);
  const tooLong = (n) => t('auth.name_too_long', { n });
  let lengthError = '';
  let shownError = null; // () => the error's words, so a language change words it again

  const showError = (msg) => {
    shownError = typeof msg === 'function' ? msg : null;
    const text = shownError ? shownError() : msg;
    error.textContent = text || '';
    error.hidden = !text;
  };

  function checkLength() {
    const n = bytes(username.value.trim().normalize('NFC'));
    const over = mode === 'signup' && n > 32;
    count.textContent = `${n}/32`;
    count.hidden = mode !== 'signup';
    count.classList.toggle('over', over);
    if (over) username.setAttribute('aria-invalid', 'true');
    else username.removeAttribute('aria-invalid');
    if (over) showError((lengthError = tooLong(n)));
    else if (lengthError && error.textContent === lengthError) showError((lengthError = ''));
  }
  username.addEventListener('input', checkLength);

  function setMode(m) {
    mode = m === 'signup' ? 'signup' : 'login';
    root.dataset.mode = mode;
    title.textContent = t(mode === 'signup' ? 'auth.title_signup' : 'auth.title_login');
    submit.textContent = t(mode === 'signup' ? 'auth.submit_signup' : 'auth.submit_login');
    picRow.hidden = mode !== 'signup';
    rule.hidden = mode !== 'signup';
    password.autocomplete = mode === 'signup' ? 'new-password' : 'current-password';
    switchText.textContent = t(mode === 'signup' ? 'auth.to_login_text' : 'auth.to_signup_text');
    switchLink.textContent = t(mode === 'signup' ? 'auth.to_login' : 'auth.to_signup');
    switchLink.setAttribute('href', mode === 'signup' ? '#/login' : '#/signup');
    showError('');
    checkLength();
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (busy) return;
    const name = username.value.trim().normalize('NFC'); // the server stores NFC
    const pass = password.value;
    const pic = userpic.value.trim();
    if (mode === 'signup' && bytes(name) > 32) return showError(tooLong(bytes(name)));
    if (bytes(name) < 2 || bytes(name) > 32) return showError(() => t('auth.name_length'));
    if (mode === 'signup') {
      if (/#/.test(name)) return showError(() => t('auth.name_hash'));
      if (bytes(pass) < 6) return showError(() => t('auth.password_short'));
      if (pic && !safeUrl(pic)) return showError(() => t('auth.picture_url'));
    } else if (!pass) return showError(() => t('auth.password_missing'));
    busy = true;
    submit.disabled = true;
    showError('');
    try {
      const data = mode === 'signup' ? await client.api.register(name, pass, pic || undefined) : await client.api.login(name, pass);
      password.value = '';
      onSignedIn({ token: data.token, user: data.user });
    } catch (err) {
      // A name or password the server's rules refuse (bad_field): its reason, or the rule's pointer.
      const refused = mode === 'signup' && (err.code === 'bad_field' || err.code === 'missing_field');
      showError(() => (refused ? t('auth.refused', { msg: err.message }) : errText(err)));
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });

  // The other language, named in itself ("English" on the Chinese screen, "简体中文" on the English one).
  const langLink = root.querySelector('#auth-lang');
  const otherLang = () => Object.keys(LANGS).find((code) => code !== lang());
  const wordLangLink = () => {
    langLink.textContent = t(`lang.${otherLang()}`);
    langLink.lang = otherLang();
  };
  wordLangLink();
  langLink.addEventListener('click', () => setLang(otherLang()));

  // Another language: the same screen, worded again (the rule, the labels, a shown error).
  onLangChange(() => {
    wordLangLink();
    rule.textContent = t('auth.name_rule');
    const again = shownError;
    setMode(mode);
    if (again && !root.hidden) showError(again);
  });

  return {
    show(m) {
      // Already shown in that mode (a route again, e.g. after a language change): as it is.
      if (!root.hidden && (m === 'signup' ? 'signup' : 'login') === mode) return;
      setMode(m);
      root.hidden = false;
      username.focus();
    },
    hide() {
      root.hidden = true;
    },
  };
}
