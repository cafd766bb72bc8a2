// format.js: times and previews as the chat list and conversation show them.

const DAY = 86400000;

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

const hm = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const weekday = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
const monthDay = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullDate = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });

/** Clock time, "14:05". */
export function clock(ms) {
  return Number.isFinite(ms) ? hm.format(ms) : '';
}

/** The chat list's time: today "14:05", "Yesterday", "Mon", "Mar 5", "Mar 5, 2023". */
export function listTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms) || ms <= 0) return '';
  const today = startOfDay(now);
  if (ms >= today) return hm.format(ms);
  if (ms >= today - DAY) return 'Yesterday';
  if (ms >= today - 6 * DAY) return weekday.format(ms);
  if (new Date(ms).getFullYear() === new Date(now).getFullYear()) return monthDay.format(ms);
  return fullDate.format(ms);
}

/** A divider between messages far apart: "Today 14:05", "Yesterday 09:12", "Mon 14:05", "Mar 5 14:05". */
export function dividerTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '';
  const today = startOfDay(now);
  let day;
  if (ms >= today) day = 'Today';
  else if (ms >= today - DAY) day = 'Yesterday';
  else if (ms >= today - 6 * DAY) day = weekday.format(ms);
  else if (new Date(ms).getFullYear() === new Date(now).getFullYear()) day = monthDay.format(ms);
  else day = fullDate.format(ms);
  return `${day} ${hm.format(ms)}`;
}

/** What the chat list shows of a message. */
export function preview(type, data) {
  if (type === 'image') return '[Image]';
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
export function systemText(d, actorName, nameOf = (id) => `User ${id}`) {
  if (!d || typeof d !== 'object') return 'The group changed';
  const users = Array.isArray(d.users) ? d.users : [];
  const names = users.map((u) => (u && typeof u.username === 'string' && u.username) || nameOf(Number(u && u.userid))).join(', ');
  const actor = actorName || nameOf(Number(d.actor));
  switch (d.event) {
    case 'create':
      return `${actor} created the group`;
    case 'add':
      return `${actor} added ${names}`;
    case 'remove':
      return `${actor} removed ${names}`;
    case 'leave': {
      const who = names || actor;
      const owner = Number(d.owner);
      return Number.isSafeInteger(owner) && owner > 0 ? `${who} left; ${nameOf(owner)} is now the owner` : `${who} left`;
    }
    case 'update':
      if (typeof d.name === 'string') return `${actor} renamed the group to “${d.name}”`;
      return `${actor} changed the group picture`;
    case 'role':
      if (d.role === 'owner') return `${actor} made ${names} the owner`;
      return `${actor} made ${names} ${d.role === 'admin' ? 'an admin' : 'a member'}`;
    case 'dissolve':
      return 'the group was dissolved';
    default:
      return 'The group changed';
  }
}

/** "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…". */
export function typingText(names) {
  if (!names.length) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  if (names.length === 3) return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}

/** "online", "last seen at 14:05", "last seen yesterday at 09:12", "last seen Mar 5 at 14:05", or ''. */
export function presenceText(p, now = Date.now()) {
  if (!p) return '';
  if (p.online) return 'online';
  const ms = p.last_seen;
  if (!Number.isFinite(ms) || ms <= 0) return '';
  const today = startOfDay(now);
  if (ms >= today) return `last seen at ${hm.format(ms)}`;
  if (ms >= today - DAY) return `last seen yesterday at ${hm.format(ms)}`;
  if (new Date(ms).getFullYear() === new Date(now).getFullYear()) return `last seen ${monthDay.format(ms)} at ${hm.format(ms)}`;
  return `last seen ${fullDate.format(ms)}`;
}
