/* multipart: find the file part of a multipart/form-data body (see
 * multipart.h). */
#include "media/multipart.h"

#include <string.h>
#include <strings.h>

/* Part headers larger than this are refused: a file part's are a few lines. */
#define MULTIPART_MAX_PART_HEADERS 8192

bool multipart_is_multipart(const char *content_type)
{
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    return strncasecmp(content_type, "multipart/", 10) == 0;
}

int multipart_boundary(const char *content_type, char out[MULTIPART_MAX_BOUNDARY + 1])
{
    const char *p = content_type;
    while (*p == ' ' || *p == '\t')
        p++;
    static const char type[] = "multipart/form-data";
    if (strncasecmp(p, type, sizeof(type) - 1) != 0)
        return -1;
    p += sizeof(type) - 1;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ';')
            return -1;
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *name = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        size_t name_len = (size_t)(p - name);
        while (name_len && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t'))
            name_len--;
        if (*p != '=')
            return -1;
        p++;
        const char *value = p;
        size_t value_len;
        if (*p == '"') {
            value = ++p;
            while (*p && *p != '"')
                p++;
            if (*p != '"')
                return -1;
            value_len = (size_t)(p - value);
            p++;
        } else {
            while (*p && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            value_len = (size_t)(p - value);
        }
        if (name_len == 8 && strncasecmp(name, "boundary", 8) == 0) {
            if (value_len == 0 || value_len > MULTIPART_MAX_BOUNDARY)
                return -1;
            memcpy(out, value, value_len);
            out[value_len] = '\0';
            return 0;
        }
    }
    return -1;
}

/* Case-insensitive search of needle in [hay, hay + len). */
static const char *find_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (strncasecmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

/* True when the part's headers have a Content-Disposition with a filename
 * parameter ("filename=" or RFC 5987's "filename*="). */
static bool part_has_filename(const char *h, size_t len)
{
    static const char cd[] = "content-disposition:";
    size_t pos = 0;
    while (pos < len) {
        const char *eol = memchr(h + pos, '\n', len - pos);
        size_t line_len = eol ? (size_t)(eol - (h + pos)) : len - pos;
        if (line_len >= sizeof(cd) - 1 && strncasecmp(h + pos, cd, sizeof(cd) - 1) == 0) {
            const char *v = h + pos + sizeof(cd) - 1;
            size_t vlen = line_len - (sizeof(cd) - 1);
            const char *f = find_ci(v, vlen, "filename");
            if (f) {
                const char *after = f + 8;
                if (after < v + vlen && (*after == '=' || *after == '*'))
                    return true;
            }
        }
        pos += line_len + 1;
    }
    return false;
}

int multipart_find_file(const char *boundary, const uint8_t *body, size_t len, const uint8_t **file,
                        size_t *file_len, const char **why)
{
    /* the delimiter is CRLF "--" boundary; the first may open the body */
    char delim[MULTIPART_MAX_BOUNDARY + 5];
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > MULTIPART_MAX_BOUNDARY) {
        *why = "bad boundary";
        return -1;
    }
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, blen);
    size_t dlen = blen + 4;
    const char *b = (const char *)body;
    size_t pos;
    if (len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const char *first = memmem(b, len, delim, dlen);
        if (!first) {
            *why = "no boundary in the body";
            return -1;
        }
        pos = (size_t)(first - b) + dlen;
    }
    const uint8_t *found = NULL;
    size_t found_len = 0, parts = 0, file_parts = 0;
    const uint8_t *only = NULL;
    size_t only_len = 0;
    for (;;) {
        /* after a delimiter: "--" closes, else optional blanks and CRLF */
        if (len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-')
            break;
        while (pos < len && (b[pos] == ' ' || b[pos] == '\t'))
            pos++;
        if (len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n') {
            *why = "a boundary is not followed by CRLF or --";
            return -1;
        }
        pos += 2;
        /* the part's headers end with an empty line (none: it starts with one) */
        size_t hdr_end;
        if (len - pos >= 2 && b[pos] == '\r' && b[pos + 1] == '\n') {
            hdr_end = pos;
            pos += 2;
        } else {
            size_t window =
                len - pos < MULTIPART_MAX_PART_HEADERS ? len - pos : MULTIPART_MAX_PART_HEADERS;
            const char *blank = memmem(b + pos, window, "\r\n\r\n", 4);
            if (!blank) {
                *why = "a part's headers do not end";
                return -1;
            }
            hdr_end = (size_t)(blank - b);
        }
        bool is_file = hdr_end > pos && part_has_filename(b + pos, hdr_end - pos);
        size_t content = hdr_end > pos ? hdr_end + 4 : pos;
        const char *next = memmem(b + content, len - content, delim, dlen);
        if (!next) {
            *why = "the body ends inside a part (no closing boundary)";
            return -1;
        }
        size_t content_len = (size_t)(next - (b + content));
        parts++;
        if (parts == 1) {
            only = body + content;
            only_len = content_len;
        }
        if (is_file) {
            if (++file_parts > 1) {
                *why = "more than one file part (one picture per upload)";
                return -1;
            }
            found = body + content;
            found_len = content_len;
        }
        pos = (size_t)(next - b) + dlen;
    }
    if (!found && parts == 1) {
        found = only;
        found_len = only_len;
    }
    if (!found) {
        *why = parts ? "no file part (a part with a filename)" : "no part";
        return -1;
    }
    *file = found;
    *file_len = found_len;
    return 0;
}
