// adapters/uniapp.js: the SDK in a uni-app (uni-app 的适配器): the socket is
// uni.connectSocket's SocketTask, HTTP is uni.request, uploads are
// uni.uploadFile (with onProgressUpdate), storage is uni's synchronous
// storage (getStorageSync / setStorageSync / removeStorageSync, the keys from
// getStorageInfoSync), and the unread total goes to the tab bar badge
// (setTabBarBadge / removeTabBarBadge), as the seed's __UpdateTabbarBadge.
// The `uni` object is passed in (or found as the global uni).

/**
 * The badge's text: the count, "99+" above 99.
 * @param {number} n
 */
export function badgeText(n) {
  return n > 99 ? '99+' : String(n);
}

/**
 * @param {object} [o]
 * @param {string} o.baseUrl  chatd's origin, "https://chat.example.com" (uni-app has no page origin)
 * @param {any} [o.uni]  default the global uni
 * @param {number | null} [o.tabBarIndex]  the tab bar item of the chat list (the seed's Config.TabbarIndex); null: no badge
 * @param {(total: number) => void} [o.badge]  replaces the tab bar badge
 * @param {boolean} [o.events]  follow uni.onNetworkStatusChange and uni.onAppShow/onAppHide (default true)
 * @returns {import('../client.js').Adapter}
 */
export function uniAdapter(o = {}) {
  const uni = o.uni || globalThis.uni;
  if (!uni) throw new TypeError('uniAdapter: no uni object');
  if (!o.baseUrl) throw new TypeError('uniAdapter: baseUrl is required (https://your-chatd-host)');
  const index = o.tabBarIndex === undefined ? 1 : o.tabBarIndex;
  let visible = true;

  // The tab bar badge. setTabBarBadge / removeTabBarBadge fail while the page shown is not a tab
  // bar page ("not TabBar page": a conversation opened over the list); what fails is applied
  // again by the client's next call: the next change of the total, the app shown again, or
  // client.refreshBadge() in a tab bar page's onShow.
  const tabBadge = (total) => {
    if (index === null) return;
    const quiet = { fail: () => {} };
    if (total > 0) uni.setTabBarBadge({ index, text: badgeText(total), ...quiet });
    else uni.removeTabBarBadge({ index, ...quiet });
  };
  const badge = o.badge || tabBadge;

  return {
    baseUrl: o.baseUrl,

    connect(url, h) {
      let open = false;
      let closed = false;
      // A SocketTask is returned only when success, fail or complete is given. A connect that
      // fails at once (a domain not allowed, too many sockets) may call only fail: a close, so
      // that the client retries with its backoff rather than after its init timeout.
      const task = uni.connectSocket({
        url,
        fail: (err) => {
          if (open || closed) return;
          closed = true;
          Promise.resolve().then(() => {
            h.onError(err);
            h.onClose(1006, (err && err.errMsg) || '');
          });
        },
        complete: () => {},
      });
      task.onOpen(() => {
        open = true;
        h.onOpen();
      });
      task.onMessage((res) => {
        if (!closed && typeof res.data === 'string') h.onMessage(res.data);
      });
      task.onClose((res) => {
        open = false;
        if (closed) return;
        closed = true;
        h.onClose(res && typeof res.code === 'number' ? res.code : 1006, (res && res.reason) || '');
      });
      task.onError((err) => {
        if (!closed) h.onError(err);
        // Some platforms report a failed connect by onError alone.
        if (!open && !closed) {
          closed = true;
          h.onClose(1006, '');
        }
      });
      return {
        send(text) {
          if (!open || closed) return false;
          task.send({
            data: text,
            fail: () => {
              // the socket is gone: the heartbeat notices within seconds
            },
          });
          return true;
        },
        close(code, reason) {
          closed = true;
          open = false;
          try {
            task.close({ code: code >= 4000 || code === 1000 ? code : 1000, reason: reason || '', fail: () => {} });
          } catch {
            /* already closed */
          }
        },
      };
    },

    request({ method, url, headers, body, timeoutMs }) {
      return new Promise((resolve, reject) => {
        uni.request({
          url,
          method,
          header: headers,
          data: body,
          timeout: timeoutMs,
          dataType: 'text', // the SDK parses the envelope itself
          responseType: 'text',
          success: (res) => resolve({ status: res.statusCode, text: res.data }),
          fail: (err) => reject(failure(err)),
        });
      });
    },

    upload({ url, headers, file, name, onProgress, timeoutMs, signal }) {
      return new Promise((resolve, reject) => {
        const task = uni.uploadFile({
          url,
          filePath: file,
          name,
          header: headers,
          timeout: timeoutMs,
          success: (res) => resolve({ status: res.statusCode, text: res.data }),
          fail: (err) => reject(failure(err)),
        });
        if (signal && task && typeof task.abort === 'function') signal.addEventListener('abort', () => task.abort(), { once: true });
        if (onProgress && task && typeof task.onProgressUpdate === 'function') {
          task.onProgressUpdate((p) => {
            if (typeof p.totalBytesExpectedToSend === 'number' && p.totalBytesExpectedToSend > 0) onProgress(p.totalBytesSent / p.totalBytesExpectedToSend);
            else if (typeof p.progress === 'number') onProgress(p.progress / 100);
          });
        }
      });
    },

    storage: {
      get: (k) => {
        const v = uni.getStorageSync(k);
        // uni answers "" for a missing key; a value stored by other code may be an object.
        if (v === '' || v === undefined || v === null) return null;
        return typeof v === 'string' ? v : JSON.stringify(v);
      },
      set: (k, v) => uni.setStorageSync(k, v),
      remove: (k) => uni.removeStorageSync(k),
      keys: () => (uni.getStorageInfoSync().keys || []).slice(),
    },

    badge,

    isVisible: () => visible,

    watch(h) {
      if (o.events === false) return () => {};
      const net = (res) => (res && res.isConnected === false ? h.offline() : h.online());
      const show = () => {
        visible = true;
        h.visibility(true);
      };
      const hide = () => {
        visible = false;
        h.visibility(false);
      };
      if (typeof uni.onNetworkStatusChange === 'function') uni.onNetworkStatusChange(net);
      if (typeof uni.onAppShow === 'function') uni.onAppShow(show);
      if (typeof uni.onAppHide === 'function') uni.onAppHide(hide);
      return () => {
        if (typeof uni.offNetworkStatusChange === 'function') uni.offNetworkStatusChange(net);
        if (typeof uni.offAppShow === 'function') uni.offAppShow(show);
        if (typeof uni.offAppHide === 'function') uni.offAppHide(hide);
      };
    },
  };
}

/** A uni fail callback's {errMsg} as the error the SDK maps to a code. */
function failure(err) {
  const msg = (err && err.errMsg) || 'request:fail';
  const e = new Error(msg);
  e.code = /timeout/i.test(msg) ? 'timeout' : /abort/i.test(msg) ? 'cancelled' : 'network';
  return e;
}
