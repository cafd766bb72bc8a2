// i18n.js: the page's words in Simplified Chinese and English. Every
// user-visible string goes through t(key, params) and comes from one table
// per language (i18n/zh-CN.js, i18n/en.js: flat objects key -> string with
// {name} placeholders). The language follows the browser (navigator.languages:
// the first zh* or en* entry), is remembered in localStorage once chosen in
// the "Me" tab, and can change at any time: onLangChange listeners re-render,
// and <html lang> follows. Server errors stay machine-readable codes: err(e)
// words them through the keys "err.<code>". Dates and times go through Intl
// in the current language (clock, listTime, dividerTime, dayName).
import en from './i18n/en.js';
import zhCN from './i18n/zh-CN.js';

export const LANGS = { 'zh-CN': zhCN, en };
const STORAGE_KEY = 'chatd_lang';
const listeners = new Set();

function stored() {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return v && Object.hasOwn(LANGS, v) ? v : '';
  } catch {
    return '';
  }
}

/** The browser's choice: the first of navigator.languages that is Chinese or English; English otherwise. */
export function browserLang(languages = (typeof navigator !== 'undefined' && (navigator.languages?.length ? navigator.languages : [navigator.language])) || []) {
  for (const l of languages) {
    const s = String(l || '').toLowerCase();
    if (s.startsWith('zh')) return 'zh-CN';
    if (s.startsWith('en')) return 'en';
  }
  return 'en';
}

let current = stored() || browserLang();
let table = LANGS[current];

/** The current language code: "zh-CN" or "en". */
export function lang() {
  return current;
}

/**
 * Switches the language (remembered on this device) and tells every listener.
 * Unknown codes are ignored. Returns the language now in use.
 */
export function setLang(code) {
  if (!Object.hasOwn(LANGS, code)) return current;
  try {
    localStorage.setItem(STORAGE_KEY, code);
  } catch {
    /* no storage: for this page only */
  }
  if (code === current) return current;
  current = code;
  table = LANGS[code];
  formats.clear();
  applyDocument();
  for (const fn of [...listeners]) {
    try {
      fn(code);
    } catch (e) {
      console.error(e); // one broken listener must not stop the others re-rendering
    }
  }
  return current;
}

/** fn(code) runs after every language change. Returns a function that stops it. */
export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

const plurals = new Map();
function pluralOf(n) {
  let p = plurals.get(current);
  if (!p) plurals.set(current, (p = new Intl.PluralRules(current)));
  return p.select(n);
}

/**
 * The words for key in the current language, {name} placeholders filled from params.
 * With a numeric params.count, a plural form "key_one" / "key_other" (Intl.PluralRules)
 * is taken when the table has one. A key missing from the table falls back to English,
 * then to the key itself (never an empty string).
 */
export function t(key, params) {
  let s;
  if (params && typeof params.count === 'number') {
    const k = `${key}_${pluralOf(params.count)}`;
    s = table[k] ?? table[`${key}_other`] ?? en[k] ?? en[`${key}_other`];
  }
  s ??= table[key] ?? en[key];
  if (s === undefined) return key;
  if (!params) return s;
  return s.replace(/\{(\w+)\}/g, (m, name) => (Object.hasOwn(params, name) ? String(params[name]) : m));
}

/** Whether the tables word this key (e.g. "err.bad_credentials"). */
export function has(key) {
  return Object.hasOwn(table, key) || Object.hasOwn(en, key);
}

/**
 * The words for a failed request or a refused socket message. e: the SDK's ChatError ({code,
 * message, status, network}) or an error frame ({code, msg}). The server's code words it through
 * "err.<code>" ({msg}: the server's own English reason, which en.js shows for the codes
 * whose reason names a field); an unknown code gets a generic line naming it; no code
 * (rare): the error's message.
 */
export function errText(e, fallbackKey = 'err.generic') {
  if (!e) return t(fallbackKey);
  const code = typeof e.code === 'string' ? e.code : '';
  // The SDK's own codes (docs/SDK.md, "Errors"): no answer in time (not the server's 408
  // "timeout", which comes with an answer), a cancelled upload, an answer not chatd's.
  if (code === 'timeout' && e.network) return t('err.no_answer');
  if (code === 'cancelled') return t('err.upload_cancelled');
  if (code === 'bad_response') return t('err.http_status', { status: e.status });
  const msg = (typeof e.msg === 'string' && e.msg) || (typeof e.message === 'string' && e.message) || code;
  if (code && has(`err.${code}`)) return t(`err.${code}`, { msg, code });
  if (code) return t('err.unknown', { code });
  return msg || t(fallbackKey);
}

// ---- the document --------------------------------------------------------------

/**
 * Words the static page: data-i18n (text), data-i18n-placeholder, data-i18n-title,
 * data-i18n-aria-label, data-i18n-alt; <html lang> and the default title.
 */
export function applyDocument(root = typeof document !== 'undefined' ? document : null) {
  if (!root) return;
  if (root.documentElement) root.documentElement.lang = current;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const [attr, data] of [
    ['placeholder', 'i18nPlaceholder'],
    ['title', 'i18nTitle'],
    ['aria-label', 'i18nAriaLabel'],
    ['alt', 'i18nAlt'],
  ]) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) el.setAttribute(attr, t(el.dataset[data]));
  }
}

// ---- dates and times -------------------------------------------------------------

const DAY = 86400000;
const formats = new Map();

/** The Intl locale for the current language: the browser's own English (en-GB: 14:05) when it has one. */
export function locale() {
  if (current === 'zh-CN') return 'zh-CN';
  const nav = (typeof navigator !== 'undefined' && navigator.languages) || [];
  return nav.find((l) => /^en(-|$)/i.test(l)) || 'en-US';
}

function fmt(name, options) {
  let f = formats.get(name);
  if (!f) formats.set(name, (f = new Intl.DateTimeFormat(locale(), options)));
  return f;
}

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** Clock time: "14:05" (zh-CN, en-GB), "02:05 PM" (en-US). */
export function clock(ms) {
  return Number.isFinite(ms) ? fmt('clock', { hour: '2-digit', minute: '2-digit' }).format(ms) : '';
}

/** "星期一" / "Monday". */
export function weekday(ms) {
  return fmt('weekday', { weekday: 'long' }).format(ms);
}

/** "2026年11月29日" / "Nov 29, 2026". */
export function fullDate(ms) {
  return fmt('date', { year: 'numeric', month: 'short', day: 'numeric' }).format(ms);
}

/**
 * How far back a day is: 'today', 'yesterday', 'week' (within the last 6 days) or 'older'.
 * Calendar days in the user's time zone, not 24-hour spans.
 */
export function dayKind(ms, now = Date.now()) {
  const today = startOfDay(now);
  if (ms >= today) return 'today';
  if (ms >= startOfDay(today - 1)) return 'yesterday';
  if (ms >= startOfDay(today - 6 * DAY + DAY / 2)) return 'week';
  return 'older';
}

/** A day: "今天"/"Today", "昨天"/"Yesterday", "星期一"/"Monday", "2026年11月29日"/"Nov 29, 2026". */
export function dayName(ms, now = Date.now()) {
  switch (dayKind(ms, now)) {
    case 'today':
      return t('date.today');
    case 'yesterday':
      return t('date.yesterday');
    case 'week':
      return weekday(ms);
    default:
      return fullDate(ms);
  }
}

/** The chat list's time: today the clock, else the day ("昨天", "星期一", "2026年11月29日"). */
export function listTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms) || ms <= 0) return '';
  return dayKind(ms, now) === 'today' ? clock(ms) : dayName(ms, now);
}

/** A divider between messages far apart: "昨天 09:12", "Yesterday 9:12 AM", "Monday 2:05 PM". */
export function dividerTime(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '';
  return t('date.day_time', { day: dayName(ms, now), time: clock(ms) });
}
