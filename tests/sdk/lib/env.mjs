// env.mjs: the two platforms the SDK tests run on, each giving "devices": a
// ChatClient adapter with its own storage, plus the handles a test needs to
// act on the platform (its network events, the badge it shows, a picture to
// upload) and to look under the adapter (the frames it delivers, the HTTP
// requests it makes).
//
// browser: the browser adapter with the npm ws package as the global
//   WebSocket (Node 20 has none), an in-memory localStorage per device, a
//   node:http XMLHttpRequest for uploads, an EventTarget as the window (its
//   online/offline events).
// uniapp: the uni-app adapter over a FakeUni per device (lib/fake-uni.mjs).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { browserAdapter } from '../../../clients/js/src/adapters/browser.js';
import { uniAdapter } from '../../../clients/js/src/adapters/uniapp.js';
import { FakeUni } from './fake-uni.mjs';
import { FakeXMLHttpRequest } from './fake-xhr.mjs';
import { MemoryStorage } from './memory-storage.mjs';

// The browser globals the adapter reads when not given them.
if (!globalThis.WebSocket) globalThis.WebSocket = WebSocket;
if (!globalThis.XMLHttpRequest) globalThis.XMLHttpRequest = FakeXMLHttpRequest;

/** Wraps an adapter so a test can drop frames and see the requests. */
function instrument(adapter) {
  const seen = { requests: [], frames: [], sockets: [] };
  const filters = [];
  const connect = adapter.connect.bind(adapter);
  adapter.connect = (url, h) => {
    const s = connect(url, {
      ...h,
      onMessage: (text) => {
        seen.frames.push(text);
        for (const f of filters) if (f(text)) return; // dropped: a lost push
        h.onMessage(text);
      },
    });
    seen.sockets.push(s);
    return s;
  };
  const request = adapter.request.bind(adapter);
  adapter.request = (r) => {
    seen.requests.push({ method: r.method, url: r.url, body: r.body, at: Date.now() });
    return request(r);
  };
  return { seen, dropFrames: (f) => filters.push(f) };
}

export function browserPlatform(srv) {
  return {
    name: 'browser',
    device() {
      const localStorage = new MemoryStorage();
      const win = new EventTarget();
      let badge = null;
      const adapter = browserAdapter({ baseUrl: srv.url, localStorage, window: win, document: null, badge: (n) => (badge = n) });
      const inst = instrument(adapter);
      return {
        adapter,
        ...inst,
        storageKeys: () => [...localStorage.map.keys()],
        storageGet: (k) => localStorage.getItem(k),
        /** The badge as a number (0: none). */
        badge: () => badge || 0,
        offline: () => win.dispatchEvent(new Event('offline')),
        online: () => win.dispatchEvent(new Event('online')),
        file: (bytes) => new Blob([bytes]),
      };
    },
  };
}

export function uniPlatform(srv) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chatd-sdk-uni-'));
  let n = 0;
  return {
    name: 'uniapp',
    dir,
    device() {
      const uni = new FakeUni();
      const adapter = uniAdapter({ uni, baseUrl: srv.url, tabBarIndex: 1 });
      const inst = instrument(adapter);
      return {
        uni,
        adapter,
        ...inst,
        storageKeys: () => uni.getStorageInfoSync().keys,
        storageGet: (k) => {
          const v = uni.getStorageSync(k);
          return v === '' ? null : v;
        },
        badge: () => {
          const t = uni.tabBar[1].badge;
          return t === null ? 0 : t === '99+' ? 100 : Number(t);
        },
        offline: () => uni.setNetwork(false),
        online: () => uni.setNetwork(true),
        file: (bytes) => {
          const p = path.join(dir, `pick-${n++}.png`);
          fs.writeFileSync(p, bytes);
          return p;
        },
      };
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
