// http.js: the chat service over HTTP, through the adapter's request() and
// upload(). Every answer is chatd's envelope {"status", "msg", "data"} (or
// {"status": false, "msg", "code"}); data is returned, errors become ChatError
// with the server's code (errors.js).

import { ChatError, CLIENT_CODES } from './errors.js';

/**
 * @typedef {object} HttpRequest
 * @property {string} method
 * @property {string} url  absolute, or a path when the adapter's platform resolves it (a browser page)
 * @property {Record<string, string>} headers
 * @property {string} [body]  JSON text
 * @property {number} timeoutMs
 *
 * @typedef {object} HttpAnswer
 * @property {number} status
 * @property {string} text  the body as text
 *
 * @typedef {object} UploadRequest
 * @property {string} url
 * @property {Record<string, string>} headers
 * @property {any} file  what the platform uploads: a Blob/File in a browser, a file path in uni-app
 * @property {string} name  the multipart field name ("file")
 * @property {(fraction: number) => void} [onProgress]
 * @property {number} timeoutMs
 * @property {AbortSignal} [signal]  aborts the upload (the adapter rejects with code "cancelled")
 */

/** The conversation key's fields in a body: {userid} or {group_id}. */
export function convRef(key) {
  return key < 0 ? { group_id: -key } : { userid: key };
}

function withClient(body, clientId) {
  return clientId ? { ...body, client_id: clientId } : body;
}

export class Api {
  /**
   * @param {object} o
   * @param {{request: (r: HttpRequest) => Promise<HttpAnswer>, upload?: (r: UploadRequest) => Promise<HttpAnswer>}} o.adapter
   * @param {string} o.baseUrl  "https://chat.example.com", or "" for the page's own origin
   * @param {() => string | null} o.token
   * @param {(err: ChatError, token: string) => void} [o.onUnauthorized]  a 401 for the token in use
   * @param {number} [o.timeoutMs]
   */
  constructor({ adapter, baseUrl, token, onUnauthorized, timeoutMs = 15000 }) {
    this.adapter = adapter;
    this.baseUrl = (baseUrl || '').replace(/\/+$/, '');
    this.token = token;
    this.onUnauthorized = onUnauthorized;
    this.timeoutMs = timeoutMs;
  }

  url(path, query) {
    let url = this.baseUrl + path;
    if (query) {
      const parts = [];
      for (const [k, v] of Object.entries(query)) {
        if (v !== undefined && v !== null) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
      }
      if (parts.length) url += `?${parts.join('&')}`;
    }
    return url;
  }

  /**
   * One request. Resolves to the envelope's data (the whole envelope with raw), or rejects with ChatError.
   * @param {string} method
   * @param {string} path  e.g. "/chat/list"
   * @param {{body?: object, query?: object, timeoutMs?: number, raw?: boolean, auth?: boolean}} [o]
   */
  async request(method, path, { body, query, timeoutMs = this.timeoutMs, raw = false, auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    const sentToken = auth ? this.token() : null;
    if (sentToken) headers.Authorization = `Bearer ${sentToken}`;
    const r = { method, url: this.url(path, query), headers, timeoutMs };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      r.body = JSON.stringify(body);
    }
    let answer;
    try {
      answer = await this.adapter.request(r);
    } catch (e) {
      throw networkError(e);
    }
    return this.envelope(answer, sentToken, raw);
  }

  /** Parses an answer's envelope (request and upload). */
  envelope(answer, sentToken, raw = false) {
    let json = null;
    try {
      json = typeof answer.text === 'string' ? JSON.parse(answer.text) : answer.text;
    } catch {
      /* not JSON */
    }
    if (json && typeof json === 'object' && json.status === true) return raw ? json : json.data;
    const status = answer.status || 0;
    const env = json && typeof json === 'object' ? json : null;
    const msg = (env && typeof env.msg === 'string' && env.msg) || `The server answered ${status}`;
    // 5xx without an envelope (a proxy, or the server going away) counts as unreachable.
    const network = status >= 502 && !env;
    const code = (env && typeof env.code === 'string' && env.code) || (network ? CLIENT_CODES.NETWORK : CLIENT_CODES.BAD_RESPONSE);
    const err = new ChatError(code, msg, { status, network });
    // bad_credentials is a wrong password typed (POST /user/password), not a dead token.
    if (status === 401 && code !== 'bad_credentials' && sentToken && sentToken === this.token() && this.onUnauthorized) {
      this.onUnauthorized(err, sentToken);
    }
    throw err;
  }

  get(path, query, o = {}) {
    return this.request('GET', path, { ...o, query });
  }

  post(path, body, o = {}) {
    return this.request('POST', path, { ...o, body });
  }

  // ---- accounts -----------------------------------------------------------------

  register(username, password, userpic) {
    return this.request('POST', '/user/register', { body: userpic ? { username, password, userpic } : { username, password }, auth: false });
  }

  login(username, password) {
    return this.request('POST', '/user/login', { body: { username, password }, auth: false });
  }

  logout() {
    return this.request('POST', '/user/logout', { timeoutMs: 4000 });
  }

  me() {
    return this.get('/user/me');
  }

  /** Signs out every other session of the user; this one goes on. */
  password(oldPassword, newPassword) {
    return this.post('/user/password', { old_password: oldPassword, new_password: newPassword });
  }

  /** userpic: an http(s) URL or a path (the url of uploadMedia); "" removes it. */
  profile(userpic, clientId) {
    return this.post('/user/profile', withClient({ userpic }, clientId));
  }

  search(q) {
    return this.get('/user/search', { q });
  }

  settings(fields) {
    return this.post('/user/settings', fields);
  }

  // ---- chat -----------------------------------------------------------------------

  /** The seed's bind, {"type":"bind","client_id"}, plus the socket's bind_nonce from its init. */
  bind(clientId, bindNonce) {
    return this.request('POST', '/chat/bind', { body: { type: 'bind', client_id: clientId, bind_nonce: bindNonce }, raw: true });
  }

  send(message) {
    return this.post('/chat/send', message);
  }

  list() {
    return this.get('/chat/list');
  }

  unread() {
    return this.get('/chat/unread');
  }

  config() {
    return this.get('/chat/config');
  }

  /** key: a conversation key (a user id, or minus a group id). Newest first. */
  history(key, before, limit) {
    return this.get('/chat/history', { ...convRef(key), before: before || 0, limit });
  }

  /** POST /chat/sync: the messages after each cursor ({"42": seq, "g7": seq}); deletedAfter: the delete-for-me cursor. */
  sync(cursors, { limit, deletedAfter } = {}) {
    const body = { cursors };
    if (limit) body.limit = limit;
    if (deletedAfter !== undefined && deletedAfter !== null) body.deleted_after = deletedAfter;
    return this.post('/chat/sync', body);
  }

  read(key, clientId) {
    return this.post('/chat/read', withClient(convRef(key), clientId));
  }

  recall(messageId, clientId) {
    return this.post('/chat/recall', withClient({ message_id: messageId }, clientId));
  }

  deleteForMe(messageIds, clientId) {
    return this.post('/chat/delete', withClient({ message_ids: messageIds }, clientId));
  }

  // ---- groups (docs/API.md "Groups") -------------------------------------------------

  groupCreate(name, members, avatar) {
    return this.post('/group/create', avatar ? { name, members, avatar } : { name, members });
  }

  groupInfo(groupId) {
    return this.post('/group/info', { group_id: groupId });
  }

  groupAdd(groupId, members) {
    return this.post('/group/add', { group_id: groupId, members });
  }

  groupRemove(groupId, userid) {
    return this.post('/group/remove', { group_id: groupId, userid });
  }

  groupLeave(groupId) {
    return this.post('/group/leave', { group_id: groupId });
  }

  /** fields: {name?, avatar?} */
  groupUpdate(groupId, fields) {
    return this.post('/group/update', { group_id: groupId, ...fields });
  }

  groupRole(groupId, userid, role) {
    return this.post('/group/role', { group_id: groupId, userid, role });
  }

  groupDissolve(groupId) {
    return this.post('/group/dissolve', { group_id: groupId });
  }

  groupMute(groupId, muted) {
    return this.post('/group/mute', { group_id: groupId, muted });
  }

  // ---- media (docs/MEDIA.md) ------------------------------------------------------------

  /**
   * POST /media through the adapter's upload (progress as the bytes go out).
   * Resolves to {url, type, width, height, size}.
   * @param {any} file  a Blob (browser) or a file path (uni-app)
   * @param {{onProgress?: (f: number) => void, timeoutMs?: number, signal?: AbortSignal}} [o]
   */
  async upload(file, { onProgress, timeoutMs = 120000, signal } = {}) {
    if (!this.adapter.upload) throw new ChatError('unsupported', 'this adapter cannot upload');
    const sentToken = this.token();
    const headers = { Accept: 'application/json' };
    if (sentToken) headers.Authorization = `Bearer ${sentToken}`;
    let answer;
    try {
      if (signal && signal.aborted) throw Object.assign(new Error('cancelled'), { code: 'cancelled' });
      answer = await this.adapter.upload({ url: this.url('/media'), headers, file, name: 'file', onProgress, timeoutMs, signal });
    } catch (e) {
      throw networkError(e);
    }
    const data = this.envelope(answer, sentToken);
    if (onProgress) onProgress(1);
    return data;
  }
}

/** An adapter's failure to get an answer, as a ChatError (timeout, cancelled, network). */
export function networkError(e) {
  if (e instanceof ChatError) return e;
  const code = e && (e.code === 'timeout' || e.name === 'TimeoutError' || e.timeout) ? CLIENT_CODES.TIMEOUT : e && (e.code === 'cancelled' || e.name === 'AbortError') ? CLIENT_CODES.CANCELLED : CLIENT_CODES.NETWORK;
  const msg = code === CLIENT_CODES.TIMEOUT ? 'The server did not answer in time' : code === CLIENT_CODES.CANCELLED ? 'Cancelled' : 'Cannot reach the server';
  return new ChatError(code, msg, { network: code !== CLIENT_CODES.CANCELLED });
}
