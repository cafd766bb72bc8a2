/* image_probe: picture type and size from the bytes (see image_probe.h).
 *
 * Every read goes through a bounds check written as "n > len - pos" with
 * pos <= len holding on entry, so no sum can overflow whatever the lengths a
 * file claims. */
#include "media/image_probe.h"

#include <string.h>

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le16(const uint8_t *p)
{
    return (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le24(const uint8_t *p)
{
    return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---- PNG: 8-byte signature, then chunks of length, type, data, CRC ------ */

static int probe_png(const uint8_t *d, size_t len, image_info *out)
{
    size_t pos = 8;
    if (len - pos < 8 + 13 + 4)
        return IMAGE_PROBE_TRUNCATED;
    if (be32(d + pos) != 13 || memcmp(d + pos + 4, "IHDR", 4) != 0)
        return IMAGE_PROBE_BAD; /* IHDR must come first */
    out->width = be32(d + pos + 8);
    out->height = be32(d + pos + 12);
    int idat = 0;
    while (len - pos >= 12) {
        uint32_t clen = be32(d + pos);
        if (clen > 0x7fffffffu)
            return IMAGE_PROBE_BAD; /* the spec's bound on a chunk length */
        if (clen > len - pos - 12)
            return IMAGE_PROBE_TRUNCATED;
        const uint8_t *type = d + pos + 4;
        pos += 12 + (size_t)clen;
        if (memcmp(type, "IDAT", 4) == 0)
            idat = 1;
        if (memcmp(type, "IEND", 4) == 0) {
            if (clen != 0 || !idat)
                return IMAGE_PROBE_BAD;
            return pos == len ? IMAGE_PROBE_OK : IMAGE_PROBE_BAD; /* bytes after IEND */
        }
    }
    return IMAGE_PROBE_TRUNCATED; /* no IEND */
}

/* ---- JPEG: SOI, marker segments up to SOS, entropy-coded data, EOI ------- */

static int is_sof(uint8_t m)
{
    /* SOF0-SOF15 but DHT (C4), JPG (C8) and DAC (CC) */
    return m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc;
}

static int probe_jpeg(const uint8_t *d, size_t len, image_info *out)
{
    size_t pos = 2;
    int have_sof = 0;
    for (;;) {
        if (pos >= len)
            return IMAGE_PROBE_TRUNCATED;
        if (d[pos] != 0xff)
            return IMAGE_PROBE_BAD;
        while (pos < len && d[pos] == 0xff) /* fill bytes */
            pos++;
        if (pos >= len)
            return IMAGE_PROBE_TRUNCATED;
        uint8_t m = d[pos++];
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            continue; /* TEM, RSTn: no length */
        if (m == 0x00 || m == 0xd8 || m == 0xd9)
            return IMAGE_PROBE_BAD; /* a stuffed zero, a second SOI, EOI before any scan */
        if (len - pos < 2)
            return IMAGE_PROBE_TRUNCATED;
        uint32_t seglen = be16(d + pos);
        if (seglen < 2)
            return IMAGE_PROBE_BAD;
        if (seglen > len - pos)
            return IMAGE_PROBE_TRUNCATED;
        if (is_sof(m)) {
            if (seglen < 8)
                return IMAGE_PROBE_BAD;
            out->height = be16(d + pos + 3);
            out->width = be16(d + pos + 5);
            have_sof = 1;
        }
        pos += seglen;
        if (m == 0xda) { /* SOS: the compressed data follows, up to EOI */
            if (!have_sof)
                return IMAGE_PROBE_BAD;
            if (len - pos < 2 || d[len - 2] != 0xff || d[len - 1] != 0xd9)
                return IMAGE_PROBE_TRUNCATED;
            return IMAGE_PROBE_OK;
        }
    }
}

/* ---- GIF: header, logical screen, blocks, trailer ----------------------- */

/* Skips a chain of data sub-blocks ending with a zero-length one. */
static int gif_skip_sub_blocks(const uint8_t *d, size_t len, size_t *pos)
{
    for (;;) {
        if (*pos >= len)
            return IMAGE_PROBE_TRUNCATED;
        size_t n = d[(*pos)++];
        if (n == 0)
            return IMAGE_PROBE_OK;
        if (n > len - *pos)
            return IMAGE_PROBE_TRUNCATED;
        *pos += n;
    }
}

static int probe_gif(const uint8_t *d, size_t len, image_info *out)
{
    if (len < 13)
        return IMAGE_PROBE_TRUNCATED;
    out->width = le16(d + 6);
    out->height = le16(d + 8);
    size_t pos = 13;
    if (d[10] & 0x80) { /* global colour table */
        size_t table = (size_t)3 << ((d[10] & 7) + 1);
        if (table > len - pos)
            return IMAGE_PROBE_TRUNCATED;
        pos += table;
    }
    int images = 0;
    for (;;) {
        if (pos >= len)
            return IMAGE_PROBE_TRUNCATED;
        uint8_t block = d[pos++];
        int r;
        if (block == 0x3b) { /* trailer */
            if (!images)
                return IMAGE_PROBE_BAD;
            return pos == len ? IMAGE_PROBE_OK : IMAGE_PROBE_BAD;
        } else if (block == 0x21) { /* extension: label, sub-blocks */
            if (pos >= len)
                return IMAGE_PROBE_TRUNCATED;
            pos++;
            r = gif_skip_sub_blocks(d, len, &pos);
        } else if (block == 0x2c) { /* image: descriptor, colour table, LZW size, data */
            if (len - pos < 9)
                return IMAGE_PROBE_TRUNCATED;
            uint8_t packed = d[pos + 8];
            pos += 9;
            if (packed & 0x80) {
                size_t table = (size_t)3 << ((packed & 7) + 1);
                if (table > len - pos)
                    return IMAGE_PROBE_TRUNCATED;
                pos += table;
            }
            if (pos >= len)
                return IMAGE_PROBE_TRUNCATED;
            pos++; /* LZW minimum code size */
            r = gif_skip_sub_blocks(d, len, &pos);
            images++;
        } else {
            return IMAGE_PROBE_BAD;
        }
        if (r != IMAGE_PROBE_OK)
            return r;
    }
}

/* ---- WebP: RIFF container of chunks, the first one sized ---------------- */

static int webp_first_chunk(const uint8_t *fourcc, const uint8_t *p, uint32_t size, image_info *out)
{
    if (memcmp(fourcc, "VP8 ", 4) == 0) { /* lossy: frame tag, start code, sizes */
        if (size < 10 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a)
            return IMAGE_PROBE_BAD;
        out->width = le16(p + 6) & 0x3fff;
        out->height = le16(p + 8) & 0x3fff;
        return IMAGE_PROBE_OK;
    }
    if (memcmp(fourcc, "VP8L", 4) == 0) { /* lossless: signature, 14-bit sizes - 1 */
        if (size < 5 || p[0] != 0x2f)
            return IMAGE_PROBE_BAD;
        uint32_t bits = le32(p + 1);
        out->width = (bits & 0x3fff) + 1;
        out->height = ((bits >> 14) & 0x3fff) + 1;
        return IMAGE_PROBE_OK;
    }
    if (memcmp(fourcc, "VP8X", 4) == 0) { /* extended: flags, 24-bit canvas sizes - 1 */
        if (size < 10)
            return IMAGE_PROBE_BAD;
        out->width = le24(p + 4) + 1;
        out->height = le24(p + 7) + 1;
        return IMAGE_PROBE_OK;
    }
    return IMAGE_PROBE_BAD;
}

static int probe_webp(const uint8_t *d, size_t len, image_info *out)
{
    uint32_t riff = le32(d + 4);
    if (riff < 4)
        return IMAGE_PROBE_BAD;
    if (riff > len - 8)
        return IMAGE_PROBE_TRUNCATED;
    if (riff < len - 8)
        return IMAGE_PROBE_BAD; /* bytes after the RIFF */
    size_t pos = 12;
    if (pos == len)
        return IMAGE_PROBE_TRUNCATED;
    int first = 1;
    while (pos < len) {
        if (len - pos < 8)
            return IMAGE_PROBE_TRUNCATED;
        uint32_t size = le32(d + pos + 4);
        size_t padded = (size_t)size + (size & 1);
        if (padded > len - pos - 8)
            return IMAGE_PROBE_TRUNCATED;
        if (first) {
            int r = webp_first_chunk(d + pos, d + pos + 8, size, out);
            if (r != IMAGE_PROBE_OK)
                return r;
            first = 0;
        }
        pos += 8 + padded;
    }
    return IMAGE_PROBE_OK;
}

/* ---- the entry point ------------------------------------------------------ */

int image_probe(const uint8_t *data, size_t len, image_info *out)
{
    memset(out, 0, sizeof(*out));
    int r;
    if (len >= 8 && memcmp(data, "\x89PNG\r\n\x1a\n", 8) == 0) {
        out->type = IMAGE_PNG;
        r = probe_png(data, len, out);
    } else if (len >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
        out->type = IMAGE_JPEG;
        r = probe_jpeg(data, len, out);
    } else if (len >= 6 && (memcmp(data, "GIF87a", 6) == 0 || memcmp(data, "GIF89a", 6) == 0)) {
        out->type = IMAGE_GIF;
        r = probe_gif(data, len, out);
    } else if (len >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0) {
        out->type = IMAGE_WEBP;
        r = probe_webp(data, len, out);
    } else {
        return IMAGE_PROBE_UNSUPPORTED;
    }
    if (r != IMAGE_PROBE_OK)
        return r;
    if (out->width == 0 || out->height == 0 || out->width > IMAGE_MAX_SIDE ||
        out->height > IMAGE_MAX_SIDE)
        return IMAGE_PROBE_BAD;
    return IMAGE_PROBE_OK;
}

static const struct {
    image_type type;
    const char *mime, *ext;
} types[] = {
    {IMAGE_JPEG, "image/jpeg", "jpg"},
    {IMAGE_PNG, "image/png", "png"},
    {IMAGE_GIF, "image/gif", "gif"},
    {IMAGE_WEBP, "image/webp", "webp"},
};

const char *image_type_mime(image_type t)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (types[i].type == t)
            return types[i].mime;
    return NULL;
}

const char *image_type_ext(image_type t)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (types[i].type == t)
            return types[i].ext;
    return NULL;
}

image_type image_type_from_ext(const char *ext)
{
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].ext, ext) == 0)
            return types[i].type;
    return IMAGE_NONE;
}
