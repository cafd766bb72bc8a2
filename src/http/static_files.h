/* static_files: GET/HEAD of files under a root directory, read with libuv's
 * thread-pool file operations so the event loop never waits on the disk.
 * Two roots: the web client (--web-root, served at /) and the JavaScript
 * SDK's modules (--sdk-root, served at /sdk/, so that a page imports
 * /sdk/index.js with no copy). Both follow every rule below.
 *
 * Safety: the decoded path must start with '/', contain no NUL, no
 * backslash and no "." or ".." segment, so a request can never name a file
 * outside its root (400); what a symlink resolves to must lie under the
 * root's real path too (404). A directory serves its index.html.
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

/* The directories files are served from. */
typedef enum {
    STATIC_ROOT_WEB, /* --web-root, at / */
    STATIC_ROOT_SDK, /* --sdk-root, at /sdk/ */
    STATIC_ROOT_COUNT
} static_root;

/* Resolves root's real path from dir (borrowed; must outlive the server),
 * once, at start-up. -1 (logged) if missing: its files are then 404. */
int static_files_init(static_root root, const char *dir);

/* Answers req from the file at path (the URL path below the root's mount
 * point, e.g. "/index.js" for GET /sdk/index.js) under root. */
void static_serve(http_request *req, static_root root, const char *path);

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
