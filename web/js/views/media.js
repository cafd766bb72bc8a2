// views/media.js: pictures in a conversation. An image bubble reserves its box from the
// message's width and height before the picture loads (scaled to fit MAX_W x MAX_H, so
// nothing jumps when it arrives), loads lazily, and opens the full picture in an overlay
// (Esc, the close button or a click beside it closes it). The Uploader sends pictures the
// user picked, pasted or dropped: each goes to POST /media (docs/MEDIA.md) in its own
// pending bubble with a progress bar and a Cancel button, one at a time (the server takes
// two uploads per user at once); once stored, an "image" message with the URL, width and
// height is sent. A refused file (not a picture, too large, cut off ...) stays as a bubble
// saying why, until dismissed, and nothing is sent.
import { client } from '../chat.js';
import { h, safeUrl } from '../dom.js';
import { errText, has, t } from '../i18n.js';

export const MAX_W = 240;
export const MAX_H = 240;
const MIN_SIDE = 40;

/** The box a width x height picture is shown in: scaled down (never up) to fit MAX_W x MAX_H. */
export function imageBox(width, height) {
  const scale = Math.min(1, MAX_W / width, MAX_H / height);
  return {
    w: Math.max(MIN_SIDE, Math.round(width * scale)),
    h: Math.max(MIN_SIDE, Math.round(height * scale)),
  };
}

/** "10 MB", "512 KB": a byte limit for people. */
function sizeText(n) {
  if (n >= 1048576) return `${Math.round((n / 1048576) * 10) / 10} MB`;
  return `${Math.max(1, Math.round(n / 1024))} KB`;
}

/** Why an upload failed, in words: docs/MEDIA.md's codes through media.err.<code>, else errText. */
export function uploadErrorText(e, maxUpload) {
  if (e && e.network) return t('media.err.network');
  const code = e && typeof e.code === 'string' ? e.code : '';
  if (code === 'too_large') return maxUpload ? t('media.err.too_large', { max: sizeText(maxUpload) }) : t('media.err.too_large_server');
  if (code && has(`media.err.${code}`)) return t(`media.err.${code}`);
  return errText(e);
}

// ---- the full picture ---------------------------------------------------------------

let viewer = null;

/** Opens the full picture over the page; returns focus to what had it when closed. */
export function openViewer(url) {
  closeViewer();
  const back = document.activeElement;
  const close = h('button', { type: 'button', class: 'viewer-close', text: '×', 'aria-label': t('media.close'), title: t('media.close') });
  const img = h('img', { class: 'viewer-img', src: url, alt: t('conv.image'), referrerpolicy: 'no-referrer' });
  const root = h('div', { id: 'image-viewer', class: 'viewer', role: 'dialog', 'aria-modal': 'true', 'aria-label': t('conv.image') }, img, close);
  const onKey = (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      closeViewer();
    }
  };
  root.addEventListener('click', (e) => {
    if (e.target !== img) closeViewer();
  });
  document.addEventListener('keydown', onKey, true);
  document.body.append(root);
  viewer = { root, onKey, back };
  close.focus();
}

export function closeViewer() {
  if (!viewer) return;
  const { root, onKey, back } = viewer;
  viewer = null;
  document.removeEventListener('keydown', onKey, true);
  root.remove();
  if (back && back.isConnected && typeof back.focus === 'function') back.focus();
}

// ---- image bubbles ----------------------------------------------------------------------

/**
 * The bubble of an image message: a link to the picture (a new tab with a modifier key,
 * the overlay on a plain click) around the lazily loaded img, its box reserved when the
 * message has width and height. onLoad runs when the picture has loaded (the view keeps
 * the end of the conversation in sight). Returns null for a URL that is not http(s).
 */
export function imageBubble(m, onLoad) {
  const url = safeUrl(m.data);
  if (!url) return null;
  const img = h('img', { src: url, alt: t('conv.image'), loading: 'lazy', decoding: 'async', referrerpolicy: 'no-referrer' });
  const sized = Number.isInteger(m.width) && Number.isInteger(m.height);
  if (sized) {
    const box = imageBox(m.width, m.height);
    img.width = box.w;
    img.height = box.h;
    img.style.width = `${box.w}px`;
    img.style.height = `${box.h}px`;
    img.classList.add('sized');
  }
  img.addEventListener('load', () => onLoad && onLoad());
  img.addEventListener('error', () => img.replaceWith(h('span', { class: 'img-broken', text: t('conv.image_broken') })));
  const link = h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, img);
  link.addEventListener('click', (e) => {
    if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    openViewer(url);
  });
  return h('div', { class: `bubble image${sized ? ' sized' : ''}` }, link);
}

// ---- uploads --------------------------------------------------------------------------------

/** Files of a paste or a drop: [File], possibly empty. */
export function filesOf(dataTransfer) {
  if (!dataTransfer) return [];
  const out = [...(dataTransfer.files || [])];
  if (out.length) return out;
  for (const item of dataTransfer.items || []) {
    if (item.kind === 'file') {
      const f = item.getAsFile();
      if (f) out.push(f);
    }
  }
  return out;
}

/** Whether a drag carries files. */
export function dragHasFiles(e) {
  return !!(e.dataTransfer && [...(e.dataTransfer.types || [])].includes('Files'));
}

/** The pixel size of a picture file as the browser decodes it, or null (not a picture it can decode). */
function localSize(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img.naturalWidth > 0 ? { width: img.naturalWidth, height: img.naturalHeight } : null);
    img.onerror = () => resolve(null);
    img.src = url;
  });
}

export class Uploader {
  /**
   * @param {HTMLElement} container  where the pending bubbles go (after the message rows)
   * @param {{send: (peer: number, url: string, size: {width: number, height: number}) => boolean,
   *          maxUpload: () => number, changed: () => void}} o
   *   send: sends the image message to peer; changed: bubbles were added or removed (scroll).
   */
  constructor(container, { send, maxUpload, changed }) {
    this.container = container;
    this.o = { send, maxUpload, changed };
    this.queue = [];
    this.running = null;
    this.peer = null;
  }

  /** Shows the pending bubbles of conversation peer only. */
  show(peer) {
    this.peer = peer;
    for (const row of this.container.children) row.hidden = Number(row.dataset.peer) !== peer;
  }

  /** Starts uploading files to conversation peer (in order, after those already waiting). */
  add(peer, files) {
    for (const file of files) {
      const job = this.makeJob(peer, file);
      const limit = this.o.maxUpload();
      if (limit && file.size > limit) {
        this.fail(job, uploadErrorText({ code: 'too_large' }, limit));
        continue;
      }
      if (!file.size) {
        this.fail(job, uploadErrorText({ code: 'empty_file' }));
        continue;
      }
      this.queue.push(job);
    }
    this.o.changed();
    this.next();
  }

  makeJob(peer, file) {
    const objectUrl = URL.createObjectURL(file);
    const preview = h('img', { class: 'upload-preview', alt: '', src: objectUrl });
    const box = h('div', { class: 'upload-box' }, preview);
    const progress = h('progress', { class: 'upload-progress', max: '1', value: '0', 'aria-label': t('media.progress') });
    const status = h('span', { class: 'upload-status', text: t('media.waiting') });
    const cancel = h('button', { type: 'button', class: 'upload-cancel', text: t('media.cancel') });
    const row = h(
      'div',
      { class: 'row mine upload', role: 'listitem', dataset: { peer, state: 'uploading' } },
      h('div', { class: 'bubble image uploading' }, box, progress),
      h('div', { class: 'meta' }, status, cancel),
    );
    row.hidden = peer !== this.peer;
    const job = { peer, file, row, box, progress, status, cancel, objectUrl, abort: new AbortController(), done: false };
    cancel.addEventListener('click', () => this.remove(job));
    // The pending bubble takes the picture's box as soon as the browser knows its size.
    localSize(objectUrl).then((size) => {
      if (!size) {
        preview.remove();
        return;
      }
      const b = imageBox(size.width, size.height);
      preview.style.width = `${b.w}px`;
      preview.style.height = `${b.h}px`;
      this.o.changed();
    });
    this.container.append(row);
    return job;
  }

  /** Shows why a file was not sent; the bubble stays until dismissed. */
  fail(job, message) {
    job.done = true;
    job.row.dataset.state = 'failed';
    job.progress.remove();
    job.status.className = 'upload-error';
    job.status.setAttribute('role', 'alert');
    job.status.textContent = t('media.failed', { reason: message });
    job.cancel.textContent = t('media.dismiss');
  }

  /** Cancels (or dismisses) one upload and takes its bubble away. */
  remove(job) {
    if (!job.done) job.abort.abort();
    job.done = true;
    this.queue = this.queue.filter((j) => j !== job);
    job.row.remove();
    URL.revokeObjectURL(job.objectUrl);
    this.o.changed();
  }

  /** Cancels everything (sign out). */
  clear() {
    for (const job of [...this.queue]) this.remove(job);
    if (this.running) this.remove(this.running);
    this.container.replaceChildren();
  }

  async next() {
    if (this.running || !this.queue.length) return;
    const job = this.queue.shift();
    this.running = job;
    job.status.textContent = t('media.uploading');
    try {
      const media = await client.uploadMedia(job.file, {
        signal: job.abort.signal,
        onProgress: (f) => {
          job.progress.value = f;
        },
      });
      if (!job.done) {
        job.done = true;
        if (this.o.send(job.peer, media.url, { width: Number(media.width), height: Number(media.height) })) this.remove(job);
        else this.fail(job, t('err.generic'));
      }
    } catch (e) {
      if (!job.done) this.fail(job, uploadErrorText(e, this.o.maxUpload()));
    } finally {
      this.running = null;
      this.next();
    }
  }
}
