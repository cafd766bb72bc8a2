// api.js: the chat service over HTTP. Every response is the envelope
// {"status", "msg", "data"}; errors become ApiError with the server's msg.

import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(message, { status = 0, code = '', network = false } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.network = network;
  }
}

let token = null;
let unauthorizedHandler = null;

export function setToken(t) {
  token = t || null;
}

/** Called (once per failing request) when the server says the token is no longer valid. */
export function onUnauthorized(fn) {
  unauthorizedHandler = fn;
}

/**
 * One request. Resolves to the envelope's data, or rejects with ApiError.
 * @param {string} method
 * @param {string} path  e.g. "/chat/list"
 * @param {{body?: object, query?: object, timeoutMs?: number, raw?: boolean}} [o]
 */
export async function request(method, path, { body, query, timeoutMs = 15000, raw = false } = {}) {
  let url = path;
  if (query) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.set(k, String(v));
    const s = qs.toString();
    if (s) url += `?${s}`;
  }
  const headers = { Accept: 'application/json' };
  const sentToken = token;
  if (sentToken) headers.Authorization = `Bearer ${sentToken}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (typeof AbortSignal !== 'undefined' && AbortSignal.timeout) init.signal = AbortSignal.timeout(timeoutMs);

  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    const timedOut = e && (e.name === 'TimeoutError' || e.name === 'AbortError');
    throw new ApiError(t(timedOut ? 'err.no_answer' : 'err.network'), { network: true });
  }
  let json = null;
  try {
    json = await res.json();
  } catch {
    /* not JSON */
  }
  if (!json || typeof json !== 'object' || json.status !== true) {
    const msg = (json && typeof json.msg === 'string' && json.msg) || t('err.http_status', { status: res.status });
    const err = new ApiError(msg, { status: res.status, code: (json && json.code) || '' });
    // bad_credentials is a wrong password typed (POST /user/password), not a dead token.
    const dead = res.status === 401 && !(json && json.code === 'bad_credentials');
    if (dead && sentToken && sentToken === token && unauthorizedHandler) unauthorizedHandler(err);
    // 5xx without an envelope (a proxy, or the server going away) counts as unreachable.
    if (res.status >= 502 && !json) err.network = true;
    throw err;
  }
  return raw ? json : json.data;
}

export const api = {
  register: (username, password, userpic) =>
    request('POST', '/user/register', { body: userpic ? { username, password, userpic } : { username, password } }),
  login: (username, password) => request('POST', '/user/login', { body: { username, password } }),
  logout: () => request('POST', '/user/logout', { timeoutMs: 4000 }),
  me: () => request('GET', '/user/me'),
  /** Signs out every other session of the user; this one goes on. */
  password: (oldPassword, newPassword) =>
    request('POST', '/user/password', { body: { old_password: oldPassword, new_password: newPassword } }),
  /** userpic: an http(s) URL or a path (a /media/... URL from uploadMedia); "" removes it. */
  profile: (userpic, clientId) => request('POST', '/user/profile', { body: clientId ? { userpic, client_id: clientId } : { userpic } }),
  search: (q) => request('GET', '/user/search', { query: { q } }),
  /** The reference client's bind, {"type":"bind","client_id"} -> envelope with type "bind", plus the
   *  socket's bind_nonce from its init message (proof that this page holds the socket). */
  bind: (clientId, bindNonce) =>
    request('POST', '/chat/bind', { body: { type: 'bind', client_id: clientId, bind_nonce: bindNonce }, raw: true }),
  send: (message) => request('POST', '/chat/send', { body: message }),
  list: () => request('GET', '/chat/list'),
  unread: () => request('GET', '/chat/unread'),
  /** key: a conversation key (store.js): a user id, or minus a group id. */
  history: (key, before, limit) => request('GET', '/chat/history', { query: { ...ref(key), before: before || 0, limit } }),
  /** POST /chat/sync: the messages after each conversation's cursor ({peer id: last seq held}); a
   *  conversation left out starts at 0. limit: the server's --page-limit when absent. */
  syncCursors: (cursors, limit) => request('POST', '/chat/sync', { body: limit ? { cursors, limit } : { cursors } }),
  read: (key, clientId) => request('POST', '/chat/read', { body: clientId ? { ...ref(key), client_id: clientId } : ref(key) }),
  // Groups (docs/API.md "Groups"): each answers the group and, for a change, its system message.
  groupCreate: (name, members) => request('POST', '/group/create', { body: { name, members } }),
  groupInfo: (groupId) => request('POST', '/group/info', { body: { group_id: groupId } }),
  groupAdd: (groupId, members) => request('POST', '/group/add', { body: { group_id: groupId, members } }),
  groupRemove: (groupId, userid) => request('POST', '/group/remove', { body: { group_id: groupId, userid } }),
  groupLeave: (groupId) => request('POST', '/group/leave', { body: { group_id: groupId } }),
  groupUpdate: (groupId, fields) => request('POST', '/group/update', { body: { group_id: groupId, ...fields } }),
  groupRole: (groupId, userid, role) => request('POST', '/group/role', { body: { group_id: groupId, userid, role } }),
  groupDissolve: (groupId) => request('POST', '/group/dissolve', { body: { group_id: groupId } }),
  groupMute: (groupId, muted) => request('POST', '/group/mute', { body: { group_id: groupId, muted } }),
};

function ref(key) {
  return key < 0 ? { group_id: -key } : { userid: key };
}

/**
 * POST /media with the file as the body (docs/MEDIA.md), over XMLHttpRequest
 * because fetch reports no upload progress. onProgress(fraction 0..1) runs as
 * the bytes go out. Resolves to {url, type, width, height, size}; rejects
 * with ApiError (a 401 signs out as any request does).
 * @param {Blob} file
 * @param {{onProgress?: (f: number) => void, timeoutMs?: number}} [o]
 */
export function uploadMedia(file, { onProgress, timeoutMs = 120000 } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const sentToken = token;
    xhr.open('POST', '/media');
    xhr.timeout = timeoutMs;
    xhr.responseType = 'text';
    if (sentToken) xhr.setRequestHeader('Authorization', `Bearer ${sentToken}`);
    xhr.setRequestHeader('Accept', 'application/json');
    if (onProgress) {
      xhr.upload.addEventListener('progress', (e) => {
        if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
      });
    }
    xhr.addEventListener('load', () => {
      let json = null;
      try {
        json = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (json && json.status === true) {
        if (onProgress) onProgress(1);
        resolve(json.data);
        return;
      }
      const msg = (json && typeof json.msg === 'string' && json.msg) || t('err.http_status', { status: xhr.status });
      const err = new ApiError(msg, { status: xhr.status, code: (json && json.code) || '', network: xhr.status >= 502 && !json });
      if (xhr.status === 401 && sentToken && sentToken === token && unauthorizedHandler) unauthorizedHandler(err);
      reject(err);
    });
    const failed = (what) => () => reject(new ApiError(what, { network: true }));
    xhr.addEventListener('error', failed(t('err.network')));
    xhr.addEventListener('timeout', failed(t('err.no_answer')));
    xhr.addEventListener('abort', failed(t('err.upload_cancelled')));
    xhr.send(file);
  });
}
