/* names: the rules for usernames, one place for sign-up, JWT claims, login
 * and the storage's uniqueness key.
 *
 * Unicode makes many spellings of one name: "Jürgen" and "JÜRGEN", an
 * accent precomposed (NFC) or as a combining mark (NFD), fullwidth
 * "ＡＢＣ", Cyrillic "а" for Latin "a", zero-width and bidi-control
 * characters that show nothing or reorder what is shown. So a name is
 * handled in two forms:
 *
 * - the display name, kept as the user typed it after NFC (names_clean),
 *   which refuses what would be invisible or misleading on screen;
 * - the key (names_key): the UTS #39 confusable skeleton of the name's
 *   NFKC_Casefold form. Two names with one key look alike, so the store
 *   lets only one account hold a key, and login looks an account up by
 *   it (any equivalent spelling finds it; the password is still required).
 *
 * The Unicode data comes from ICU (Debian's libicu, ICU 72 on Debian 12):
 * unorm2 for NFC and NFKC_Casefold, uspoof for the skeleton and the script
 * restriction level. No tables of our own.
 *
 * Pure functions, safe from any thread (the ICU objects are created once,
 * then only read). Strings are UTF-8, NUL-terminated. */
#ifndef CHATD_NAMES_H
#define CHATD_NAMES_H

#include <stddef.h>

/* Bounds of a display name in UTF-8 bytes, after NFC. */
#define NAMES_MIN_BYTES 2
#define NAMES_MAX_BYTES 32

/* Checks a username against the rules and writes its display form (NFC)
 * into out (cap >= NAMES_MAX_BYTES + 1 suffices). Returns 0, or -1 with
 * *why set to a static English sentence for the client.
 *
 * The rules: valid UTF-8; NAMES_MIN_BYTES..NAMES_MAX_BYTES bytes after NFC;
 * no control, format (zero-width, bidi controls such as U+202E and
 * U+2066..U+2069, U+FEFF), default-ignorable, private-use, unassigned or
 * surrogate code points, no line or paragraph separators; the only space
 * is U+0020, not first, not last and never two in a row; no '#' (kept for
 * the store's suffix on a JWT name that is taken); and scripts mixed no
 * more than UTS #39 "highly restrictive" allows (one script, or Latin with
 * Han and Japanese kana, Han with Hangul, or Han with Bopomofo), with
 * digits of one numbering system. */
int names_clean(const char *in, char *out, size_t cap, const char **why);

/* The uniqueness key of a name: skeleton(NFKC_Casefold(name)), UTF-8,
 * malloc'd (the caller frees it). Works on any valid UTF-8, also names the
 * rules above would refuse (a search query, an old row). NULL on invalid
 * UTF-8 or out of memory. */
char *names_key(const char *name);

/* The length of the longest prefix of the UTF-8 string s that has at most
 * max bytes and ends on a code point boundary. */
size_t names_cut(const char *s, size_t max);

#endif
