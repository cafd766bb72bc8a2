// chatd-client: a JavaScript SDK for chatd's chat service (docs/SDK.md).
// No dependencies and no build step: ES modules, JSDoc types. The platform
// (a browser, uni-app) plugs in through an adapter:
//
//   import { ChatClient } from '/sdk/index.js';
//   import { browserAdapter } from '/sdk/adapters/browser.js';
//   const client = new ChatClient({ adapter: browserAdapter() });
//   await client.login('alice', 'secret');
//   client.on('message', (m, key) => ...);
//   await client.connect();

export { ChatClient, conversationKey, groupKey, wsUrlOf } from './client.js';
export { ChatError, CLIENT_CODES } from './errors.js';
export { Api, convRef } from './http.js';
export { Connection, backoffDelay, DEFAULT_TIMING } from './connection.js';
export { ChatStore, DETAIL_CAP, memoryStorage, messageKey, peerOf, recallTarget, systemData } from './store.js';
export { defaultKeys } from './keys.js';
export { previewOf, PREVIEW_EN, PREVIEW_ZH } from './preview.js';
export { Emitter } from './emitter.js';
