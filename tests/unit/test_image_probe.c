/* Unit tests for image_probe (type, size, truncation), the multipart file
 * finder and the stored-name check of the media module. Every picture is
 * built here byte by byte, so a test names the exact structure it checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "media/image_probe.h"
#include "media/media.h"
#include "media/multipart.h"

typedef struct buf {
    uint8_t d[4096];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof(b->d));
    memcpy(b->d + b->n, p, n);
    b->n += n;
}

static void put8(buf *b, uint32_t v)
{
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}

static void be16(buf *b, uint32_t v)
{
    put8(b, v >> 8);
    put8(b, v);
}

static void be32(buf *b, uint32_t v)
{
    be16(b, v >> 16);
    be16(b, v);
}

static void le16(buf *b, uint32_t v)
{
    put8(b, v);
    put8(b, v >> 8);
}

static void le32(buf *b, uint32_t v)
{
    le16(b, v);
    le16(b, v >> 16);
}

/* ---- builders ------------------------------------------------------------ */

static void png_chunk(buf *b, const char *type, const void *data, uint32_t len)
{
    be32(b, len);
    put(b, type, 4);
    put(b, data, len);
    be32(b, 0); /* CRC: not checked (identify, never decode) */
}

static buf make_png(uint32_t w, uint32_t h)
{
    buf b = {.n = 0};
    put(&b, "\x89PNG\r\n\x1a\n", 8);
    buf ihdr = {.n = 0};
    be32(&ihdr, w);
    be32(&ihdr, h);
    put(&ihdr, "\x08\x02\x00\x00\x00", 5);
    png_chunk(&b, "IHDR", ihdr.d, 13);
    png_chunk(&b, "IDAT", "\x78\x9c\x63\x00\x00\x00\x01\x00\x01", 9);
    png_chunk(&b, "IEND", "", 0);
    return b;
}

static buf make_jpeg(uint32_t w, uint32_t h)
{
    buf b = {.n = 0};
    put(&b, "\xff\xd8", 2);
    put(&b, "\xff\xe0\x00\x10JFIF\0\x01\x01\x00\x00\x01\x00\x01\x00\x00", 18); /* APP0 */
    put(&b, "\xff\xc0", 2);                                                    /* SOF0 */
    be16(&b, 17);
    put8(&b, 8);
    be16(&b, h);
    be16(&b, w);
    put(&b, "\x03\x01\x11\x00\x02\x11\x01\x03\x11\x01", 10);
    put(&b, "\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00", 14); /* SOS */
    put(&b, "\x12\x34\xff\x00\x56", 5); /* entropy-coded data with a stuffed FF */
    put(&b, "\xff\xd9", 2);
    return b;
}

static buf make_gif(uint32_t w, uint32_t h)
{
    buf b = {.n = 0};
    put(&b, "GIF89a", 6);
    le16(&b, w);
    le16(&b, h);
    put(&b, "\x80\x00\x00", 3);                     /* global table of 2 colours */
    put(&b, "\x00\x00\x00\xff\xff\xff", 6);         /* the table */
    put(&b, "\x21\xf9\x04\x00\x00\x00\x00\x00", 8); /* graphic control extension */
    put(&b, "\x2c\x00\x00\x00\x00", 5);             /* image descriptor */
    le16(&b, w);
    le16(&b, h);
    put8(&b, 0);
    put(&b, "\x02\x02\x44\x01\x00", 5); /* LZW size 2, one sub-block, terminator */
    put8(&b, 0x3b);
    return b;
}

/* kind: 'L' (VP8L), 'X' (VP8X then VP8L), ' ' (VP8) */
static buf make_webp(char kind, uint32_t w, uint32_t h)
{
    buf b = {.n = 0};
    put(&b, "RIFF\0\0\0\0WEBP", 12);
    if (kind == 'X') {
        put(&b, "VP8X", 4);
        le32(&b, 10);
        put(&b, "\x10\0\0\0", 4);
        put8(&b, (w - 1));
        put8(&b, (w - 1) >> 8);
        put8(&b, (w - 1) >> 16);
        put8(&b, (h - 1));
        put8(&b, (h - 1) >> 8);
        put8(&b, (h - 1) >> 16);
    }
    if (kind == ' ') {
        put(&b, "VP8 ", 4);
        le32(&b, 12);
        put(&b, "\x50\x01\x00\x9d\x01\x2a", 6);
        le16(&b, w);
        le16(&b, h);
        put(&b, "\x00\x00", 2);
    } else {
        uint32_t lw = kind == 'L' ? w : 1, lh = kind == 'L' ? h : 1;
        put(&b, "VP8L", 4);
        le32(&b, 5); /* odd: one pad byte follows */
        put8(&b, 0x2f);
        le32(&b, (lw - 1) | (lh - 1) << 14);
        put8(&b, 0);
    }
    uint32_t riff = (uint32_t)b.n - 8;
    b.d[4] = (uint8_t)riff;
    b.d[5] = (uint8_t)(riff >> 8);
    b.d[6] = (uint8_t)(riff >> 16);
    b.d[7] = (uint8_t)(riff >> 24);
    return b;
}

static void expect_ok(const buf *b, image_type type, uint32_t w, uint32_t h)
{
    image_info info;
    assert_int_equal(image_probe(b->d, b->n, &info), IMAGE_PROBE_OK);
    assert_int_equal(info.type, type);
    assert_int_equal(info.width, w);
    assert_int_equal(info.height, h);
}

static int probe(const buf *b)
{
    image_info info;
    return image_probe(b->d, b->n, &info);
}

/* Every proper prefix of a valid file is refused; the ones long enough to
 * carry the magic are refused as truncated or bad, never accepted. */
static void expect_every_prefix_refused(const buf *b)
{
    for (size_t n = 0; n < b->n; n++) {
        image_info info;
        int r = image_probe(b->d, n, &info);
        assert_int_not_equal(r, IMAGE_PROBE_OK);
    }
    image_info info;
    assert_int_equal(image_probe(b->d, b->n - 1, &info), IMAGE_PROBE_TRUNCATED);
}

/* ---- tests --------------------------------------------------------------- */

static void test_four_types(void **state)
{
    (void)state;
    buf b = make_png(640, 480);
    expect_ok(&b, IMAGE_PNG, 640, 480);
    b = make_jpeg(1024, 768);
    expect_ok(&b, IMAGE_JPEG, 1024, 768);
    b = make_gif(3, 5);
    expect_ok(&b, IMAGE_GIF, 3, 5);
    b = make_webp('L', 300, 200);
    expect_ok(&b, IMAGE_WEBP, 300, 200);
    b = make_webp('X', 4000, 3000);
    expect_ok(&b, IMAGE_WEBP, 4000, 3000);
    b = make_webp(' ', 17, 9);
    expect_ok(&b, IMAGE_WEBP, 17, 9);
}

static void test_truncated(void **state)
{
    (void)state;
    buf b = make_png(2, 2);
    expect_every_prefix_refused(&b);
    b = make_jpeg(2, 2);
    expect_every_prefix_refused(&b);
    b = make_gif(2, 2);
    expect_every_prefix_refused(&b);
    b = make_webp('L', 2, 2);
    expect_every_prefix_refused(&b);
    b = make_webp('X', 2, 2);
    expect_every_prefix_refused(&b);
}

static void test_not_images(void **state)
{
    (void)state;
    buf b = {.n = 0};
    assert_int_equal(probe(&b), IMAGE_PROBE_UNSUPPORTED);
    put(&b, "hello, this is text pretending to be a .png\n", 44);
    assert_int_equal(probe(&b), IMAGE_PROBE_UNSUPPORTED);
    b.n = 0;
    put(&b, "<svg xmlns='http://www.w3.org/2000/svg'/>", 41);
    assert_int_equal(probe(&b), IMAGE_PROBE_UNSUPPORTED);
    b.n = 0;
    put(&b, "BM\x3a\0\0\0\0\0\0\0\x36\0\0\0", 14); /* BMP */
    assert_int_equal(probe(&b), IMAGE_PROBE_UNSUPPORTED);
    b.n = 0;
    put(&b, "RIFF\x04\0\0\0WAVE", 12); /* RIFF but not WebP */
    assert_int_equal(probe(&b), IMAGE_PROBE_UNSUPPORTED);
}

static void test_dimension_bounds(void **state)
{
    (void)state;
    buf b = make_png(IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    expect_ok(&b, IMAGE_PNG, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    b = make_png(IMAGE_MAX_SIDE + 1, 1);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_png(1, 0);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_png(0xffffffffu, 1);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_jpeg(0, 10); /* width 0 */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_jpeg(10, 0); /* height 0: defined later by DNL, refused */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_jpeg(65535, 10);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_gif(0, 4);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_gif(20001, 4);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_webp('X', 20001, 5);
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
    b = make_webp('L', 16384, 5); /* VP8L's largest side */
    expect_ok(&b, IMAGE_WEBP, 16384, 5);
}

static void test_png_structure(void **state)
{
    (void)state;
    buf b = make_png(4, 4);
    put(&b, "<html>", 6); /* bytes after IEND */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_png(4, 4);
    memcpy(b.d + 12, "IHDX", 4); /* IHDR not first */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_png(4, 4);
    b.d[8 + 3] = 14; /* IHDR of the wrong length */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_png(4, 4);
    memcpy(b.d + 33 + 4, "tEXt", 4); /* no IDAT before IEND */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_png(4, 4);
    b.d[33] = 0x7f; /* the IDAT claims almost 2 GiB */
    assert_int_equal(probe(&b), IMAGE_PROBE_TRUNCATED);
    b.d[33] = 0xff; /* past the spec's 2^31 - 1 */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);
}

static void test_jpeg_structure(void **state)
{
    (void)state;
    buf b = make_jpeg(8, 8);
    b.d[b.n - 1] = 0xd8; /* no EOI at the end */
    assert_int_equal(probe(&b), IMAGE_PROBE_TRUNCATED);

    b = make_jpeg(8, 8);
    b.d[21] = 0xc4; /* the SOF becomes a DHT: a scan without a frame */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_jpeg(8, 8);
    b.d[2 + 18 + 2] = 0;
    b.d[2 + 18 + 3] = 1; /* a segment length below 2 */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_jpeg(8, 8);
    b.d[2 + 18 + 2] = 0xff; /* SOF runs past the end */
    assert_int_equal(probe(&b), IMAGE_PROBE_TRUNCATED);

    /* a progressive frame (SOF2) and fill bytes before a marker */
    b = make_jpeg(33, 44);
    b.d[21] = 0xc2;
    expect_ok(&b, IMAGE_JPEG, 33, 44);
    buf f = {.n = 0};
    put(&f, b.d, 20);
    put(&f, "\xff\xff", 2);
    put(&f, b.d + 20, b.n - 20);
    expect_ok(&f, IMAGE_JPEG, 33, 44);
}

static void test_gif_structure(void **state)
{
    (void)state;
    buf b = make_gif(4, 4);
    b.d[b.n - 1] = 0x00; /* no trailer: a stray block type */
    assert_int_not_equal(probe(&b), IMAGE_PROBE_OK);

    b = make_gif(4, 4);
    put8(&b, 0); /* a byte after the trailer */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    buf noimg = {.n = 0}; /* header, table and trailer, no image */
    put(&noimg, make_gif(4, 4).d, 19);
    put8(&noimg, 0x3b);
    assert_int_equal(probe(&noimg), IMAGE_PROBE_BAD);

    b = make_gif(4, 4);
    b.d[10] = 0x87; /* a global table of 256 colours the file does not have */
    assert_int_equal(probe(&b), IMAGE_PROBE_TRUNCATED);

    b = make_gif(4, 4);
    memcpy(b.d, "GIF87a", 6);
    expect_ok(&b, IMAGE_GIF, 4, 4);
}

static void test_webp_structure(void **state)
{
    (void)state;
    buf b = make_webp('L', 4, 4);
    b.d[4]++; /* the RIFF claims a byte more than there is */
    assert_int_equal(probe(&b), IMAGE_PROBE_TRUNCATED);

    b = make_webp('L', 4, 4);
    put(&b, "ab", 2); /* two bytes after the RIFF */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_webp('L', 4, 4);
    b.d[20] = 0x2e; /* not the VP8L signature */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_webp(' ', 4, 4);
    b.d[23] = 0x9c; /* not the VP8 start code */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    b = make_webp('L', 4, 4);
    memcpy(b.d + 12, "ICCP", 4); /* the first chunk gives no size */
    assert_int_equal(probe(&b), IMAGE_PROBE_BAD);

    buf empty = {.n = 0};
    put(&empty, "RIFF\x04\0\0\0WEBP", 12); /* no chunk at all */
    assert_int_equal(probe(&empty), IMAGE_PROBE_TRUNCATED);
}

static void test_type_names(void **state)
{
    (void)state;
    assert_string_equal(image_type_mime(IMAGE_PNG), "image/png");
    assert_string_equal(image_type_mime(IMAGE_JPEG), "image/jpeg");
    assert_string_equal(image_type_mime(IMAGE_GIF), "image/gif");
    assert_string_equal(image_type_mime(IMAGE_WEBP), "image/webp");
    assert_null(image_type_mime(IMAGE_NONE));
    assert_string_equal(image_type_ext(IMAGE_JPEG), "jpg");
    assert_int_equal(image_type_from_ext("webp"), IMAGE_WEBP);
    assert_int_equal(image_type_from_ext("PNG"), IMAGE_NONE);
    assert_int_equal(image_type_from_ext("jpeg"), IMAGE_NONE);
    assert_int_equal(image_type_from_ext(""), IMAGE_NONE);
}

static void test_media_names(void **state)
{
    (void)state;
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char name[128];
    snprintf(name, sizeof(name), "%s.png", hex);
    assert_int_equal(media_name_parse(name), IMAGE_PNG);
    snprintf(name, sizeof(name), "%s.webp", hex);
    assert_int_equal(media_name_parse(name), IMAGE_WEBP);
    snprintf(name, sizeof(name), "%s.jpg", hex);
    assert_int_equal(media_name_parse(name), IMAGE_JPEG);
    snprintf(name, sizeof(name), "%s.gif", hex);
    assert_int_equal(media_name_parse(name), IMAGE_GIF);

    const char *bad[] = {"", ".png", "..", "../../etc/passwd", "abc.png", "x", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(media_name_parse(bad[i]), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.PNG", hex); /* case matters */
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.png/", hex);
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.png.txt", hex);
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.svg", hex);
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%.63s.png", hex); /* one digit short */
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%sa.png", hex); /* one digit long */
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.png", hex);
    name[10] = 'A'; /* upper-case hex */
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
    snprintf(name, sizeof(name), "%s.png", hex);
    name[0] = '%';
    assert_int_equal(media_name_parse(name), IMAGE_NONE);
}

/* ---- multipart ----------------------------------------------------------- */

static void test_boundary(void **state)
{
    (void)state;
    char b[MULTIPART_MAX_BOUNDARY + 1];
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=abc123", b), 0);
    assert_string_equal(b, "abc123");
    assert_int_equal(multipart_boundary("Multipart/Form-Data;boundary=\"a b:c\"", b), 0);
    assert_string_equal(b, "a b:c");
    assert_int_equal(multipart_boundary("multipart/form-data; charset=utf-8; BOUNDARY=x", b), 0);
    assert_string_equal(b, "x");
    assert_int_equal(multipart_boundary("multipart/form-data", b), -1);
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=", b), -1);
    assert_int_equal(multipart_boundary("multipart/form-data; boundary=\"unclosed", b), -1);
    assert_int_equal(multipart_boundary("multipart/mixed; boundary=abc", b), -1);
    assert_int_equal(multipart_boundary("image/png", b), -1);
    char longb[200];
    snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%071d", 0);
    assert_int_equal(multipart_boundary(longb, b), -1);
    assert_true(multipart_is_multipart("multipart/form-data"));
    assert_true(multipart_is_multipart(" MULTIPART/mixed"));
    assert_false(multipart_is_multipart("image/png"));
}

static int find(const char *body, const char **file, size_t *len, const char **why)
{
    return multipart_find_file("XyZ", (const uint8_t *)body, strlen(body), (const uint8_t **)file,
                               len, why);
}

static void test_find_file(void **state)
{
    (void)state;
    const char *file, *why;
    size_t len;
    /* uni.uploadFile: a form field, then the file */
    const char *body =
        "--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nalice\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
        "Content-Type: image/png\r\n\r\nPNGDATA\r\n--XyZ--\r\n";
    assert_int_equal(find(body, &file, &len, &why), 0);
    assert_int_equal(len, 7);
    assert_memory_equal(file, "PNGDATA", 7);

    /* a preamble, a body holding CRLF and a near-boundary */
    body = "preamble\r\n--XyZ\r\ncontent-disposition: form-data; name=f; FILENAME=x\r\n\r\n"
           "a\r\n--Xy\r\nb\r\n--XyZ--";
    assert_int_equal(find(body, &file, &len, &why), 0);
    assert_int_equal(len, 10);
    assert_memory_equal(file, "a\r\n--Xy\r\nb", 10);

    /* one part without a filename is the file */
    body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nDATA\r\n--XyZ--";
    assert_int_equal(find(body, &file, &len, &why), 0);
    assert_memory_equal(file, "DATA", 4);

    /* a part with no headers at all */
    body = "--XyZ\r\n\r\nRAW\r\n--XyZ--";
    assert_int_equal(find(body, &file, &len, &why), 0);
    assert_int_equal(len, 3);

    /* an empty file part */
    body = "--XyZ\r\nContent-Disposition: form-data; name=f; filename=e\r\n\r\n\r\n--XyZ--";
    assert_int_equal(find(body, &file, &len, &why), 0);
    assert_int_equal(len, 0);
}

static void test_find_file_refused(void **state)
{
    (void)state;
    const char *file, *why;
    size_t len;
    const char *bad[] = {
        "",
        "no boundary here",
        /* no closing delimiter: cut */
        "--XyZ\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nDATA",
        /* headers never end */
        "--XyZ\r\nContent-Disposition: form-data; name=f; filename=a\r\nDATA\r\n--XyZ--",
        /* two file parts */
        "--XyZ\r\nContent-Disposition: form-data; name=a; filename=a\r\n\r\nA\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=b; filename=b\r\n\r\nB\r\n--XyZ--",
        /* two fields, no file */
        "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nA\r\n"
        "--XyZ\r\nContent-Disposition: form-data; name=b\r\n\r\nB\r\n--XyZ--",
        /* junk after a delimiter */
        "--XyZjunk\r\n\r\nA\r\n--XyZ--",
        /* only the closing delimiter */
        "--XyZ--",
        NULL,
    };
    for (int i = 0; bad[i]; i++) {
        why = NULL;
        assert_int_equal(find(bad[i], &file, &len, &why), -1);
        assert_non_null(why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_four_types),        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_not_images),        cmocka_unit_test(test_dimension_bounds),
        cmocka_unit_test(test_png_structure),     cmocka_unit_test(test_jpeg_structure),
        cmocka_unit_test(test_gif_structure),     cmocka_unit_test(test_webp_structure),
        cmocka_unit_test(test_type_names),        cmocka_unit_test(test_media_names),
        cmocka_unit_test(test_boundary),          cmocka_unit_test(test_find_file),
        cmocka_unit_test(test_find_file_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
