/* utf8: incremental UTF-8 validation as a byte-class DFA (see utf8.h).
 *
 * Derived from Unicode Table 3-7 (Well-Formed UTF-8 Byte Sequences). The rows
 * of that table differ only in which range the *second* byte may take after a
 * given lead byte, so the bytes fall into 12 classes and the validator needs
 * 9 states: ACCEPT, REJECT, "n plain continuations left" (n = 1, 2, 3) and one
 * state per lead byte whose second byte is restricted (E0, ED, F0, F4). Two
 * small tables replace all the range checks, and a state is a small integer
 * that survives across fragments. */
#include "ws/utf8.h"

#include <string.h>

/* Byte classes. Continuation bytes are split at 0x90 and 0xA0 because those
 * are the cut points of the restricted second-byte ranges in Table 3-7. */
enum {
    UTF8_C_ASCII,   /* 00..7F */
    UTF8_C_CONT_8,  /* 80..8F */
    UTF8_C_CONT_9,  /* 90..9F */
    UTF8_C_CONT_AB, /* A0..BF */
    UTF8_C_BAD,     /* C0..C1 (only overlong 2-byte forms), F5..FF (above U+10FFFF) */
    UTF8_C_L2,      /* C2..DF: 2-byte lead */
    UTF8_C_E0,      /* E0: second byte A0..BF, lower would be overlong */
    UTF8_C_L3,      /* E1..EC, EE..EF: 3-byte lead, any continuation */
    UTF8_C_ED,      /* ED: second byte 80..9F, higher would be a surrogate */
    UTF8_C_F0,      /* F0: second byte 90..BF, lower would be overlong */
    UTF8_C_L4,      /* F1..F3: 4-byte lead, any continuation */
    UTF8_C_F4,      /* F4: second byte 80..8F, higher is above U+10FFFF */
    UTF8_NCLASSES
};
_Static_assert(UTF8_C_F4 == 11, "utf8_class below spells the classes as numbers");

/* States. ACCEPT and REJECT keep the values utf8.h publishes. */
enum {
    UTF8_S_ACCEPT = UTF8_ACCEPT,
    UTF8_S_REJECT = UTF8_REJECT,
    UTF8_S_NEED1, /* one continuation 80..BF left */
    UTF8_S_NEED2, /* two continuations left */
    UTF8_S_NEED3, /* three continuations left */
    UTF8_S_AFTER_E0,
    UTF8_S_AFTER_ED,
    UTF8_S_AFTER_F0,
    UTF8_S_AFTER_F4,
    UTF8_NSTATES
};

/* Byte -> class; the numbers are the UTF8_C_* values above. */
// clang-format off
static const uint8_t utf8_class[256] = {
    /* 00..7F */
    0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,  0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,  0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,  0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,  0,0,0,0,0,0,0,0, 0,0,0,0,0,0,0,0,
    /* 80..8F, 90..9F */
    1,1,1,1,1,1,1,1, 1,1,1,1,1,1,1,1,  2,2,2,2,2,2,2,2, 2,2,2,2,2,2,2,2,
    /* A0..BF */
    3,3,3,3,3,3,3,3, 3,3,3,3,3,3,3,3,  3,3,3,3,3,3,3,3, 3,3,3,3,3,3,3,3,
    /* C0..C1 bad, C2..DF */
    4,4,5,5,5,5,5,5, 5,5,5,5,5,5,5,5,  5,5,5,5,5,5,5,5, 5,5,5,5,5,5,5,5,
    /* E0, E1..EC, ED, EE..EF */
    6,7,7,7,7,7,7,7, 7,7,7,7,7,8,7,7,
    /* F0, F1..F3, F4, F5..FF bad */
    9,10,10,10,11,4,4,4, 4,4,4,4,4,4,4,4,
};

/* utf8_next[state][class], with short names so each row reads as one line of
 * Table 3-7: the lead byte picks the state, the state admits its range. */
#define A UTF8_S_ACCEPT
#define R UTF8_S_REJECT
#define N1 UTF8_S_NEED1
#define N2 UTF8_S_NEED2
#define N3 UTF8_S_NEED3
#define XE0 UTF8_S_AFTER_E0
#define XED UTF8_S_AFTER_ED
#define XF0 UTF8_S_AFTER_F0
#define XF4 UTF8_S_AFTER_F4
static const uint8_t utf8_next[UTF8_NSTATES][UTF8_NCLASSES] = {
    /*     ASCII 80-8F 90-9F A0-BF bad C2-DF E0   E1-EF ED   F0   F1-F3 F4 */
    [A]   = {A,  R,    R,    R,    R,  N1,   XE0, N2,   XED, XF0, N3,   XF4},
    [R]   = {R,  R,    R,    R,    R,  R,    R,   R,    R,   R,   R,    R},
    [N1]  = {R,  A,    A,    A,    R,  R,    R,   R,    R,   R,   R,    R},
    [N2]  = {R,  N1,   N1,   N1,   R,  R,    R,   R,    R,   R,   R,    R},
    [N3]  = {R,  N2,   N2,   N2,   R,  R,    R,   R,    R,   R,   R,    R},
    [XE0] = {R,  R,    R,    N1,   R,  R,    R,   R,    R,   R,   R,    R},
    [XED] = {R,  N1,   N1,   R,    R,  R,    R,   R,    R,   R,   R,    R},
    [XF0] = {R,  R,    N2,   N2,   R,  R,    R,   R,    R,   R,   R,    R},
    [XF4] = {R,  N2,   R,    R,    R,  R,    R,   R,    R,   R,   R,    R},
};
#undef A
#undef R
#undef N1
#undef N2
#undef N3
#undef XE0
#undef XED
#undef XF0
#undef XF4
// clang-format on

uint32_t utf8_feed(uint32_t state, const uint8_t *data, size_t len)
{
    /* A state the DFA never produces would index past the table: treat it as
     * corrupt rather than trust it. */
    if (state >= UTF8_NSTATES)
        return UTF8_REJECT;

    size_t i = 0;
    while (i < len) {
        /* Chat traffic is mostly ASCII: at a character boundary, skip 8 bytes
         * at once while none has its top bit set. */
        if (state == UTF8_S_ACCEPT) {
            while (len - i >= 8) {
                uint64_t w;
                memcpy(&w, data + i, sizeof(w));
                if (w & UINT64_C(0x8080808080808080))
                    break;
                i += 8;
            }
            if (i == len)
                break;
        }
        state = utf8_next[state][utf8_class[data[i]]];
        i++;
        if (state == UTF8_S_REJECT)
            break;
    }
    return state;
}

bool utf8_is_valid(const uint8_t *data, size_t len)
{
    return utf8_feed(UTF8_ACCEPT, data, len) == UTF8_ACCEPT;
}
