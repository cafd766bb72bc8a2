/* multipart: the one file part of a multipart/form-data body (RFC 7578), as
 * uni-app's uni.uploadFile and browsers' FormData send a picture.
 *
 * Only what an upload needs: the boundary from the Content-Type, the parts
 * between the delimiters, and the part whose Content-Disposition has a
 * filename (or the only part, when there is one). Other form fields are
 * skipped; a second file part, a missing closing delimiter or a part without
 * its blank line is refused. Part headers are looked at, never trusted for
 * the type (image_probe decides that from the bytes).
 *
 * Pure code: no allocation, reads only inside the buffers it is given; the
 * file it finds points into the body. Unit-tested in
 * tests/unit/test_image_probe.c. */
#ifndef CHATD_MULTIPART_H
#define CHATD_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 2046: a boundary is 1-70 characters. */
#define MULTIPART_MAX_BOUNDARY 70

/* True when the Content-Type value names a multipart body of any kind. */
bool multipart_is_multipart(const char *content_type);

/* Copies the boundary of a "multipart/form-data; boundary=..." value into
 * out (NUL-terminated; quotes removed). 0, or -1 for another type or a
 * missing, empty or too long boundary. */
int multipart_boundary(const char *content_type, char out[MULTIPART_MAX_BOUNDARY + 1]);

/* Finds the file part of body[0..len) delimited by boundary: 0 with
 * *file, *file_len set (pointing into body), or -1 with *why set to a
 * static reason. */
int multipart_find_file(const char *boundary, const uint8_t *body, size_t len, const uint8_t **file,
                        size_t *file_len, const char **why);

#endif
