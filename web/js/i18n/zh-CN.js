// i18n/zh-CN.js: the page's words in Simplified Chinese, worded as WeChat words them
// (发送, 撤回, 消息, 在线, 最后在线, 正在输入…, 群聊, 成员, 退出群聊, 解散群聊). Flat: key ->
// string, {name} placeholders. Same keys as en.js (a test checks); Chinese has no plural
// forms, so a key_one / key_other pair of en.js is one key_other here.
// Other branches add their strings at the end, in a section named after the branch.
export default {
  'app.name': 'chatd',

  // dates (i18n.js)
  'date.today': '今天',
  'date.yesterday': '昨天',
  'date.day_time': '{day} {time}',

  // errors: the server's codes (docs/API.md, docs/MEDIA.md)
  'err.generic': '出错了。',
  'err.unknown': '出错了（{code}）。',
};
