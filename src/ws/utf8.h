/* utf8: an incremental, table-driven UTF-8 validator.
 *
 * Text messages must be valid UTF-8 (RFC 6455 8.1), checked as the bytes
 * arrive, across fragments, so an invalid message is refused (close 1007) at
 * the first bad byte rather than after it was buffered whole. The validator is
 * a DFA built from the Unicode well-formed byte sequence table (Unicode 15,
 * Table 3-7): it rejects overlong forms, surrogates (U+D800..U+DFFF) and code
 * points above U+10FFFF. */
#ifndef CHATD_UTF8_H
#define CHATD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_ACCEPT 0 /* at a character boundary: everything so far is valid */
#define UTF8_REJECT 1 /* invalid: stays rejected */

/* Feeds len bytes to the DFA, starting from *state (UTF8_ACCEPT for a new
 * message) and updating it. Returns the new state. A state other than ACCEPT
 * and REJECT means "inside a character": valid so far, but a message ending
 * there is truncated. Stops early once REJECT is reached. */
uint32_t utf8_feed(uint32_t state, const uint8_t *data, size_t len);

/* Whole-buffer check: true when data is complete, valid UTF-8. */
bool utf8_is_valid(const uint8_t *data, size_t len);

#endif
