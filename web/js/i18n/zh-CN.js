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

  // p15-webmedia: pictures (views/media.js), the message menu, recall and delete for me (views/menu.js)
  'media.pick': '发送图片',
  'media.image_alt': '图片',
  'media.waiting': '等待上传…',
  'media.uploading': '上传中…',
  'media.progress': '上传进度',
  'media.cancel': '取消',
  'media.dismiss': '关闭',
  'media.failed': '未发送：{reason}',
  'media.close': '关闭',
  'media.broken': '图片无法显示',
  'media.drop': '松开即可发送图片',
  'media.err.network': '上传失败：无法连接服务器。',
  'media.err.too_large': '文件太大，最大 {max}。',
  'media.err.too_large_server': '文件超过了服务器允许的大小。',
  'media.err.unsupported_media_type': '这个文件不是图片。请发送 JPEG、PNG、GIF 或 WebP 图片。',
  'media.err.truncated_image': '图片不完整（被截断），无法发送。',
  'media.err.bad_image': '图片已损坏，无法发送。',
  'media.err.empty_file': '文件是空的。',
  'media.err.bad_multipart': '上传的数据有误，请重试。',
  'media.err.rate_limited': '同时上传的文件太多，请稍后再试。',
  'media.err.busy': '服务器繁忙，请稍后再试。',
  'media.err.timeout': '上传中断，请重试。',
  'msg.menu': '消息操作',
  'msg.copy': '复制',
  'msg.copied': '已复制',
  'msg.copy_failed': '复制失败。',
  'msg.recall': '撤回',
  'msg.delete': '删除',
  'msg.delete_confirm': '删除这条消息？将从你的所有设备上删除，聊天中的其他人仍能看到。',
  'msg.delete_ok': '删除',
  'msg.cancel': '取消',
  'msg.recalled_you': '你撤回了一条消息',
  'msg.recalled_other': '“{name}”撤回了一条消息',
  'msg.err.recall_window_passed': '已超过可撤回的时间。',
  'msg.err.recall_disabled': '此服务器未开启撤回功能。',
  'msg.err.forbidden': '这条消息不能撤回。',
  'msg.err.group_dissolved': '该群聊已解散，消息无法撤回。',
  'msg.err.not_member': '你已不是该群成员。',
  'msg.err.not_found': '这条消息已不存在。',
};
