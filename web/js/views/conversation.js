// views/conversation.js: one conversation. Bubbles (mine on the right), times,
// older pages when scrolled to the top, each own message's state (sending,
// sent, read, failed with a retry), "typing…", and the send box. In a group
// (a negative key, store.js) each message of another member shows its
// sender's name and avatar, system messages are centred lines, the header
// says how many members there are, and a member who left or was removed
// (or a dissolved group) gets a notice instead of the send box. A 1:1
// header shows the peer's presence: "online" and a dot, or "last seen at …".
// Opened with unread messages, a divider ("3 unread messages") goes above the
// first of them, and the view starts there when they do not fit on screen.
// Scrolled up, a button jumps to the newest message, counting those that
// arrived meanwhile.
// Pictures (views/media.js): picked with the composer's picture button, pasted
// into the message box or dropped on the conversation, uploaded with a progress
// bar, shown in boxes sized from their width and height. Each message has a menu
// (views/menu.js): Copy, Recall (our own, within the server's recall_window),
// Delete for me. A recalled message is a centred line ("You withdrew a
// message") where it was; the recall notice that told us is not shown beside it
// (only when its message is not loaded); messages deleted for us are not shown.
import { avatar, h, safeUrl, toast, withPresence } from '../dom.js';
import { clock, dividerTime, presenceText, systemText } from '../format.js';
import { errText, has, onLangChange, t } from '../i18n.js';
import { messageKey, recallTarget, systemData } from '/sdk/index.js';
import { Uploader, dragHasFiles, filesOf, imageBubble } from './media.js';
import { confirmDialog, copyText, recallText, setupMessageMenu } from './menu.js';

const DIVIDER_GAP_MS = 5 * 60 * 1000;
const STATE_LABEL = { sending: 'conv.state_sending', sent: 'conv.state_sent', read: 'conv.state_read', failed: 'conv.state_failed' };

function svgIcon(d) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', d);
  svg.append(path);
  return svg;
}

function sameDay(a, b) {
  const x = new Date(a);
  const y = new Date(b);
  return x.getFullYear() === y.getFullYear() && x.getMonth() === y.getMonth() && x.getDate() === y.getDate();
}


export class ConversationView {
  /**
   * @param {Record<string, HTMLElement>} els
   * @param {{send: (type: string, data: string, extra?: object, peer?: number) => boolean, retry: (peer: number, clientMsgId: string) => void,
   *          loadOlder: () => void, typing: (active: boolean) => void,
   *          recall: (m: object) => Promise<void>, deleteForMe: (m: object) => Promise<void>,
   *          config: () => ({recall_window?: number, max_upload?: number} | null)}} actions
   *   recall, deleteForMe: reject with the server's ChatError; config: GET /chat/config's answer once known.
   */
  constructor(els, actions) {
    this.els = els;
    this.actions = actions;
    this.peer = null;
    this.store = null;
    this.rows = new Map();
    this.stick = true;
    this.typingTimer = 0;
    els.rows.setAttribute('role', 'list'); // each row a listitem; screen readers hear who wrote it
    this.newBelow = 0; // messages of others that arrived while scrolled up
    this.newestId = 0;
    this.jumpCount = h('span', { class: 'jump-count', hidden: true });
    this.jump = h(
      'button',
      { type: 'button', class: 'jump-bottom', hidden: true, onclick: () => this.toBottom() },
      svgIcon('M6 9l6 6 6-6'),
      this.jumpCount,
    );
    // Sticky at the scroller's bottom edge while the messages scroll under it (height 0: no room taken).
    els.scroller.append(h('div', { class: 'jump-wrap' }, this.jump));

    els.scroller.addEventListener('scroll', () => {
      const s = els.scroller;
      this.stick = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
      if (this.stick) this.newBelow = 0;
      this.updateJump();
      if (s.scrollTop < 150 && this.peer !== null) this.actions.loadOlder();
    });

    // A growing send box (a long text), the image form or an on-screen keyboard shrink the
    // scroller, which keeps its scrollTop: the newest messages would slide out of sight under
    // the box. At the end, it stays at the end.
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => {
        if (this.stick && this.peer !== null) els.scroller.scrollTop = els.scroller.scrollHeight;
      }).observe(els.scroller);
    }

    els.composer.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submitText();
    });
    els.text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        this.submitText();
      }
    });
    this.sendBtn = els.composer.querySelector('button[type="submit"]');
    this.updateSend();
    els.text.addEventListener('input', () => {
      this.autosize();
      this.updateSend();
      this.actions.typing(els.text.value.trim() !== '');
    });

    this.setupPictures();
    this.menu = setupMessageMenu(els.rows, (row) => this.menuItems(row));

    els.imageBtn.addEventListener('click', () => this.toggleImageForm());
    els.imageCancel.addEventListener('click', () => this.toggleImageForm(false));
    els.imageForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const url = els.imageUrl.value.trim();
      if (!safeUrl(url)) {
        els.imageError.textContent = t('conv.image_bad_url');
        els.imageError.hidden = false;
        return;
      }
      if (this.actions.send('image', url)) {
        els.imageUrl.value = '';
        this.toggleImageForm(false);
      }
    });
  }

  /** The picture button and its file input, paste into the message box, drop on the conversation. */
  setupPictures() {
    const els = this.els;
    const file = h('input', { id: 'photo-file', type: 'file', accept: 'image/*', multiple: true, hidden: true });
    const btn = h(
      'button',
      { id: 'photo-btn', type: 'button', class: 'icon-btn', 'aria-label': t('media.pick'), title: t('media.pick') },
      svgIcon('M4 7h3l2-2h6l2 2h3v12H4zM12 10.5a3.5 3.5 0 1 0 0 7 3.5 3.5 0 0 0 0-7z'),
    );
    btn.addEventListener('click', () => file.click());
    file.addEventListener('change', () => {
      const files = [...(file.files || [])];
      file.value = ''; // the same file may be picked again
      this.upload(files);
    });
    els.composer.insertBefore(btn, els.text);
    els.composer.append(file);
    this.uploadRows = h('div', { id: 'upload-rows', class: 'message-rows upload-rows' });
    els.rows.after(this.uploadRows);
    this.uploader = new Uploader(this.uploadRows, {
      send: (peer, url, size) => this.actions.send('image', url, size, peer),
      maxUpload: () => {
        const c = this.actions.config && this.actions.config();
        return (c && Number(c.max_upload)) || 0;
      },
      changed: () => {
        if (this.stick) this.toBottom();
      },
    });
    els.text.addEventListener('paste', (e) => {
      // Text copied from an office program comes with a picture of itself: the text wins.
      if (e.clipboardData && e.clipboardData.getData('text/plain')) return;
      const files = filesOf(e.clipboardData);
      if (!files.length) return;
      e.preventDefault();
      this.upload(files);
    });
    const root = els.root;
    let depth = 0;
    root.addEventListener('dragenter', (e) => {
      if (!dragHasFiles(e) || this.composerClosed()) return;
      depth += 1;
      root.classList.add('drop-target');
    });
    root.addEventListener('dragleave', () => {
      depth = Math.max(0, depth - 1);
      if (!depth) root.classList.remove('drop-target');
    });
    root.addEventListener('dragover', (e) => {
      if (!dragHasFiles(e) || this.composerClosed()) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    root.addEventListener('drop', (e) => {
      depth = 0;
      root.classList.remove('drop-target');
      const files = filesOf(e.dataTransfer);
      if (!files.length) return;
      e.preventDefault();
      if (!this.composerClosed()) this.upload(files);
    });
    const words = () => {
      btn.setAttribute('aria-label', t('media.pick'));
      btn.title = t('media.pick');
      root.dataset.dropHint = t('media.drop');
    };
    words();
    onLangChange(() => {
      words();
      this.reword();
    });
  }

  /** Builds the rows again in the new language (recall lines, ⋯ labels), where the view was. */
  reword() {
    if (this.peer === null) return;
    this.menu.close({ focusBack: false });
    const s = this.els.scroller;
    const top = s.scrollTop;
    this.rows.clear();
    this.els.rows.replaceChildren();
    this.render();
    if (!this.stick) s.scrollTop = top;
  }

  composerClosed() {
    return this.peer === null || this.els.composer.hidden;
  }

  /** Uploads picked, pasted or dropped files to the open conversation. */
  upload(files) {
    if (!files.length || this.composerClosed()) return;
    this.stick = true;
    this.uploader.add(this.peer, files);
  }

  /** The items of a message row's menu. */
  menuItems(row) {
    const m = this.messageOf(row);
    if (!m || !m.id || m.recalled || m.deleted || m.type === 'system' || m.type === 'recall') return [];
    const items = [];
    if (m.type !== 'image' && m.data) {
      items.push({
        id: 'copy',
        label: t('msg.copy'),
        run: async () => toast(t((await copyText(m.data)) ? 'msg.copied' : 'msg.copy_failed')),
      });
    }
    if (this.canRecall(m)) {
      items.push({
        id: 'recall',
        label: t('msg.recall'),
        run: () => this.actions.recall(m).catch((e) => toast(has(`msg.err.${e.code}`) ? t(`msg.err.${e.code}`) : errText(e))),
      });
    }
    items.push({
      id: 'delete',
      label: t('msg.delete'),
      danger: true,
      run: async () => {
        if (!(await confirmDialog({ text: t('msg.delete_confirm'), ok: t('msg.delete_ok'), cancel: t('msg.cancel') }))) return;
        this.actions.deleteForMe(m).catch((e) => toast(errText(e)));
      },
    });
    return items;
  }

  /** Our own stored message, younger than the server's recall_window (0: recall is off). */
  canRecall(m) {
    if (m.from_id !== this.store.uid || m.type === 'system') return false;
    const c = this.actions.config && this.actions.config();
    const window = c && Number.isFinite(Number(c.recall_window)) ? Number(c.recall_window) : 0;
    return window > 0 && Date.now() - m.time < window * 1000;
  }

  messageOf(row) {
    const id = Number(row.dataset.id);
    if (!id || !this.store) return null;
    return this.store.detail(this.peer).messages.find((m) => m.id === id) || null;
  }

  submitText() {
    const text = this.els.text.value;
    if (!text.trim()) return;
    if (this.actions.send('text', text)) {
      this.els.text.value = '';
      this.autosize();
      this.updateSend();
      this.actions.typing(false);
    }
    this.els.text.focus();
  }

  toBottom() {
    const s = this.els.scroller;
    s.scrollTop = s.scrollHeight;
    this.stick = true;
    this.newBelow = 0;
    this.updateJump();
  }

  updateJump() {
    const show = !this.stick && this.peer !== null;
    const n = show ? this.newBelow : 0;
    this.jump.hidden = !show;
    this.jumpCount.hidden = n === 0;
    this.jumpCount.textContent = n > 99 ? '99+' : String(n);
    this.jump.setAttribute('aria-label', n ? t('conv.jump_count', { count: n }) : t('conv.jump'));
    this.jump.title = t('conv.jump_title');
  }

  /** Send is off while the box holds nothing but white space. */
  updateSend() {
    if (this.sendBtn) this.sendBtn.disabled = !this.els.text.value.trim();
  }

  autosize() {
    const t = this.els.text;
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 140)}px`;
  }

  toggleImageForm(show = this.els.imageForm.hidden) {
    this.els.imageForm.hidden = !show;
    this.els.imageBtn.setAttribute('aria-expanded', String(show));
    this.els.imageError.hidden = true;
    if (show) this.els.imageUrl.focus();
    else this.els.text.focus();
  }

  open(store, peer) {
    const changed = this.peer !== peer || this.store !== store;
    this.store = store;
    this.peer = peer;
    if (changed) {
      this.menu.close({ focusBack: false });
      this.uploader.show(peer);
      this.rows.clear();
      this.els.rows.replaceChildren();
      this.els.text.value = '';
      this.autosize();
      this.updateSend();
      this.els.imageForm.hidden = true;
      this.setTyping(false);
      this.setHistoryState('idle');
      this.stick = true;
      this.unreadMark = null;
      this.newBelow = 0;
      this.newestId = 0;
    }
    this.renderHeader();
    this.render({ bottom: changed });
    return changed;
  }

  /**
   * Marks where the unread messages start: `count` messages of others up to the list's
   * last_message_id. Placed once the conversation's newest page is in (store detail fresh),
   * and kept while the conversation stays open.
   */
  markUnread(count, lastId) {
    this.unreadMark = count > 0 ? { count, lastId, key: null, tried: false } : null;
  }

  /** Finds the first unread message for the mark; the view may start at it on the first try only. */
  placeUnreadMark(messages) {
    const u = this.unreadMark;
    if (!u || u.key || !this.store.detail(this.peer).fresh) return false;
    const first = !u.tried;
    u.tried = true;
    let i = messages.length - 1;
    if (u.lastId) {
      while (i >= 0 && messages[i].id !== u.lastId) i--;
      if (i < 0) return false;
    }
    for (let n = 0; i >= 0; i--) {
      const m = messages[i];
      if (m.deleted || m.type === 'recall') continue; // not shown, never unread
      if (m.id && m.from_id !== this.store.uid && ++n === u.count) {
        u.key = messageKey(m);
        return first;
      }
    }
    return false; // older than what is loaded: placed when scrolling up brings it
  }

  close() {
    this.menu.close({ focusBack: false });
    this.uploader.show(null);
    this.peer = null;
    this.store = null;
    this.rows.clear();
    this.els.rows.replaceChildren();
    this.setTyping(false);
    this.updateJump();
  }

  get group() {
    return this.peer !== null && this.peer < 0;
  }

  renderHeader() {
    const u = this.store.user(this.peer);
    const els = this.els;
    els.name.textContent = u.username;
    els.root.dataset.peer = String(this.peer);
    els.root.classList.toggle('is-group', this.group);
    els.membersBtn.hidden = !this.group;
    let sub = '';
    if (this.group) {
      els.avatar.replaceChildren(avatar(u));
      const item = this.store.item(this.peer) || {};
      const g = this.store.groups.get(-this.peer);
      const n = (g && Number(g.member_count)) || item.member_count || 0;
      sub = item.dissolved ? t('conv.dissolved') : item.left ? t('conv.not_member') : n ? t('conv.members', { count: n }) : '';
      const closed = !!(item.dissolved || item.left);
      els.composer.hidden = closed;
      if (closed) els.imageForm.hidden = true;
      els.notice.hidden = !closed;
      els.notice.textContent = item.dissolved
        ? t('conv.notice_dissolved')
        : item.left
          ? t('conv.notice_left')
          : '';
    } else {
      const p = this.store.presenceOf(this.peer);
      els.avatar.replaceChildren(withPresence(avatar(u), !!(p && p.online)));
      sub = presenceText(p);
      els.composer.hidden = false;
      els.notice.hidden = true;
    }
    if (els.historyState.dataset.state === 'complete') this.setHistoryState('complete'); // the name may have changed
    els.sub.textContent = sub;
    els.sub.dataset.online = String(!this.group && sub === t('presence.online'));
    els.sub.hidden = !sub || els.root.classList.contains('peer-typing');
  }

  /** text: what to show ("typing…", "alice is typing…"), or false/'' for nothing. */
  setTyping(text) {
    const on = !!text;
    this.els.status.textContent = on ? (text === true ? t('typing.peer') : text) : '';
    this.els.status.hidden = !on;
    this.els.root.classList.toggle('peer-typing', on);
    this.els.sub.hidden = on || !this.els.sub.textContent;
  }

  /** 'idle' | 'loading' | 'complete' | 'error' */
  setHistoryState(state) {
    const el = this.els.historyState;
    el.dataset.state = state;
    if (state === 'loading') el.textContent = t('conv.loading');
    else if (state === 'complete') {
      const u = this.peer !== null && this.store ? this.store.user(this.peer) : null;
      if (!u) el.textContent = '';
      else if (this.group) el.textContent = t('conv.begin_group', { name: u.username });
      else el.textContent = t('conv.begin_peer', { name: u.username });
    } else if (state === 'error') el.textContent = t('conv.load_error');
    else el.textContent = '';
  }

  focusInput() {
    this.els.text.focus();
  }

  /**
   * Brings the rows in line with the store.
   * @param {{bottom?: boolean}} o  bottom: scroll to the end (else the end stays the end, or the rows on screen stay put)
   */
  render({ bottom = false } = {}) {
    if (this.peer === null) return;
    const s = this.els.scroller;
    // Keep the first row on screen where it is when rows are added above it.
    let anchor = null;
    let anchorTop = 0;
    for (const row of this.els.rows.children) {
      if (row.offsetTop + row.offsetHeight > s.scrollTop) {
        anchor = row;
        anchorTop = row.offsetTop - s.scrollTop;
        break;
      }
    }
    const uid = this.store.uid;
    const group = this.group;
    const receipt = group ? 0 : this.store.receipts[this.peer] || 0;
    const messages = this.store.detail(this.peer).messages;
    const startAtUnread = this.placeUnreadMark(messages);
    const unreadKey = this.unreadMark && this.unreadMark.key;
    const wanted = [];
    let prev = null;
    let arrived = 0; // new messages of others after the newest shown before
    let newest = this.newestId;
    const shown = new Set(messages.filter((m) => m.id && !m.deleted).map((m) => m.id));
    for (const m of messages) {
      if (m.deleted) continue; // deleted for us
      // A recall notice: its message, when loaded, is the line saying so; else the notice is.
      if (m.type === 'recall' && shown.has(recallTarget(m))) continue;
      const key = messageKey(m);
      const recall = m.recalled || m.type === 'recall';
      const system = m.type === 'system' || recall;
      const mine = m.from_id === uid && !system;
      const kind = recall ? 'recall' : system ? 'system' : mine ? 'mine' : 'theirs';
      const state = mine ? (m.id ? (m.id <= receipt ? 'read' : 'sent') : m.state) : '';
      const divider = !prev || m.time - prev.time > DIVIDER_GAP_MS || !sameDay(m.time, prev.time) ? dividerTime(m.time) : '';
      const sender = group && !mine && !system ? this.store.users[m.from_id] || { id: m.from_id, username: m.from_username || t('user.fallback', { id: m.from_id }), userpic: m.from_userpic } : null;
      const author = system || sender ? '' : mine ? t('conv.you') : this.store.user(this.peer).username; // for screen readers
      const unread = key === unreadKey ? this.unreadMark.count : 0;
      const sig = `${kind}|${m.id}|${state}|${m.error || ''}|${divider}|${clock(m.time)}|${sender ? `${sender.username}\u0000${sender.userpic}` : ''}|${author}|${unread}`;
      let row = this.rows.get(key);
      if (m.id > newest) newest = m.id;
      if (!row && this.newestId && m.id > this.newestId && !mine && !recall) arrived += 1;
      const replaced = row && row._kind !== kind ? row : null; // recalled while shown: the line takes its place
      if (replaced) row = null;
      if (!row) {
        row = h('div', { class: `row ${system ? 'system' : mine ? 'mine' : 'theirs'}${recall ? ' recall' : ''}${sender ? ' grouped' : ''}`, role: 'listitem' });
        row._kind = kind;
        row._bubble = recall ? this.recallLine(m) : system ? this.systemLine(m) : this.bubble(m);
        this.rows.set(key, row);
        if (replaced && replaced.isConnected) replaced.replaceWith(row);
      }
      if (row._sig !== sig) {
        row._sig = sig;
        if (system) this.fillSystemRow(row, m, divider);
        else this.fillRow(row, m, mine, state, divider, sender, author);
        if (unread) row.prepend(h('div', { class: 'unread-divider', text: t('conv.unread_divider', { count: unread }) }));
      }
      wanted.push(row);
      prev = m;
    }
    const live = new Set(wanted);
    for (const [key, row] of this.rows) if (!live.has(row)) this.rows.delete(key);
    const parent = this.els.rows;
    let cursor = parent.firstChild;
    for (const row of wanted) {
      if (row === cursor) cursor = cursor.nextSibling;
      else parent.insertBefore(row, cursor);
    }
    while (cursor) {
      const next = cursor.nextSibling;
      cursor.remove();
      cursor = next;
    }
    this.newestId = newest;
    const mark = startAtUnread && this.rows.get(unreadKey);
    if (mark && mark.offsetTop - 8 < s.scrollHeight - s.clientHeight) {
      // More unread than fits: start at the first of them.
      s.scrollTop = mark.offsetTop - 8;
      this.stick = false;
      this.newBelow = this.unreadMark.count;
    } else if (bottom || this.stick) {
      s.scrollTop = s.scrollHeight;
      this.stick = true;
      this.newBelow = 0;
    } else {
      if (anchor && anchor.isConnected) s.scrollTop = anchor.offsetTop - anchorTop;
      this.newBelow += arrived;
    }
    this.updateJump();
  }

  bubble(m) {
    if (m.type === 'image') {
      const b = imageBubble(m, () => {
        if (this.stick) this.els.scroller.scrollTop = this.els.scroller.scrollHeight;
      });
      if (b) return b;
    }
    return h('div', { class: `bubble ${m.type === 'emoji' ? 'emoji' : 'text'}`, text: m.data });
  }

  /** "You withdrew a message" / "alice withdrew a message": a recalled message, or a recall notice. */
  recallLine(m) {
    const store = this.store;
    const mine = m.from_id === store.uid;
    const name = m.from_username || store.user(m.from_id).username;
    return h('div', { class: 'bubble system', text: recallText(mine, name) });
  }

  systemLine(m) {
    const store = this.store;
    const actor = m.from_id === store.uid ? store.me.username : m.from_username || store.user(m.from_id).username;
    return h('div', { class: 'bubble system', text: systemText(systemData(m), actor, (id) => store.user(id).username) });
  }

  fillSystemRow(row, m, divider) {
    row.dataset.key = messageKey(m);
    if (m.id) row.dataset.id = String(m.id);
    row.replaceChildren(divider ? h('div', { class: 'divider', text: divider }) : '', row._bubble);
  }

  fillRow(row, m, mine, state, divider, sender = null, author = '') {
    row.dataset.key = messageKey(m);
    if (m.id) row.dataset.id = String(m.id);
    else delete row.dataset.id;
    if (mine) row.dataset.state = state;
    const meta = h('div', { class: 'meta' }, h('time', { datetime: new Date(m.time || 0).toISOString(), text: clock(m.time) }));
    if (mine) {
      meta.append(h('span', { class: `state state-${state}`, text: STATE_LABEL[state] ? t(STATE_LABEL[state]) : '' }));
      if (state === 'failed') {
        if (m.error) meta.append(h('span', { class: 'state-error', text: m.error }));
        meta.append(h('button', { type: 'button', class: 'retry', text: t('conv.retry'), onclick: () => this.actions.retry(this.peer, m.client_msg_id) }));
      }
    }
    if (m.id) meta.append(this.menu.button(row));
    if (sender) {
      row.dataset.from = String(m.from_id);
      row.replaceChildren(
        divider ? h('div', { class: 'divider', text: divider }) : '',
        h('div', { class: 'line' }, avatar(sender, 'sm'), h('div', { class: 'stack' }, h('div', { class: 'sender', text: sender.username }), row._bubble, meta)),
      );
      return;
    }
    row.replaceChildren(divider ? h('div', { class: 'divider', text: divider }) : '', author ? h('span', { class: 'sr-only', text: t('conv.author', { name: author }) }) : '', row._bubble, meta);
  }
}
