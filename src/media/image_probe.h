/* image_probe: what kind of picture a buffer holds, and its size, from the
 * bytes alone.
 *
 * The type is decided only by the magic bytes (JPEG, PNG, GIF, WebP), never
 * by a file name or a client's Content-Type. The structure is then walked far
 * enough to refuse a truncated or mangled file and to read the width and
 * height from the headers:
 *   PNG   IHDR first (13 bytes), every chunk inside the buffer, IEND last and
 *         nothing after it;
 *   JPEG  SOI, segments up to the first SOS inside the buffer, an SOF with
 *         the dimensions before it, FF D9 (EOI) as the last two bytes;
 *   GIF   header, logical screen, colour tables, every block and sub-block
 *         inside the buffer, at least one image, the trailer 0x3B last;
 *   WebP  RIFF size = the buffer's length - 8, every chunk inside it, the
 *         first chunk VP8, VP8L or VP8X giving the canvas size.
 * We identify, we never decode pixels: a file that passes may still hold
 * broken compressed data, which is the viewer's business (browsers decode in
 * a sandbox); what we guarantee is the type the file is served as.
 *
 * Pure code: no allocation, no I/O, reads only inside [data, data + len).
 * Unit-tested (tests/unit/test_image_probe.c) and fuzzed
 * (tests/fuzz/fuzz_image_probe.c). */
#ifndef CHATD_IMAGE_PROBE_H
#define CHATD_IMAGE_PROBE_H

#include <stddef.h>
#include <stdint.h>

/* The largest width or height accepted, in pixels. */
#define IMAGE_MAX_SIDE 20000

typedef enum image_type {
    IMAGE_NONE = 0,
    IMAGE_JPEG,
    IMAGE_PNG,
    IMAGE_GIF,
    IMAGE_WEBP,
} image_type;

enum image_probe_status {
    IMAGE_PROBE_OK = 0,
    IMAGE_PROBE_UNSUPPORTED = -1, /* not one of the four magics */
    IMAGE_PROBE_TRUNCATED = -2,   /* the structure ends before the file's end marker */
    IMAGE_PROBE_BAD = -3,         /* malformed headers, trailing bytes, or a side 0 or too large */
};

typedef struct image_info {
    image_type type;
    uint32_t width, height;
} image_info;

/* Identifies data[0..len): fills out (type set as soon as the magic matched,
 * width and height on IMAGE_PROBE_OK) and returns an image_probe_status. */
int image_probe(const uint8_t *data, size_t len, image_info *out);

/* "image/png", ...; NULL for IMAGE_NONE. */
const char *image_type_mime(image_type t);
/* "png", "jpg", "gif", "webp" (without the dot); NULL for IMAGE_NONE. */
const char *image_type_ext(image_type t);
/* The type whose image_type_ext is ext exactly (lower case); IMAGE_NONE. */
image_type image_type_from_ext(const char *ext);

#endif
