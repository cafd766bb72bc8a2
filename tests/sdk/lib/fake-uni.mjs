// fake-uni.mjs: the parts of uni-app's `uni` API the SDK's uni adapter uses,
// behaving as uni-app documents them (https://uniapp.dcloud.net.cn/api/), on
// Node: one FakeUni is one phone (its own storage, tab bar and network).
//
// - uni.connectSocket({url, header, protocols, success, fail, complete}):
//   returns a SocketTask only when success, fail or complete is given
//   (otherwise a Promise, as uni-app does); the task has onOpen(cb),
//   onMessage(cb({data})), onClose(cb({code, reason})), onError(cb({errMsg})),
//   send({data, success, fail, complete}) (fail when not open) and
//   close({code, reason, success, fail, complete}). Callbacks run async.
// - uni.request({url, data, header, method, timeout, dataType, responseType,
//   success, fail, complete}): success({data, statusCode, header}); data is
//   JSON.parse'd when dataType is "json" (the default) and the body parses;
//   an object `data` is sent as JSON (POST) or as the query (GET); fail({errMsg}).
// - uni.uploadFile({url, filePath, name, header, formData, timeout, success,
//   fail, complete}): a multipart/form-data POST of the file at filePath;
//   returns an UploadTask with onProgressUpdate(cb({progress,
//   totalBytesSent, totalBytesExpectedToSend})) and abort(); success({data
//   (a string), statusCode}).
//   connectSocket calls fail (then complete) instead when it cannot start a
//   socket (WeChat: a domain not allowed, more than 5 sockets): the test hook
//   failSockets = n makes the next n calls fail so.
// - getStorageSync (a missing key gives ""), setStorageSync,
//   removeStorageSync, getStorageInfoSync ({keys, currentSize, limitSize}),
//   clearStorageSync: values kept as given (cloned). The limits are WeChat's:
//   1 MB a key and 10 MB in all (setStorageSync throws beyond them; sizes
//   here are the key and value's JSON in UTF-8 bytes; limits can be lowered).
// - setTabBarBadge({index, text}) / removeTabBarBadge({index}): the badge of
//   tab bar item index (text must be a string); tabBar[index].badge here.
//   They fail ("not TabBar page") unless the page shown is a tab bar page:
//   the page stack follows navigateTo / navigateBack / switchTab / reLaunch
//   (tabPages: the tab bar's pages; the app starts on the first).
// - onNetworkStatusChange / offNetworkStatusChange, onAppShow / onAppHide and
//   their off*: test helpers setNetwork(isConnected), hide(), show() fire them.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import WebSocket from 'ws';

const later = (fn) => setImmediate(fn);
const call = (fn, arg) => {
  if (typeof fn === 'function') fn(arg);
};

function finish(o, ok, res) {
  later(() => {
    call(ok ? o.success : o.fail, res);
    call(o.complete, res);
  });
}

class SocketTask {
  constructor(url, o) {
    this.cbs = { open: [], message: [], close: [], error: [] };
    this.readyState = 0; // CONNECTING, as uni's SocketTask.readyState
    this.ws = new WebSocket(url, o.protocols || [], { headers: o.header || {} });
    this.ws.on('open', () => {
      this.readyState = 1;
      this.fire('open', { header: {} });
    });
    this.ws.on('message', (data, isBinary) => this.fire('message', { data: isBinary ? new Uint8Array(data).buffer : data.toString() }));
    this.ws.on('error', (e) => this.fire('error', { errMsg: `onSocketError: ${e.message}` }));
    this.ws.on('close', (code, reason) => {
      this.readyState = 3;
      this.fire('close', { code, reason: reason.toString() });
    });
  }

  fire(kind, res) {
    for (const cb of this.cbs[kind]) later(() => cb(res));
  }

  onOpen(cb) {
    this.cbs.open.push(cb);
  }

  onMessage(cb) {
    this.cbs.message.push(cb);
  }

  onClose(cb) {
    this.cbs.close.push(cb);
  }

  onError(cb) {
    this.cbs.error.push(cb);
  }

  send(o) {
    if (this.readyState !== 1) {
      finish(o, false, { errMsg: 'sendSocketMessage:fail WebSocket is not connected' });
      return;
    }
    this.ws.send(o.data, (err) => finish(o, !err, { errMsg: err ? `sendSocketMessage:fail ${err.message}` : 'sendSocketMessage:ok' }));
  }

  close(o = {}) {
    const code = o.code === undefined ? 1000 : o.code;
    if (this.readyState >= 2) {
      finish(o, true, { errMsg: 'closeSocket:ok' });
      return;
    }
    this.readyState = 2;
    try {
      this.ws.close(code, o.reason || '');
      finish(o, true, { errMsg: 'closeSocket:ok' });
    } catch (e) {
      finish(o, false, { errMsg: `closeSocket:fail ${e.message}` });
    }
  }

  /** Test helper: the network under the socket dies without a close (no FIN reaches either side). */
  kill() {
    this.ws._socket && this.ws._socket.pause();
    this.ws.removeAllListeners('message');
  }
}

function httpRequest({ url, method, headers, body, timeout, onSent, onReq }) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers });
    if (onReq) onReq(req);
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error('timeout'));
    }, timeout);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ statusCode: res.statusCode, header: res.headers, text });
      });
    });
    if (!body || !body.length) {
      req.end();
      return;
    }
    const CHUNK = 16 * 1024;
    let sent = 0;
    const next = () => {
      if (sent >= body.length) {
        req.end();
        return;
      }
      const part = body.subarray(sent, sent + CHUNK);
      req.write(part, () => {
        sent += part.length;
        if (onSent) onSent(sent, body.length);
        next();
      });
    };
    next();
  });
}

const MB = 1024 * 1024;
const route = (url) => String(url).replace(/^\//, '').split('?')[0];

export class FakeUni {
  constructor({ tabPages = ['pages/index/index', 'pages/chat-list/chat-list'], keyLimit = MB, totalLimit = 10 * MB } = {}) {
    this.store = new Map();
    this.limits = { key: keyLimit, total: totalLimit };
    this.tabPages = tabPages;
    this.pages = [tabPages[0]]; // the page stack, the shown page last
    this.failSockets = 0;
    this.tabBar = [{ badge: null }, { badge: null }, { badge: null }, { badge: null }];
    this.badgeCalls = [];
    this.sockets = [];
    this.requests = []; // {method, url} of every uni.request
    this.listeners = { network: new Set(), show: new Set(), hide: new Set() };
  }

  // ---- network ----

  connectSocket(o) {
    if (!o.success && !o.fail && !o.complete) return Promise.reject(new Error('connectSocket without callbacks answers a Promise, not a SocketTask'));
    if (this.failSockets > 0) {
      this.failSockets -= 1;
      finish(o, false, { errMsg: 'connectSocket:fail url not in domain list' });
      const dead = { onOpen() {}, onMessage() {}, onClose() {}, onError() {}, send: (x) => finish(x, false, { errMsg: 'sendSocketMessage:fail' }), close: (x = {}) => finish(x, true, { errMsg: 'closeSocket:ok' }) };
      this.sockets.push(dead);
      return dead;
    }
    const task = new SocketTask(o.url, o);
    this.sockets.push(task);
    finish(o, true, { errMsg: 'connectSocket:ok' });
    return task;
  }

  request(o) {
    const method = (o.method || 'GET').toUpperCase();
    let url = o.url;
    const headers = { ...(o.header || {}) };
    let body;
    if (o.data !== undefined) {
      if (method === 'GET' && typeof o.data === 'object') {
        const qs = new URLSearchParams(Object.entries(o.data).map(([k, v]) => [k, String(v)])).toString();
        if (qs) url += (url.includes('?') ? '&' : '?') + qs;
      } else {
        const isString = typeof o.data === 'string';
        body = Buffer.from(isString ? o.data : JSON.stringify(o.data));
        if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['Content-Type'] = 'application/json';
      }
    }
    if (body) headers['Content-Length'] = body.length;
    this.requests.push({ method, url });
    let aborted = false;
    httpRequest({ url, method, headers, body, timeout: o.timeout || 60000 }).then(
      (r) => {
        if (aborted) return;
        let data = r.text;
        if ((o.dataType || 'json') === 'json') {
          try {
            data = JSON.parse(r.text);
          } catch {
            /* left as text */
          }
        }
        finish(o, true, { data, statusCode: r.statusCode, header: r.header, cookies: [], errMsg: 'request:ok' });
      },
      (e) => {
        if (!aborted) finish(o, false, { errMsg: `request:fail ${e.message === 'timeout' ? 'timeout' : e.message}` });
      },
    );
    return {
      abort: () => {
        aborted = true;
        finish(o, false, { errMsg: 'request:fail abort' });
      },
    };
  }

  uploadFile(o) {
    const progress = [];
    let req = null;
    let aborted = false;
    const task = {
      onProgressUpdate: (cb) => progress.push(cb),
      offProgressUpdate: (cb) => progress.splice(progress.indexOf(cb), 1),
      abort: () => {
        if (aborted) return;
        aborted = true;
        if (req) req.destroy();
        finish(o, false, { errMsg: 'uploadFile:fail abort' });
      },
    };
    let file;
    try {
      file = fs.readFileSync(o.filePath);
    } catch (e) {
      finish(o, false, { errMsg: `uploadFile:fail file not found: ${e.message}` });
      return task;
    }
    const boundary = `----uniFormBoundary${crypto.randomBytes(8).toString('hex')}`;
    const parts = [];
    for (const [k, v] of Object.entries(o.formData || {})) {
      parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
    }
    const filename = o.filePath.split('/').pop();
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${o.name}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
    parts.push(file);
    parts.push(Buffer.from(`\r\n--${boundary}--\r\n`));
    const body = Buffer.concat(parts);
    const headers = { ...(o.header || {}), 'Content-Type': `multipart/form-data; boundary=${boundary}`, 'Content-Length': body.length };
    httpRequest({
      url: o.url,
      method: 'POST',
      headers,
      body,
      timeout: o.timeout || 60000,
      onReq: (r) => (req = r),
      onSent: (sent, total) => {
        const p = { progress: Math.round((sent / total) * 100), totalBytesSent: sent, totalBytesExpectedToSend: total };
        for (const cb of progress) later(() => cb(p));
      },
    }).then(
      (r) => aborted || finish(o, true, { data: r.text, statusCode: r.statusCode, errMsg: 'uploadFile:ok' }),
      (e) => aborted || finish(o, false, { errMsg: `uploadFile:fail ${e.message}` }),
    );
    return task;
  }

  // ---- storage ----

  getStorageSync(key) {
    return this.store.has(key) ? structuredClone(this.store.get(key)) : '';
  }

  setStorageSync(key, data) {
    const size = (k, v) => Buffer.byteLength(k) + Buffer.byteLength(JSON.stringify(v) ?? '');
    if (size(key, data) > this.limits.key) throw new Error('setStorageSync:fail exceed storage item max length');
    let total = size(key, data);
    for (const [k, v] of this.store) if (k !== key) total += size(k, v);
    if (total > this.limits.total) throw new Error('setStorageSync:fail exceed storage max size 10MB');
    this.store.set(key, structuredClone(data));
  }

  removeStorageSync(key) {
    this.store.delete(key);
  }

  clearStorageSync() {
    this.store.clear();
  }

  getStorageInfoSync() {
    let size = 0;
    for (const [k, v] of this.store) size += k.length + JSON.stringify(v).length;
    return { keys: [...this.store.keys()], currentSize: Math.ceil(size / 1024), limitSize: 10240 };
  }

  // ---- tab bar ----

  /** The route of the page shown ("pages/chat-list/chat-list"). */
  currentPage() {
    return this.pages[this.pages.length - 1];
  }

  onTabPage() {
    return this.tabPages.includes(this.currentPage());
  }

  navigateTo(o) {
    if (this.tabPages.includes(route(o.url))) return finish(o, false, { errMsg: 'navigateTo:fail can not navigateTo a tabbar page' });
    this.pages.push(route(o.url));
    finish(o, true, { errMsg: 'navigateTo:ok' });
  }

  navigateBack(o = {}) {
    const n = Math.max(1, o.delta || 1);
    this.pages.splice(Math.max(1, this.pages.length - n));
    finish(o, true, { errMsg: 'navigateBack:ok' });
  }

  switchTab(o) {
    if (!this.tabPages.includes(route(o.url))) return finish(o, false, { errMsg: 'switchTab:fail can not switch to no-tabBar page' });
    this.pages = [route(o.url)];
    finish(o, true, { errMsg: 'switchTab:ok' });
  }

  reLaunch(o) {
    this.pages = [route(o.url)];
    finish(o, true, { errMsg: 'reLaunch:ok' });
  }

  setTabBarBadge(o) {
    if (!this.onTabPage()) {
      finish(o, false, { errMsg: 'setTabBarBadge:fail not TabBar page' });
      return;
    }
    const item = this.tabBar[o.index];
    if (!item || typeof o.text !== 'string') {
      finish(o, false, { errMsg: 'setTabBarBadge:fail' });
      return;
    }
    item.badge = o.text;
    this.badgeCalls.push(o.text);
    finish(o, true, { errMsg: 'setTabBarBadge:ok' });
  }

  removeTabBarBadge(o) {
    if (!this.onTabPage()) {
      finish(o, false, { errMsg: 'removeTabBarBadge:fail not TabBar page' });
      return;
    }
    const item = this.tabBar[o.index];
    if (!item) {
      finish(o, false, { errMsg: 'removeTabBarBadge:fail' });
      return;
    }
    item.badge = null;
    this.badgeCalls.push(null);
    finish(o, true, { errMsg: 'removeTabBarBadge:ok' });
  }

  // ---- app and network events ----

  onNetworkStatusChange(cb) {
    this.listeners.network.add(cb);
  }

  offNetworkStatusChange(cb) {
    this.listeners.network.delete(cb);
  }

  onAppShow(cb) {
    this.listeners.show.add(cb);
  }

  offAppShow(cb) {
    this.listeners.show.delete(cb);
  }

  onAppHide(cb) {
    this.listeners.hide.add(cb);
  }

  offAppHide(cb) {
    this.listeners.hide.delete(cb);
  }

  setNetwork(isConnected) {
    for (const cb of this.listeners.network) cb({ isConnected, networkType: isConnected ? 'wifi' : 'none' });
  }

  hide() {
    for (const cb of this.listeners.hide) cb();
  }

  show() {
    for (const cb of this.listeners.show) cb({ path: this.currentPage() });
  }
}
