// chat.js: the page's one ChatClient, from the SDK that chatd serves at /sdk/
// (clients/js/src, docs/SDK.md) with its browser adapter: WebSocket, fetch, an
// XMLHttpRequest upload with progress, localStorage with the seed's keys, and
// the page's visibility and online/offline events. app.js drives it; the views
// call the server through it (client.api for the plain endpoints).
import { ChatClient } from '/sdk/index.js';
import { browserAdapter } from '/sdk/adapters/browser.js';

export const client = new ChatClient({ adapter: browserAdapter() });
