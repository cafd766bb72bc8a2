// notify.js: desktop notifications of messages that arrive while the page is
// hidden. The permission is asked only when the user presses "Turn on" in a
// bar at the top of the chat list (a prompt on load is blocked or ignored by
// browsers, and unwelcome); the bar goes once the question is answered, or
// for good when dismissed on this device. Notification text is plain text.
import { h } from './dom.js';
import { onLangChange, t } from './i18n.js';

const DISMISSED_KEY = 'chatd_notify_dismissed';

function supported() {
  return typeof window.Notification === 'function';
}

/**
 * Puts the "Turn on notifications" bar before `before` (shown only while the browser has not
 * been asked, nor the bar dismissed). Returns {update()} to show or hide it again.
 */
export function setupNotifyPrompt(before) {
  const text = h('p');
  const on = h('button', { type: 'button', class: 'primary notify-on', onclick: () => ask() });
  const later = h('button', { type: 'button', class: 'link notify-dismiss', onclick: () => dismiss() });
  const bar = h('div', { class: 'notify-prompt', role: 'region', hidden: true }, text, on, later);
  const words = () => {
    bar.setAttribute('aria-label', t('notify.region'));
    text.textContent = t('notify.text');
    on.textContent = t('notify.on');
    later.textContent = t('notify.later');
  };
  words();
  onLangChange(words);
  before.before(bar);

  function update() {
    let dismissed = false;
    try {
      dismissed = localStorage.getItem(DISMISSED_KEY) === '1';
    } catch {
      /* no storage */
    }
    bar.hidden = !supported() || Notification.permission !== 'default' || dismissed;
  }

  async function ask() {
    try {
      await Notification.requestPermission();
    } catch {
      /* an old browser's callback form, or refused */
    }
    update();
  }

  function dismiss() {
    try {
      localStorage.setItem(DISMISSED_KEY, '1');
    } catch {
      /* no storage */
    }
    update();
  }

  update();
  return { update };
}

/** Shows a notification when allowed; onClick runs when it is clicked (the page comes forward). */
export function notify(title, body, tag, onClick) {
  if (!supported() || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(title, { body, tag, icon: 'img/icon.svg' });
    n.onclick = () => {
      window.focus();
      onClick();
      n.close();
    };
  } catch {
    /* Chrome on Android needs a service worker for this: no notification */
  }
}
