// format.js: times and previews as the chat list and conversation show them,
// in the current language (i18n.js: the words through t(), dates through Intl).
import { clock, dayKind, dividerTime, fullDate, listTime, t, weekday } from './i18n.js';

export { clock, dividerTime, listTime };

/** What the chat list shows of a message. */
export function preview(type, data) {
  if (type === 'image') return t('preview.image');
  if (typeof data !== 'string') return '';
  return data.replace(/\s+/g, ' ').trim().slice(0, 200);
}

export function badgeText(n) {
  return n > 99 ? '99+' : String(n);
}

/**
 * The text of a group's system message from its data ({event, actor, users, name, role, owner}).
 * actorName: the name of the user who caused it (the message's from_username); nameOf(id): a
 * user's name, for an id the data does not name.
 */
export function systemText(d, actorName, nameOf = (id) => t('user.fallback', { id })) {
  if (!d || typeof d !== 'object') return t('sys.changed');
  const users = Array.isArray(d.users) ? d.users : [];
  const names = users.map((u) => (u && typeof u.username === 'string' && u.username) || nameOf(Number(u && u.userid))).join(t('list.sep'));
  const actor = actorName || nameOf(Number(d.actor));
  switch (d.event) {
    case 'create':
      return t('sys.create', { actor });
    case 'add':
      return t('sys.add', { actor, names });
    case 'remove':
      return t('sys.remove', { actor, names });
    case 'leave': {
      const who = names || actor;
      const owner = Number(d.owner);
      return Number.isSafeInteger(owner) && owner > 0 ? t('sys.leave_owner', { who, owner: nameOf(owner) }) : t('sys.leave', { who });
    }
    case 'update':
      if (typeof d.name === 'string') return t('sys.rename', { actor, name: d.name });
      return t('sys.picture', { actor });
    case 'role':
      if (d.role === 'owner') return t('sys.owner', { actor, names });
      return t(d.role === 'admin' ? 'sys.admin' : 'sys.member', { actor, names });
    case 'dissolve':
      return t('sys.dissolve');
    default:
      return t('sys.changed');
  }
}

/** "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…". */
export function typingText(names) {
  if (!names.length) return '';
  const [a, b, c] = names;
  if (names.length === 1) return t('typing.one', { a });
  if (names.length === 2) return t('typing.two', { a, b });
  if (names.length === 3) return t('typing.three', { a, b, c });
  return t('typing.many', { a, b, n: names.length - 2 });
}

/**
 * "online", "last seen at 14:05", "last seen yesterday at 09:12", "last seen Monday at 14:05",
 * "last seen Nov 29, 2026" (older than a week), or ''.
 */
export function presenceText(p, now = Date.now()) {
  if (!p) return '';
  if (p.online) return t('presence.online');
  const ms = p.last_seen;
  if (!Number.isFinite(ms) || ms <= 0) return '';
  const time = clock(ms);
  switch (dayKind(ms, now)) {
    case 'today':
      return t('presence.seen_today', { time });
    case 'yesterday':
      return t('presence.seen_yesterday', { time });
    case 'week':
      return t('presence.seen_weekday', { day: weekday(ms), time });
    default:
      return t('presence.seen_date', { date: fullDate(ms) });
  }
}
