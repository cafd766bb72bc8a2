// adapters/browser.js: the SDK on a web page: WebSocket, fetch, an
// XMLHttpRequest upload (fetch reports no upload progress), localStorage, a
// badge hook of the app's choosing, and the page's visibility and
// online/offline events. Every global can be passed in instead (tests, a
// worker, a WebSocket polyfill).

/**
 * @param {object} [o]
 * @param {string} [o.baseUrl]  chatd's origin; default "" (the page's own)
 * @param {any} [o.WebSocket]  default globalThis.WebSocket
 * @param {typeof fetch} [o.fetch]  default globalThis.fetch
 * @param {any} [o.XMLHttpRequest]  default globalThis.XMLHttpRequest (uploads fall back to fetch without it)
 * @param {Storage | null} [o.localStorage]  default globalThis.localStorage; null: keep nothing
 * @param {(total: number) => void} [o.badge]  called with the unread total
 * @param {boolean} [o.events]  listen to visibilitychange and online/offline (default true where they exist)
 * @param {any} [o.window]  default globalThis.window
 * @param {any} [o.document]  default globalThis.document
 * @returns {import('../client.js').Adapter}
 */
export function browserAdapter(o = {}) {
  const g = globalThis;
  const WS = o.WebSocket || g.WebSocket;
  const fetchFn = o.fetch || (g.fetch ? g.fetch.bind(g) : null);
  const XHR = o.XMLHttpRequest !== undefined ? o.XMLHttpRequest : g.XMLHttpRequest;
  const ls = o.localStorage !== undefined ? o.localStorage : safeLocalStorage();
  const win = o.window !== undefined ? o.window : g.window;
  const doc = o.document !== undefined ? o.document : g.document;
  const events = o.events !== false;
  const loc = win && win.location;

  /** "/ws" on this page's host, ws: or wss: as the page. */
  function absoluteWs(url) {
    if (/^wss?:/i.test(url) || !loc) return url;
    const scheme = loc.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${scheme}//${loc.host}${url}`;
  }

  return {
    baseUrl: o.baseUrl || '',

    connect(url, h) {
      const ws = new WS(absoluteWs(url));
      ws.onopen = () => h.onOpen();
      ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') h.onMessage(ev.data);
      };
      ws.onclose = (ev) => h.onClose(ev ? ev.code : 1006, ev ? ev.reason : '');
      ws.onerror = (ev) => h.onError(ev);
      return {
        send(text) {
          if (ws.readyState !== 1) return false; // OPEN
          ws.send(text);
          return true;
        },
        close(code, reason) {
          ws.onmessage = null;
          ws.onclose = null;
          ws.onerror = null;
          try {
            ws.close(code, reason);
          } catch {
            /* already closed, or a code the platform refuses */
            try {
              ws.close();
            } catch {
              /* closed */
            }
          }
        },
      };
    },

    async request({ method, url, headers, body, timeoutMs }) {
      const init = { method, headers, cache: 'no-store', credentials: 'omit' };
      if (body !== undefined) init.body = body;
      if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(timeoutMs);
      const res = await fetchFn(url, init);
      return { status: res.status, text: await res.text() };
    },

    upload({ url, headers, file, onProgress, timeoutMs, signal }) {
      if (!XHR) return fetchUpload(fetchFn, { url, headers, file, timeoutMs, signal });
      return new Promise((resolve, reject) => {
        const xhr = new XHR();
        if (signal) signal.addEventListener('abort', () => xhr.abort(), { once: true });
        xhr.open('POST', url);
        xhr.timeout = timeoutMs;
        xhr.responseType = 'text';
        for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
        if (onProgress && xhr.upload) {
          xhr.upload.addEventListener('progress', (e) => {
            if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
          });
        }
        xhr.addEventListener('load', () => resolve({ status: xhr.status, text: xhr.responseText }));
        xhr.addEventListener('error', () => reject(Object.assign(new Error('network'), { code: 'network' })));
        xhr.addEventListener('timeout', () => reject(Object.assign(new Error('timeout'), { code: 'timeout' })));
        xhr.addEventListener('abort', () => reject(Object.assign(new Error('cancelled'), { code: 'cancelled' })));
        // The raw body (docs/MEDIA.md): the file's bytes, its type decided by the server.
        xhr.send(file);
      });
    },

    storage: ls
      ? {
          get: (k) => ls.getItem(k),
          set: (k, v) => ls.setItem(k, v),
          remove: (k) => ls.removeItem(k),
          keys: () => {
            const out = [];
            for (let i = 0; i < ls.length; i++) out.push(ls.key(i));
            return out;
          },
        }
      : undefined,

    badge: o.badge,

    isVisible: () => !doc || doc.visibilityState !== 'hidden',

    watch(h) {
      if (!events || !win || typeof win.addEventListener !== 'function') return () => {};
      const online = () => h.online();
      const offline = () => h.offline();
      const vis = () => h.visibility(!doc || doc.visibilityState !== 'hidden');
      win.addEventListener('online', online);
      win.addEventListener('offline', offline);
      if (doc && typeof doc.addEventListener === 'function') doc.addEventListener('visibilitychange', vis);
      return () => {
        win.removeEventListener('online', online);
        win.removeEventListener('offline', offline);
        if (doc && typeof doc.removeEventListener === 'function') doc.removeEventListener('visibilitychange', vis);
      };
    },
  };
}

function safeLocalStorage() {
  try {
    return globalThis.localStorage || null;
  } catch {
    return null; // a sandboxed frame, storage blocked
  }
}

async function fetchUpload(fetchFn, { url, headers, file, timeoutMs, signal }) {
  const init = { method: 'POST', headers, body: file, credentials: 'omit' };
  if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) {
    const timeout = AbortSignal.timeout(timeoutMs);
    init.signal = signal && AbortSignal.any ? AbortSignal.any([signal, timeout]) : signal || timeout;
  }
  const res = await fetchFn(url, init);
  return { status: res.status, text: await res.text() };
}
