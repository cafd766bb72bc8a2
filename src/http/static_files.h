/* static_files: GET/HEAD of files under the web root, read with libuv's
 * thread-pool file operations so the event loop never waits on the disk.
 *
 * Safety: the decoded path must start with '/', contain no NUL, no
 * backslash and no "." or ".." segment, so a request can never name a file
 * outside the web root (400). A directory serves its index.html.
 * Caching: ETag (size and mtime) and Last-Modified; a matching
 * If-None-Match, or If-Modified-Since not older than the file, gets 304. */
#ifndef CHATD_STATIC_FILES_H
#define CHATD_STATIC_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"

/* Resolves the web root's real path (once, at start-up). -1 if missing. */
int static_files_init(const char *web_root);

/* Answers req from files under web_root (borrowed; must outlive the call). */
void static_serve(http_request *req, const char *web_root);

/* Checks and normalizes a raw URL path into out ("/index.html" for "/").
 * Returns 0, or -1 when the path is unsafe or too long. Pure (unit-tested). */
int static_safe_path(const char *raw, char *out, size_t cap);

/* The Content-Type for a file name, by extension. */
const char *static_content_type(const char *path);

#endif
