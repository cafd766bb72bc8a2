// views/menu.js: the menu of one message (Copy, Recall, Delete for me). It opens by a
// right-click on a bubble (desktop), a long press on it (touch), or the small "⋯" button
// each message row shows on hover and keyboard focus. The menu is one floating element with
// role="menu": arrow keys move between its items, Enter runs one, Esc or a click elsewhere
// closes it and gives focus back. Which items a message gets is the caller's business
// (itemsFor); this file only places and drives the menu. Also: copyText (the clipboard with
// a fallback for pages that are not a secure context) and confirmDialog (a small modal).
import { h } from '../dom.js';
import { t } from '../i18n.js';

const LONG_PRESS_MS = 500;
const MOVE_SLOP_PX = 10;

/**
 * Wires the menu to the message rows under container.
 * @param {HTMLElement} container
 * @param {(row: HTMLElement) => Array<{id: string, label: string, run: () => void, danger?: boolean}>} itemsFor
 * @returns {{close: () => void, button: (row: HTMLElement) => HTMLElement}}
 *   button(row): the "⋯" button to put in a row.
 */
export function setupMessageMenu(container, itemsFor) {
  let menu = null; // {el, back, onDoc}
  let press = null; // a touch long press being timed

  function close({ focusBack = true } = {}) {
    if (!menu) return;
    const { el, back, onDoc } = menu;
    menu = null;
    document.removeEventListener('pointerdown', onDoc, true);
    document.removeEventListener('scroll', onDoc, true);
    window.removeEventListener('resize', onDoc);
    el.remove();
    for (const r of container.querySelectorAll('.row.menu-open')) r.classList.remove('menu-open');
    if (focusBack && back && back.isConnected) back.focus();
  }

  /** Opens the menu of row at (x, y) in the viewport, or beside `anchor`. */
  function open(row, { x = 0, y = 0, anchor = null, viaKeyboard = false } = {}) {
    close({ focusBack: false });
    const items = itemsFor(row);
    if (!items.length) return false;
    const buttons = items.map((it) =>
      h('button', {
        type: 'button',
        role: 'menuitem',
        class: `menu-item${it.danger ? ' danger' : ''}`,
        dataset: { action: it.id },
        text: it.label,
        tabindex: '-1',
        onclick: () => {
          close();
          it.run();
        },
      }),
    );
    const el = h('div', { id: 'message-menu', class: 'message-menu', role: 'menu', tabindex: '-1', 'aria-label': t('msg.menu') }, ...buttons);
    el.addEventListener('keydown', (e) => {
      const i = buttons.indexOf(document.activeElement);
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        const n = buttons.length;
        buttons[(i + (e.key === 'ArrowDown' ? 1 : n - 1)) % n].focus();
      } else if (e.key === 'Home' || e.key === 'End') {
        e.preventDefault();
        buttons[e.key === 'Home' ? 0 : buttons.length - 1].focus();
      } else if (e.key === 'Escape' || e.key === 'Tab') {
        e.preventDefault();
        close();
      }
    });
    const onDoc = (e) => {
      if (e.type === 'pointerdown' && el.contains(e.target)) return;
      close({ focusBack: false });
    };
    document.body.append(el);
    row.classList.add('menu-open');
    // Place it: at the pointer, or under the "⋯" button; kept inside the viewport.
    if (anchor) {
      const r = anchor.getBoundingClientRect();
      x = r.right;
      y = r.bottom + 4;
    }
    const w = el.offsetWidth;
    const hgt = el.offsetHeight;
    const left = Math.max(8, Math.min(x - (anchor ? w : 0), window.innerWidth - w - 8));
    const top = y + hgt + 8 > window.innerHeight ? Math.max(8, y - hgt - (anchor ? anchor.offsetHeight + 8 : 0)) : y;
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
    menu = { el, back: anchor || row.querySelector('.msg-more'), onDoc };
    // Added after this event finishes, so the event that opened the menu does not close it.
    setTimeout(() => {
      if (!menu || menu.el !== el) return;
      document.addEventListener('pointerdown', onDoc, true);
      document.addEventListener('scroll', onDoc, true);
      window.addEventListener('resize', onDoc);
    }, 0);
    if (viaKeyboard || anchor) buttons[0].focus();
    else el.focus({ preventScroll: true });
    return true;
  }

  const rowOf = (target) => {
    const row = target instanceof Element ? target.closest('.row') : null;
    return row && container.contains(row) && row.dataset.id && !row.classList.contains('upload') ? row : null;
  };
  const onBubble = (target) => target instanceof Element && !!target.closest('.bubble');

  container.addEventListener('contextmenu', (e) => {
    const row = rowOf(e.target);
    if (!row || !onBubble(e.target)) return;
    if (open(row, { x: e.clientX, y: e.clientY })) e.preventDefault();
  });

  // Long press on touch: the browser's own callout is suppressed by CSS (-webkit-touch-callout).
  container.addEventListener('pointerdown', (e) => {
    if (e.pointerType !== 'touch') return;
    const row = rowOf(e.target);
    if (!row || !onBubble(e.target)) return;
    clearTimeout(press && press.timer);
    press = {
      x: e.clientX,
      y: e.clientY,
      timer: setTimeout(() => {
        press = null;
        open(row, { x: e.clientX, y: e.clientY });
      }, LONG_PRESS_MS),
    };
  });
  const cancelPress = () => {
    if (!press) return;
    clearTimeout(press.timer);
    press = null;
  };
  container.addEventListener('pointermove', (e) => {
    if (press && Math.hypot(e.clientX - press.x, e.clientY - press.y) > MOVE_SLOP_PX) cancelPress();
  });
  container.addEventListener('pointerup', cancelPress);
  container.addEventListener('pointercancel', cancelPress);

  function button(row) {
    const b = h('button', { type: 'button', class: 'msg-more', text: '⋯', 'aria-label': t('msg.menu'), title: t('msg.menu'), 'aria-haspopup': 'menu' });
    b.addEventListener('click', (e) => {
      e.stopPropagation();
      if (menu && menu.back === b) close();
      else open(row, { anchor: b, viaKeyboard: e.detail === 0 });
    });
    return b;
  }

  return { close, button, open };
}

/** "You withdrew a message" (mine) or "alice withdrew a message". */
export function recallText(mine, name) {
  return mine ? t('msg.recall_you') : t('msg.recall_by', { name });
}

/** Puts text on the clipboard: navigator.clipboard, else a selected textarea and execCommand. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      /* refused: try the old way */
    }
  }
  const ta = h('textarea', { class: 'copy-buffer', readonly: true, 'aria-hidden': 'true' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/**
 * A small modal asking to confirm: resolves true when the user picks `ok`.
 * @param {{text: string, ok: string, cancel: string}} o
 */
export function confirmDialog({ text, ok, cancel }) {
  return new Promise((resolve) => {
    const back = document.activeElement;
    const yes = h('button', { type: 'button', class: 'danger', id: 'confirm-ok', text: ok });
    const no = h('button', { type: 'button', id: 'confirm-cancel', text: cancel });
    const dlg = h('dialog', { id: 'confirm-dialog', class: 'confirm-dialog' }, h('p', { text }), h('div', { class: 'dialog-buttons' }, no, yes));
    const done = (v) => {
      if (!dlg.isConnected) return;
      dlg.close();
      dlg.remove();
      if (back && back.isConnected && typeof back.focus === 'function') back.focus();
      resolve(v);
    };
    yes.addEventListener('click', () => done(true));
    no.addEventListener('click', () => done(false));
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.append(dlg);
    dlg.showModal();
    no.focus();
  });
}
