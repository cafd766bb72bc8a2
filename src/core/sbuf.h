/* sbuf: an immutable, reference-counted byte buffer.
 *
 * The unit of "encode once, send many": a WebSocket frame for N recipients is
 * built once into one sbuf and each recipient's write queue takes a reference.
 * The event loop is single-threaded, so the count is a plain integer.
 *
 * Ownership: sbuf_new returns a buffer with one reference owned by the caller.
 * Every sbuf_ref must be matched by one sbuf_unref; the last unref frees the
 * buffer and the chain of alternates hanging off it (`alt`). */
#ifndef CHATD_SBUF_H
#define CHATD_SBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct sbuf {
    uint32_t refs;
    uint32_t len; /* bytes used in data */
    uint32_t cap; /* bytes allocated for data */
    uint32_t tag; /* free for the owner of the alternates; 0 from sbuf_new */
    /* Another encoding of the same content (a compressed WebSocket frame),
     * built lazily by whoever needs it and owned by this buffer: a chain,
     * freed with it. NULL from sbuf_new. */
    struct sbuf *alt;
    uint8_t data[];
} sbuf;

/* A buffer with room for cap bytes, len 0, one reference. NULL on OOM. */
sbuf *sbuf_new(size_t cap);
/* A buffer holding a copy of len bytes. NULL on OOM. */
sbuf *sbuf_from(const void *data, size_t len);

static inline sbuf *sbuf_ref(sbuf *b)
{
    b->refs++;
    return b;
}

void sbuf_unref(sbuf *b);

#endif
