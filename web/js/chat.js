// chat.js: the page's one ChatClient, from the SDK that chatd serves at /sdk/
// (clients/js/src, docs/SDK.md) with its browser adapter: WebSocket, fetch, an
// XMLHttpRequest upload with progress, localStorage with the seed's keys, and
// the page's visibility and online/offline events. app.js drives it; the views
// call the server through it (client.api for the plain endpoints).
import { ChatClient } from '/sdk/index.js';
import { browserAdapter } from '/sdk/adapters/browser.js';
import { errText, t } from './i18n.js';

export const client = new ChatClient({
  adapter: browserAdapter(),
  // Names not known yet, and why a message failed, in the page's language.
  names: { user: (id) => t('user.fallback', { id }), group: (id) => t('group.fallback', { id }) },
  errorText: (e) => (e.code === 'timeout' ? t('conv.no_answer') : errText(e)),
});
