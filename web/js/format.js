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
