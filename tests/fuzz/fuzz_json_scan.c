/* libFuzzer target for json_scan: never reads outside the input, every span
 * lies inside it and is itself valid JSON, and whatever jansson accepts as an
 * object the scanner accepts too (inputs without NUL bytes). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"type", "to_id", "data"};
    char *text = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    if (!text)
        return 0;
    memcpy(text, data, size);
    json_span v[3];
    int r = json_scan_object(text, size, keys, v, 3);
    if (r == 0) {
        for (int i = 0; i < 3; i++) {
            if (!v[i].type)
                continue;
            const char *p = v[i].p, *end = p + v[i].len;
            if (p < text || end > text + size)
                abort();
            /* a span wrapped as a member value must scan again */
            size_t extra = v[i].type == JSON_SPAN_STRING ? 2 : 0;
            char *wrapped = malloc(v[i].len + extra + 8);
            int n = sprintf(wrapped, "{\"d\":%s", v[i].type == JSON_SPAN_STRING ? "\"" : "");
            memcpy(wrapped + n, p, v[i].len);
            n += (int)v[i].len;
            n += sprintf(wrapped + n, "%s}", v[i].type == JSON_SPAN_STRING ? "\"" : "");
            if (json_scan_object(wrapped, (size_t)n, keys, v, 0) != 0)
                abort();
            free(wrapped);
        }
    } else if (!memchr(text, '\0', size)) {
        /* jansson reads past a NUL byte as if it were not there (it accepted
         * {"a":[null<NUL>,[],{}]}); RFC 8259 does not, and neither does
         * the scanner, so inputs with NUL are not compared */
        json_t *j = json_loadb(text, size, 0, NULL);
        if (j && json_is_object(j))
            abort(); /* jansson accepted what the scanner refused */
        json_decref(j);
    }
    free(text);
    return 0;
}
