/* sbuf: reference-counted immutable buffers (see sbuf.h). */
#include "core/sbuf.h"

#include <stdlib.h>
#include <string.h>

sbuf *sbuf_new(size_t cap)
{
    if (cap > UINT32_MAX)
        return NULL;
    sbuf *b = malloc(sizeof(*b) + cap);
    if (!b)
        return NULL;
    b->refs = 1;
    b->len = 0;
    b->cap = (uint32_t)cap;
    b->tag = 0;
    b->alt = NULL;
    return b;
}

sbuf *sbuf_from(const void *data, size_t len)
{
    sbuf *b = sbuf_new(len);
    if (!b)
        return NULL;
    if (len)
        memcpy(b->data, data, len);
    b->len = (uint32_t)len;
    return b;
}

void sbuf_unref(sbuf *b)
{
    while (b && --b->refs == 0) {
        sbuf *alt = b->alt; /* each alternate holds one reference, its owner's */
        free(b);
        b = alt;
    }
}
