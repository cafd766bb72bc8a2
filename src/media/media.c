/* media: POST /media and GET /media/<name> (see media.h). */
#include "media/media.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "chat/auth.h"
#include "core/log.h"
#include "media/multipart.h"

/* A temporary file older than this is a crash's leftover, not a write in
 * progress on another node sharing the directory. */
#define MEDIA_STALE_TMP_SECONDS 3600
/* The largest file GET /media serves (the largest --max-upload). */
#define MEDIA_MAX_SERVE (1 << 30)

/* Upload slots one user may hold at once. Two lets a client send a second
 * picture while the first is still stored, and keeps one user (or a stolen
 * token) from taking every --upload-concurrency slot with slow bodies. A
 * constant, not an option: it bounds an abuse, it is not a capacity knob. */
#define MEDIA_UPLOADS_PER_USER 2

static uv_loop_t *media_loop;
static const config *media_cfg;
static char media_dir[4096]; /* set once at start-up, then read by pool threads */
static size_t uploads_in_flight;

/* The users holding upload slots: at most --upload-concurrency entries,
 * each freed when its last slot is given back. */
typedef struct user_uploads {
    int64_t uid;
    unsigned held;
    UT_hash_handle hh;
} user_uploads;
static user_uploads *uploads_by_user;

bool media_handles(const char *path)
{
    return strcmp(path, "/media") == 0 || strncmp(path, "/media/", 7) == 0;
}

image_type media_name_parse(const char *name)
{
    for (int i = 0; i < 64; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return IMAGE_NONE;
    if (name[64] != '.')
        return IMAGE_NONE;
    return image_type_from_ext(name + 65);
}

/* ---- start-up ------------------------------------------------------------ */

/* mkdir -p with new directories 0700. */
static int make_dir(const char *dir)
{
    char buf[sizeof(media_dir)];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return -1;
        buf[i] = dir[i];
    }
    return 0;
}

static void remove_stale_temporaries(void)
{
    DIR *d = opendir(media_dir);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, ".up-", 4) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now - st.st_mtime > MEDIA_STALE_TMP_SECONDS)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int media_init(uv_loop_t *loop, const config *cfg)
{
    media_loop = loop;
    media_cfg = cfg;
    int n = cfg->media_dir[0] ? snprintf(media_dir, sizeof(media_dir), "%s", cfg->media_dir)
                              : snprintf(media_dir, sizeof(media_dir), "%s/media", cfg->data_dir);
    if (n <= 0 || (size_t)n >= sizeof(media_dir) - MEDIA_NAME_MAX - 1) {
        log_error("--media-dir: path too long");
        return -1;
    }
    struct stat st;
    if (make_dir(media_dir) < 0 || stat(media_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        log_error("cannot create the media directory %s: %s", media_dir, strerror(errno));
        return -1;
    }
    if (access(media_dir, W_OK | X_OK) != 0) {
        log_error("media directory %s is not writable: %s", media_dir, strerror(errno));
        return -1;
    }
    if (sodium_init() < 0)
        return -1;
    remove_stale_temporaries();
    return 0;
}

/* ---- the body policy ----------------------------------------------------- */

static const char *request_token(const http_request *req)
{
    const char *auth = http_header(req, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0)
        return auth + 7;
    return http_header(req, "token");
}

static void release_slot(http_request *req)
{
    user_uploads *u = req->app_data;
    req->app_data = NULL;
    uploads_in_flight--;
    if (u && --u->held == 0) {
        HASH_DEL(uploads_by_user, u);
        free(u);
    }
}

/* The token is known good: a slot for its user, then the body is read. */
static void upload_take_slot(http_request *req, int64_t uid)
{
    user_uploads *u;
    HASH_FIND(hh, uploads_by_user, &uid, sizeof(uid), u);
    if (u && u->held >= MEDIA_UPLOADS_PER_USER) {
        http_respond_error(req, 429, "rate_limited",
                           "you have %d uploads under way already; wait for one to finish",
                           MEDIA_UPLOADS_PER_USER);
        return;
    }
    if (uploads_in_flight >= (size_t)media_cfg->upload_concurrency) {
        http_respond_error(req, 503, "busy", "too many uploads at once; try again");
        return;
    }
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u) {
            http_respond_error(req, 500, "internal", "out of memory");
            return;
        }
        u->uid = uid;
        HASH_ADD(hh, uploads_by_user, uid, sizeof(u->uid), u);
    }
    u->held++;
    uploads_in_flight++;
    req->app_data = u;
    req->release = release_slot;
    http_body_policy policy = {.limit = media_cfg->max_upload, .large = true};
    http_body_accept(req, &policy);
}

static void upload_authorized(void *ctx, int status, json_t *user)
{
    http_request *req = ctx;
    int64_t uid = user ? (int64_t)json_integer_value(json_object_get(user, "id")) : 0;
    json_decref(user);
    if (!req->conn) { /* the client left during the look-up: this only frees req */
        http_respond_error(req, 500, "internal", "gone");
        return;
    }
    if (status == 503) {
        http_respond_error(req, 503, "store_unavailable",
                           "the database cannot be reached right now; try again");
        return;
    }
    if (status != 0) {
        http_respond_error(req, status == 401 ? 401 : 500,
                           status == 401 ? "unauthorized" : "internal",
                           status == 401 ? "token is missing, wrong or expired" : "storage failed");
        return;
    }
    upload_take_slot(req, uid);
}

/* Runs with the connection not read: no body byte is taken before the token
 * is known to be good, so a made-up token never holds a slot. */
static void upload_decide(http_request *req)
{
    auth_resolve(request_token(req), upload_authorized, req);
}

void media_body_policy(http_request *req, http_body_policy *policy)
{
    if (req->method != HTTP_POST || strcmp(req->path, "/media") != 0)
        return;
    const char *token = request_token(req);
    if (!token || !*token) {
        policy->refuse_status = 401;
        policy->refuse_code = "unauthorized";
        policy->refuse_msg = "token is missing, wrong or expired";
        return;
    }
    policy->decide = upload_decide;
}

/* ---- upload -------------------------------------------------------------- */

/* What the checks of an upload found (upload_check, on the thread pool):
 * stored, or the refusal upload_done answers. */
typedef enum upload_verdict {
    UPLOAD_OK = 0,
    UPLOAD_BAD_MULTIPART, /* multipart_find_file failed: job->why says why */
    UPLOAD_EMPTY,
    UPLOAD_UNSUPPORTED,
    UPLOAD_TRUNCATED,
    UPLOAD_BAD_IMAGE,
} upload_verdict;

/* Set on the loop thread before the work is queued, read by the work, then
 * read back on the loop thread in upload_done (uv_queue_work orders the
 * three): no field is touched by two threads at once. */
typedef struct upload_job {
    uv_work_t work;
    http_request *req;
    const uint8_t *body; /* req->body */
    size_t body_len;
    bool multipart;
    char boundary[MULTIPART_MAX_BOUNDARY + 1];
    upload_verdict verdict;
    const char *why;     /* UPLOAD_BAD_MULTIPART: a static reason */
    const uint8_t *file; /* the picture: body, or its file part inside it */
    size_t file_len;
    image_info info;
    char name[MEDIA_NAME_MAX];
    int err; /* errno of the failed step, 0 = stored */
    const char *step;
} upload_job;

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes the file to a temporary name, fsyncs it and renames it into
 * place, then fsyncs the directory: after the answer the picture survives a
 * crash, and a reader never sees half a file under a real name. */
static int store_file(upload_job *job, const char *path)
{
    uint8_t rnd[8];
    randombytes_buf(rnd, sizeof(rnd));
    char tmp[sizeof(media_dir) + 32], hex[2 * sizeof(rnd) + 1];
    sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
    snprintf(tmp, sizeof(tmp), "%s/.up-%s", media_dir, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        job->step = "create";
        return -1;
    }
    const char *step = NULL;
    if (write_all(fd, job->file, job->file_len) < 0)
        step = "write";
    else if (fsync(fd) != 0)
        step = "fsync";
    int e = errno;
    if (close(fd) != 0 && !step) {
        step = "close";
        e = errno;
    }
    if (!step && rename(tmp, path) != 0) {
        step = "rename";
        e = errno;
    }
    if (step) {
        unlink(tmp);
        job->step = step;
        errno = e;
        return -1;
    }
    int dfd = open(media_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* Finds the picture in the body (the whole body, or the file part of a
 * multipart one) and probes it. Both walk the whole body, in steps as small
 * as a byte when the client makes them so (a multipart body of tiny parts, a
 * GIF of 1-byte sub-blocks: tens of milliseconds for 10 MiB, seconds at the
 * largest --max-upload), which is why they run here on the thread pool and
 * never on the loop thread. */
static upload_verdict upload_check(upload_job *job)
{
    job->file = job->body;
    job->file_len = job->body_len;
    if (job->multipart && multipart_find_file(job->boundary, job->body, job->body_len, &job->file,
                                              &job->file_len, &job->why) < 0)
        return UPLOAD_BAD_MULTIPART;
    if (job->file_len == 0)
        return UPLOAD_EMPTY;
    switch (image_probe(job->file, job->file_len, &job->info)) {
    case IMAGE_PROBE_OK:
        return UPLOAD_OK;
    case IMAGE_PROBE_UNSUPPORTED:
        return UPLOAD_UNSUPPORTED;
    case IMAGE_PROBE_TRUNCATED:
        return UPLOAD_TRUNCATED;
    default:
        return UPLOAD_BAD_IMAGE;
    }
}

/* On the thread pool: the checks, then (for a picture) the hash and the
 * write. A refused file stops at the checks: nothing is written. */
static void upload_work(uv_work_t *w)
{
    upload_job *job = w->data;
    job->verdict = upload_check(job);
    if (job->verdict != UPLOAD_OK)
        return;
    uint8_t hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(hash, job->file, job->file_len);
    char hex[2 * sizeof(hash) + 1];
    sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
    snprintf(job->name, sizeof(job->name), "%s.%s", hex, image_type_ext(job->info.type));
    char path[sizeof(media_dir) + MEDIA_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s/%s", media_dir, job->name);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == job->file_len)
        return; /* stored before: the same bytes, the same name */
    if (store_file(job, path) < 0)
        job->err = errno ? errno : EIO;
}

/* The answer to a file upload_check refused. */
static void upload_refuse(http_request *req, const upload_job *job)
{
    switch (job->verdict) {
    case UPLOAD_BAD_MULTIPART:
        http_respond_error(req, 400, "bad_multipart", "multipart body: %s", job->why);
        return;
    case UPLOAD_EMPTY:
        http_respond_error(req, 400, "empty_file", "the upload has no bytes");
        return;
    case UPLOAD_UNSUPPORTED:
        http_respond_error(req, 415, "unsupported_media_type",
                           "only JPEG, PNG, GIF and WebP pictures can be uploaded");
        return;
    case UPLOAD_TRUNCATED:
        http_respond_error(req, 400, "truncated_image", "the %s file is incomplete",
                           image_type_ext(job->info.type));
        return;
    case UPLOAD_BAD_IMAGE:
    case UPLOAD_OK: /* not a refusal: upload_done never passes it */
        break;
    }
    http_respond_error(req, 400, "bad_image",
                       "the %s file is malformed, or a side is 0 or over %d pixels",
                       image_type_ext(job->info.type), IMAGE_MAX_SIDE);
}

static void upload_done(uv_work_t *w, int status)
{
    upload_job *job = w->data;
    http_request *req = job->req;
    if (status < 0 || job->err) {
        log_error("media: cannot store an upload in %s (%s): %s", media_dir,
                  job->step ? job->step : "queue", strerror(status < 0 ? -status : job->err));
        http_respond_error(req, 500, "internal", "cannot store the file");
        free(job);
        return;
    }
    if (job->verdict != UPLOAD_OK) {
        upload_refuse(req, job);
        free(job);
        return;
    }
    char url[sizeof("/media/") + MEDIA_NAME_MAX];
    snprintf(url, sizeof(url), "/media/%s", job->name);
    log_debug("media: stored %s (%zu bytes, %ux%u)", job->name, job->file_len, job->info.width,
              job->info.height);
    http_respond_ok(
        req, json_pack("{s:s,s:s,s:I,s:I,s:I}", "url", url, "type", image_type_mime(job->info.type),
                       "width", (json_int_t)job->info.width, "height", (json_int_t)job->info.height,
                       "size", (json_int_t)job->file_len));
    free(job);
}

/* The body is in; the token was checked and a slot taken before it was
 * read (upload_decide). Only the headers are looked at here (the boundary):
 * the body is left to upload_work, so the loop thread does the same small
 * work for an upload of any size and shape. */
static void upload_received(http_request *req)
{
    if (req->release != release_slot) { /* no body policy ran: cannot happen */
        http_respond_error(req, 401, "unauthorized", "token is missing, wrong or expired");
        return;
    }
    upload_job *job = calloc(1, sizeof(*job));
    if (!job) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    const char *ctype = http_header(req, "Content-Type");
    if (ctype && multipart_is_multipart(ctype)) {
        if (multipart_boundary(ctype, job->boundary) < 0) {
            free(job);
            http_respond_error(req, 400, "bad_multipart",
                               "multipart uploads must be multipart/form-data with a boundary");
            return;
        }
        job->multipart = true;
    }
    job->req = req;
    job->body = (const uint8_t *)req->body;
    job->body_len = req->body_len;
    job->work.data = job;
    if (uv_queue_work(media_loop, &job->work, upload_work, upload_done) < 0) {
        free(job);
        http_respond_error(req, 500, "internal", "cannot queue the upload");
    }
}

/* ---- serving ------------------------------------------------------------- */

/* GET sends the file in pieces of this size, the next read only once the
 * connection's queue is back within --max-outbuf (http_stream_wait): a GET
 * costs about --max-outbuf and one piece, however large the picture and
 * however slowly its client reads. */
#define MEDIA_SERVE_CHUNK (64 * 1024)

typedef struct serve_job {
    uv_work_t work; /* the open and fstat */
    uv_fs_t fs;     /* the reads and the close */
    http_request *req;
    bool head;
    image_type type;
    char name[MEDIA_NAME_MAX];
    int fd;
    size_t size, sent;
    sbuf *piece; /* being read into */
    int err;
} serve_job;

static void serve_work(uv_work_t *w)
{
    serve_job *job = w->data;
    char path[sizeof(media_dir) + MEDIA_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%s/%s", media_dir, job->name);
    job->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (job->fd < 0) {
        job->err = errno;
        return;
    }
    struct stat st;
    if (fstat(job->fd, &st) != 0)
        job->err = errno;
    else if (!S_ISREG(st.st_mode))
        job->err = ENOENT;
    else if (st.st_size > MEDIA_MAX_SERVE)
        job->err = EFBIG;
    else
        job->size = (size_t)st.st_size;
}

static void serve_headers(const char *name, char *out, size_t cap)
{
    snprintf(out, cap,
             "X-Content-Type-Options: nosniff\r\n"
             "Cache-Control: public, max-age=31536000, immutable\r\n"
             "ETag: \"%s\"\r\n",
             name);
}

static void serve_closed(uv_fs_t *fs)
{
    serve_job *job = fs->data;
    uv_fs_req_cleanup(fs);
    free(job);
}

/* Frees the job, closing the file off the loop thread (req is answered or
 * ended already). */
static void serve_free(serve_job *job)
{
    sbuf_unref(job->piece);
    job->piece = NULL;
    if (job->fd >= 0) {
        job->fs.data = job;
        if (uv_fs_close(media_loop, &job->fs, job->fd, serve_closed) == 0)
            return;
    }
    free(job);
}

static void serve_end(serve_job *job, bool complete)
{
    http_stream_end(job->req, complete);
    serve_free(job);
}

static void serve_read_cb(uv_fs_t *fs);

/* Reads the next piece, or ends the answer. */
static void serve_next(http_request *req)
{
    serve_job *job = req->app_data;
    if (!req->conn) { /* the client left */
        serve_end(job, false);
        return;
    }
    if (job->sent == job->size) {
        serve_end(job, true);
        return;
    }
    size_t want = job->size - job->sent;
    if (want > MEDIA_SERVE_CHUNK)
        want = MEDIA_SERVE_CHUNK;
    job->piece = sbuf_new(want);
    if (!job->piece) {
        serve_end(job, false);
        return;
    }
    uv_buf_t buf = uv_buf_init((char *)job->piece->data, (unsigned)want);
    job->fs.data = job;
    if (uv_fs_read(media_loop, &job->fs, job->fd, &buf, 1, (int64_t)job->sent, serve_read_cb) < 0)
        serve_end(job, false);
}

static void serve_read_cb(uv_fs_t *fs)
{
    serve_job *job = fs->data;
    ssize_t n = fs->result;
    uv_fs_req_cleanup(fs);
    if (n <= 0) { /* an error, or the file shrank: the promised length cannot be sent */
        if (n < 0)
            log_error("media: cannot read %s: %s", job->name, uv_strerror((int)n));
        serve_end(job, false);
        return;
    }
    job->piece->len = (uint32_t)n;
    int r = http_stream_send(job->req, job->piece);
    sbuf_unref(job->piece);
    job->piece = NULL;
    if (r < 0) {
        serve_end(job, false);
        return;
    }
    job->sent += (size_t)n;
    http_stream_wait(job->req); /* serve_next once the queue drains */
}

static void serve_done(uv_work_t *w, int status)
{
    serve_job *job = w->data;
    http_request *req = job->req;
    if (status < 0 || job->err) {
        int e = status < 0 ? -status : job->err;
        if (e == ENOENT || e == ELOOP)
            http_respond_error(req, 404, "not_found", "no such picture");
        else
            http_respond_error(req, 500, "internal", "cannot read the picture");
        serve_free(job);
        return;
    }
    char headers[256];
    serve_headers(job->name, headers, sizeof(headers));
    if (job->head) {
        http_respond(req, 200, headers, image_type_mime(job->type), NULL, job->size);
        serve_free(job);
        return;
    }
    req->app_data = job;
    http_stream_begin(req, 200, headers, image_type_mime(job->type), job->size, serve_next);
    serve_next(req);
}

static void serve(http_request *req, const char *name)
{
    image_type type = media_name_parse(name);
    if (type == IMAGE_NONE) {
        http_respond_error(req, 404, "not_found", "no such picture");
        return;
    }
    /* The name is the content's hash: a client holding it holds the bytes. */
    const char *inm = http_header(req, "If-None-Match");
    if (inm && (strstr(inm, name) || strcmp(inm, "*") == 0)) {
        char headers[256];
        serve_headers(name, headers, sizeof(headers));
        http_respond(req, 304, headers, NULL, NULL, 0);
        return;
    }
    serve_job *job = calloc(1, sizeof(*job));
    if (!job) {
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    job->req = req;
    job->head = req->method == HTTP_HEAD;
    job->type = type;
    job->fd = -1;
    snprintf(job->name, sizeof(job->name), "%s", name);
    job->work.data = job;
    if (uv_queue_work(media_loop, &job->work, serve_work, serve_done) < 0) {
        free(job);
        http_respond_error(req, 500, "internal", "cannot queue the read");
    }
}

/* ---- routing ------------------------------------------------------------- */

void media_handle_request(http_request *req)
{
    if (strcmp(req->path, "/media") == 0) {
        if (req->method != HTTP_POST) {
            http_respond_error(req, 405, "method_not_allowed", "use POST to upload");
            return;
        }
        upload_received(req);
        return;
    }
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "method_not_allowed", "%s is not allowed on a picture",
                           req->method_name);
        return;
    }
    serve(req, req->path + 7);
}
