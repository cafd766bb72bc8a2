/* media: pictures uploaded by users (POST /media) and served back
 * (GET /media/<name>). docs/MEDIA.md is the API reference.
 *
 * Upload: an authenticated request whose body is the file, raw or as the
 * one file part of multipart/form-data. image_probe decides the type from
 * the bytes (JPEG, PNG, GIF, WebP) and reads the size; the file is stored
 * under --media-dir as <sha256 hex>.<ext>, written to a temporary file,
 * fsynced and renamed into place, so a name is either absent or complete,
 * and the same bytes twice are one file (idempotent). The name is the
 * content's hash: nobody can guess it without having the picture.
 *
 * Bounds: a body up to --max-upload (the HTTP layer's body policy,
 * media_body_policy). The token is resolved while the connection is not
 * read (the policy's decide): a request without a good token is refused
 * (401) before any byte of its body is read, and only then is a slot taken:
 * at most --upload-concurrency uploads (503 busy past it), at most
 * MEDIA_UPLOADS_PER_USER of one user (429), held until the answer, so
 * upload memory stays under max-upload x upload-concurrency and a made-up
 * token holds nothing.
 *
 * Serving: GET/HEAD /media/<name> with no authentication (the name is the
 * secret). A name that is not exactly 64 lowercase hex digits, a dot and a
 * known extension is 404 without touching the disk, so no path can leave
 * the directory. The answer carries the type of the extension,
 * X-Content-Type-Options: nosniff, a year of immutable caching and the name
 * as ETag (If-None-Match answers 304 without the disk). The body is
 * streamed (http_stream_*) in MEDIA_SERVE_CHUNK pieces, each read once the
 * connection's queue is within --max-outbuf, so a GET holds about that
 * much memory, not the file.
 *
 * Threading: the handlers run on the loop thread and look at no more than
 * the headers; everything that walks a body or touches the disk runs on
 * libuv's thread pool (uv_queue_work): the multipart scan, image_probe,
 * hashing, the writes and renames of an upload (refusals are answered from
 * the after-work callback, with nothing stored), and the reads of a GET. A
 * body built to be slow to check (tiny multipart parts, a GIF of 1-byte
 * sub-blocks) costs a pool thread, never the loop.
 *
 * Ownership: the upload works on req->body in place (the HTTP layer leaves
 * it alone until the answer and frees it with the request after it); a
 * GET's job (req->app_data) owns the open file and the piece being read,
 * and is freed when the stream ends. */
#ifndef CHATD_MEDIA_H
#define CHATD_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "core/config.h"
#include "http/http.h"
#include "media/image_probe.h"

/* "<64 hex>.webp" and its NUL */
#define MEDIA_NAME_MAX (64 + 1 + 4 + 1)

/* Creates --media-dir (mode 0700, parents too) and removes temporary files
 * a crash left in it. Blocking: at start-up only. 0 or -1 (logged). */
int media_init(uv_loop_t *loop, const config *cfg);

/* True for /media and /media/... */
bool media_handles(const char *path);

/* The HTTP body policy for /media (http_set_body_policy): a POST without a
 * token is refused (401); with one, the token is resolved before the body
 * is read, then the request gets --max-upload and an upload slot, or a
 * refusal (401, 429 rate_limited past the user's slots, 503 busy past
 * --upload-concurrency). Other requests are left alone. */
void media_body_policy(http_request *req, http_body_policy *policy);

/* Answers a request media_handles accepted. */
void media_handle_request(http_request *req);

/* The type a stored name stands for: exactly 64 lowercase hex digits, '.',
 * and jpg, png, gif or webp; IMAGE_NONE for anything else. Pure. */
image_type media_name_parse(const char *name);

#endif
