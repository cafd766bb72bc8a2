/* static_files: GET/HEAD of files under the web root, read with libuv's
 * thread-pool file operations so the event loop never waits on the disk.
 *
 * Safety: the decoded path must start with '/', contain no NUL, no
 * backslash and no "." or ".." segment, so a request can never name a file
 * outside the web root (400). A directory serves its index.html.
 * Caching: ETag (size and mtime) and Last-Modified; a matching
 * If-None-Match, or If-Modified-Since not older than the file, gets 304.
 * Cache-Control: no-cache, except images and fonts: max-age=600.
 *
 * Compression: a text file (html, css, js, json, svg, txt, map, ...) of at
 * least STATIC_GZIP_MIN bytes is answered gzip-compressed when the request's
 * Accept-Encoding accepts gzip (q-values honoured; "*" counts), with
 * Content-Encoding: gzip, the compressed Content-Length and its own ETag
 * ("...-gz"); every answer for such a file carries Vary: Accept-Encoding.
 * Already-compressed types (PNG, JPEG, GIF, WebP, WOFF) never are. Each
 * version of a file is compressed once on the thread pool and kept in a
 * bounded in-memory cache (4 MiB of compressed bytes, 256 files, least
 * recently used evicted), loop thread only. There are no Range requests. */
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

/* Below this, gzip's header and the extra request are not worth it. */
#define STATIC_GZIP_MIN 256

/* True when a file of this name and size is answered gzip-compressed to a
 * client that accepts it (a text type, at least STATIC_GZIP_MIN bytes). */
bool static_compressible(const char *path, size_t size);

/* True when an Accept-Encoding value (NULL: the header is absent) accepts
 * gzip: "gzip" or "x-gzip" with q > 0, or "*" with q > 0 and gzip not
 * named. A malformed q is taken as 0. Pure. */
bool static_accepts_gzip(const char *accept_encoding);

#endif
