// i18n/en.js: the page's words in English. Flat: key -> string, {name} placeholders,
// plural forms as key_one / key_other (i18n.js t()). Same keys as zh-CN.js (a test checks).
// Other branches add their strings at the end, in a section named after the branch.
export default {
  'app.name': 'chatd',

  // dates (i18n.js)
  'date.today': 'Today',
  'date.yesterday': 'Yesterday',
  'date.day_time': '{day} {time}',

  // errors: the server's codes (docs/API.md, docs/MEDIA.md)
  'err.generic': 'Something went wrong.',
  'err.unknown': 'Something went wrong ({code}).',
};
