// dom.js: building DOM safely. User content only ever goes through
// textContent (text nodes) and setAttribute; nothing here uses innerHTML.
import { t } from './i18n.js';

const PROPS = new Set(['value', 'checked', 'disabled', 'hidden', 'selected']);

/**
 * h('a', {class: 'x', href: url, text: 'label', onclick: fn, dataset: {id: 1}}, child, ...)
 * Strings and numbers among the children become text nodes.
 */
export function h(tag, props = null, ...children) {
  const el = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = String(dv);
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (PROPS.has(k)) el[k] = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return el;
}

/** The absolute URL if `url` is an http(s) URL or a path on this site, else null. */
export function safeUrl(url) {
  if (typeof url !== 'string' || !url || url.length > 4096) return null;
  if (!/^(https?:\/\/|\/(?!\/))/i.test(url.trim())) return null;
  try {
    const u = new URL(url.trim(), location.href);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

const AVATAR_COLORS = ['#0d9488', '#2563eb', '#7c3aed', '#db2777', '#ea580c', '#16a34a', '#0891b2', '#9333ea'];

/** A round avatar: the user's picture when it is a safe URL, over their initial on a colour. */
export function avatar(user, size = 'md') {
  const name = (user && user.username) || '?';
  const id = (user && Number(user.id)) || 0;
  const initial = Array.from(name.trim())[0] || '?';
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' }, initial.toUpperCase());
  el.style.backgroundColor = AVATAR_COLORS[Math.abs(id) % AVATAR_COLORS.length];
  const pic = safeUrl(user && user.userpic);
  if (pic) {
    const img = h('img', { alt: '', src: pic, loading: 'lazy', referrerpolicy: 'no-referrer' });
    img.addEventListener('error', () => img.remove());
    el.appendChild(img);
  }
  return el;
}

let toastTimer = 0;
/** A short message at the bottom of the screen. */
export function toast(message, ms = 3500) {
  const el = document.getElementById('toast');
  if (!el) return;
  el.textContent = String(message);
  el.hidden = false;
  el.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    el.classList.remove('show');
    el.hidden = true;
  }, ms);
}

/** An avatar element (from avatar()) in a wrapper with a presence dot: green when online, none otherwise. */
export function withPresence(avatarEl, online) {
  return h(
    'span',
    { class: 'avatar-wrap' },
    avatarEl,
    h('span', { class: `presence-dot${online ? ' online' : ''}`, 'aria-label': online ? t('presence.online') : null, title: online ? t('presence.online_title') : null }),
  );
}
