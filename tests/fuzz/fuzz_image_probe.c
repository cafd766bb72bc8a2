/* libFuzzer target for image_probe and multipart: never reads outside the
 * input (an exact-size copy, so ASan sees any overread), an accepted picture
 * has a known type and sides within 1..IMAGE_MAX_SIDE, every proper prefix
 * of an accepted picture is refused (a truncated file never passes), and a
 * file part the multipart finder returns lies inside the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media/image_probe.h"
#include "media/multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    image_info info;
    int r = image_probe(copy, size, &info);
    if (r == IMAGE_PROBE_OK) {
        if (!image_type_mime(info.type) || info.width == 0 || info.height == 0 ||
            info.width > IMAGE_MAX_SIDE || info.height > IMAGE_MAX_SIDE)
            abort();
        /* the last byte of every format is part of its end marker or last
         * chunk: one byte less must not pass */
        image_info cut;
        if (size > 0 && image_probe(copy, size - 1, &cut) == IMAGE_PROBE_OK)
            abort();
    } else if (r != IMAGE_PROBE_UNSUPPORTED && r != IMAGE_PROBE_TRUNCATED && r != IMAGE_PROBE_BAD) {
        abort();
    }
    const uint8_t *file;
    size_t file_len;
    const char *why;
    if (multipart_find_file("b0undary", copy, size, &file, &file_len, &why) == 0) {
        if (file < copy || file_len > size || (size_t)(file - copy) > size - file_len)
            abort();
    }
    free(copy);
    return 0;
}
