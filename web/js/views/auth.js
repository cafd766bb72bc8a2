// views/auth.js: sign in and sign up.
import { client } from '../chat.js';
import { safeUrl } from '../dom.js';

const bytes = (s) => new TextEncoder().encode(s).length;

// The server's username rule (docs/API.md), shown when signing up.
const NAME_RULE =
  '2 to 32 bytes (about 10 Chinese or Japanese characters). Letters of one script ' +
  '(Latin may go with Chinese and Japanese), digits, punctuation and single spaces; ' +
  'no “#”, no invisible or text-direction characters. Names that look alike are the same ' +
  'name: “Jürgen”, “JÜRGEN” and “ｊüｒｇｅｎ” are one account, and you sign in with any of them.';

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
  rule.textContent = NAME_RULE;
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
  const tooLong = (n) => `Your name is too long: ${n} bytes, 32 at most (about 10 Chinese or Japanese characters).`;
  let lengthError = '';

  const showError = (msg) => {
    error.textContent = msg || '';
    error.hidden = !msg;
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
    title.textContent = mode === 'signup' ? 'Create your account' : 'Sign in';
    submit.textContent = mode === 'signup' ? 'Sign up' : 'Sign in';
    picRow.hidden = mode !== 'signup';
    rule.hidden = mode !== 'signup';
    password.autocomplete = mode === 'signup' ? 'new-password' : 'current-password';
    switchText.textContent = mode === 'signup' ? 'Already have an account?' : 'New here?';
    switchLink.textContent = mode === 'signup' ? 'Sign in' : 'Create an account';
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
    if (bytes(name) < 2 || bytes(name) > 32) return showError('Your name must be 2 to 32 bytes long (about 10 Chinese or Japanese characters).');
    if (mode === 'signup') {
      if (/#/.test(name)) return showError('Your name cannot contain “#”.');
      if (bytes(pass) < 6) return showError('Your password must be at least 6 characters long.');
      if (pic && !safeUrl(pic)) return showError('The picture must be an http(s):// address.');
    } else if (!pass) return showError('Enter your password.');
    busy = true;
    submit.disabled = true;
    showError('');
    try {
      const data = mode === 'signup' ? await client.api.register(name, pass, pic || undefined) : await client.api.login(name, pass);
      password.value = '';
      onSignedIn({ token: data.token, user: data.user });
    } catch (err) {
      showError(err.message);
    } finally {
      busy = false;
      submit.disabled = false;
    }
  });

  return {
    show(m) {
      setMode(m);
      root.hidden = false;
      username.focus();
    },
    hide() {
      root.hidden = true;
    },
  };
}
