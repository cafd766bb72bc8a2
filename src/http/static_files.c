/* static_files: serve the web client from --web-root and the SDK from
 * --sdk-root (see static_files.h). */
#include "http/static_files.h"

#include <zlib.h>

#include <fcntl.h>
#include <http_parser.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "core/log.h"
#include "net/server.h"

#define STATIC_MAX_FILE (16 * 1024 * 1024)

/* What a file's extension says: its Content-Type, whether it is text that
 * gzip shrinks (never PNG, JPEG, GIF, WebP, WOFF: already compressed), and
 * whether it is an image or font, which may be kept fresh for a while (see
 * cache_control). */
static const struct {
    const char *ext;
    const char *type;
    bool compressible;
    bool image;
} content_types[] = {
    {".html", "text/html; charset=utf-8", true, false},
    {".htm", "text/html; charset=utf-8", true, false},
    {".css", "text/css; charset=utf-8", true, false},
    {".js", "text/javascript; charset=utf-8", true, false},
    {".mjs", "text/javascript; charset=utf-8", true, false},
    {".json", "application/json; charset=utf-8", true, false},
    {".map", "application/json; charset=utf-8", true, false},
    {".txt", "text/plain; charset=utf-8", true, false},
    {".md", "text/markdown; charset=utf-8", true, false},
    {".svg", "image/svg+xml", true, true},
    {".png", "image/png", false, true},
    {".jpg", "image/jpeg", false, true},
    {".jpeg", "image/jpeg", false, true},
    {".gif", "image/gif", false, true},
    {".webp", "image/webp", false, true},
    {".ico", "image/x-icon", false, true},
    {".woff2", "font/woff2", false, true},
    {".woff", "font/woff", false, true},
    {".wasm", "application/wasm", true, false},
    {".webmanifest", "application/manifest+json", true, false},
};

static int content_type_index(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++)
            if (strcasecmp(dot, content_types[i].ext) == 0)
                return (int)i;
    return -1;
}

const char *static_content_type(const char *path)
{
    int i = content_type_index(path);
    return i < 0 ? "application/octet-stream" : content_types[i].type;
}

bool static_compressible(const char *path, size_t size)
{
    int i = content_type_index(path);
    return i >= 0 && content_types[i].compressible && size >= STATIC_GZIP_MIN;
}

/* "0", "0.", "0.0".."0.000" is zero; "1", "0.5", "1.000" are not. Anything
 * that is not a qvalue (RFC 9110 12.4.2) counts as zero: identity is always
 * safe to send, a coding the client may not have asked for is not. */
static bool qvalue_positive(const char *v, size_t len)
{
    if (len == 0 || (v[0] != '0' && v[0] != '1'))
        return false;
    if (len > 1 && (v[1] != '.' || len > 5))
        return false;
    bool nonzero = v[0] == '1';
    for (size_t i = 2; i < len; i++) {
        if (v[i] < '0' || v[i] > '9' || (v[0] == '1' && v[i] != '0'))
            return false;
        nonzero |= v[i] != '0';
    }
    return nonzero;
}

static bool token_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

bool static_accepts_gzip(const char *accept_encoding)
{
    if (!accept_encoding)
        return false;
    int gzip = -1, star = -1; /* -1 not named, 0 refused, 1 accepted */
    const char *p = accept_encoding;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *name = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t name_len = (size_t)(p - name);
        bool accepted = true;
        /* parameters: only q matters */
        while (*p && *p != ',') {
            while (*p == ' ' || *p == '\t' || *p == ';')
                p++;
            const char *param = p;
            while (*p && *p != '=' && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            size_t param_len = (size_t)(p - param);
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p != '=')
                continue;
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            const char *val = p;
            while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            if (token_is(param, param_len, "q"))
                accepted = qvalue_positive(val, (size_t)(p - val));
        }
        if (token_is(name, name_len, "gzip") || token_is(name, name_len, "x-gzip"))
            gzip = accepted;
        else if (token_is(name, name_len, "*"))
            star = accepted;
    }
    /* a named gzip decides; otherwise "*" stands for every coding not named */
    return gzip >= 0 ? gzip == 1 : star == 1;
}

/* The gzip variants of text files, kept so that each version of a file is
 * compressed once, on the thread pool, and then served from memory. Keyed by
 * the file's real path, size and mtime: a changed file misses and its old
 * entry is replaced. Bounded: at most GZ_CACHE_MAX_BYTES of compressed bytes
 * (4 MiB; the whole web client is about 30 KiB compressed) and
 * GZ_CACHE_MAX_ENTRIES entries, least recently used evicted first; a variant
 * larger than a quarter of the bound is served but not kept. Loop thread
 * only: the pool compresses a job's own buffers and the entry is inserted on
 * the loop.
 *
 * Why on-the-fly rather than precompressed foo.js.gz files: the web client
 * has no build step, so .gz files would be one more thing to regenerate by
 * hand on every edit (a stale one must never be served), while compressing
 * each version once costs about a millisecond of a pool thread. */
#define GZ_CACHE_MAX_BYTES (4u * 1024 * 1024)
#define GZ_CACHE_MAX_ENTRIES 256u

typedef struct gz_entry {
    struct gz_entry *prev, *next; /* most recently used first */
    char *path;
    size_t size; /* of the file */
    int64_t mtime_sec, mtime_nsec;
    unsigned char *data; /* the gzip member */
    size_t len;
} gz_entry;

static struct {
    gz_entry *head, *tail;
    size_t bytes;
    unsigned count;
} gz_cache;

static void gz_unlink(gz_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        gz_cache.head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        gz_cache.tail = e->prev;
    e->prev = e->next = NULL;
}

static void gz_push_front(gz_entry *e)
{
    e->prev = NULL;
    e->next = gz_cache.head;
    if (gz_cache.head)
        gz_cache.head->prev = e;
    gz_cache.head = e;
    if (!gz_cache.tail)
        gz_cache.tail = e;
}

static void gz_remove(gz_entry *e)
{
    gz_unlink(e);
    gz_cache.bytes -= e->len;
    gz_cache.count--;
    free(e->path);
    free(e->data);
    free(e);
}

static gz_entry *gz_cache_find(const char *path, size_t size, int64_t sec, int64_t nsec)
{
    for (gz_entry *e = gz_cache.head; e; e = e->next) {
        if (strcmp(e->path, path) != 0)
            continue;
        if (e->size != size || e->mtime_sec != sec || e->mtime_nsec != nsec)
            return NULL; /* another version: replaced when the new one is put */
        gz_unlink(e);
        gz_push_front(e);
        return e;
    }
    return NULL;
}

/* Takes data (malloc'd) on success; -1 leaves it to the caller. */
static int gz_cache_put(const char *path, size_t size, int64_t sec, int64_t nsec,
                        unsigned char *data, size_t len)
{
    if (len > GZ_CACHE_MAX_BYTES / 4)
        return -1;
    for (gz_entry *e = gz_cache.head; e; e = e->next)
        if (strcmp(e->path, path) == 0) {
            gz_remove(e); /* an older version, or the same one compressed twice */
            break;
        }
    gz_entry *e = calloc(1, sizeof(*e));
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return -1;
    }
    while (gz_cache.tail &&
           (gz_cache.bytes + len > GZ_CACHE_MAX_BYTES || gz_cache.count >= GZ_CACHE_MAX_ENTRIES))
        gz_remove(gz_cache.tail);
    e->size = size;
    e->mtime_sec = sec;
    e->mtime_nsec = nsec;
    e->data = data;
    e->len = len;
    gz_push_front(e);
    gz_cache.bytes += len;
    gz_cache.count++;
    return 0;
}

/* One gzip member of in (level 6, zlib's default: within a few per cent of
 * level 9 on our files, and quicker for a large file that is not cached).
 * Runs on a pool thread. 0 and *out (malloc'd) / *out_len, or -1. */
static int gzip_compress(const char *in, size_t in_len, unsigned char **out, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&zs, (uLong)in_len);
    unsigned char *buf = malloc(cap);
    if (!buf) {
        deflateEnd(&zs);
        return -1;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)in_len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    int rc = deflate(&zs, Z_FINISH);
    size_t n = cap - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(buf);
        return -1;
    }
    unsigned char *shrunk = realloc(buf, n ? n : 1);
    *out = shrunk ? shrunk : buf;
    *out_len = n;
    return 0;
}

int static_safe_path(const char *raw, char *out, size_t cap)
{
    int n = http_url_decode(raw, strlen(raw), out, cap, false);
    if (n <= 0 || out[0] != '/' || memchr(out, '\0', (size_t)n) != NULL)
        return -1;
    if (strchr(out, '\\'))
        return -1;
    /* reject "." and ".." segments and empty segments ("//") */
    for (const char *seg = out + 1; *seg;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return -1;
        if (len == 0 && end)
            return -1;
        if (!end)
            break;
        seg = end + 1;
    }
    if (out[n - 1] == '/') {
        if ((size_t)n + sizeof("index.html") > cap)
            return -1;
        memcpy(out + n, "index.html", sizeof("index.html"));
    }
    return 0;
}

typedef struct static_job {
    http_request *req;
    static_root root; /* whose real path the file must lie under */
    uv_fs_t fs;
    uv_work_t work; /* gzip on the thread pool */
    uv_file fd;
    char *path;
    char *data;
    size_t size, done;
    time_t mtime;
    int64_t mtime_nsec;
    bool retried_index;
    bool accepts_gzip; /* the request's Accept-Encoding */
    bool vary;         /* the answer depends on Accept-Encoding (static_compressible) */
    bool gzip;         /* the gzip variant is the one answered */
    unsigned char *gz; /* compressed by the pool, not (yet) in the cache */
    size_t gz_len;
} static_job;

static void job_free(static_job *job)
{
    free(job->path);
    free(job->data);
    free(job->gz);
    free(job);
}

static void close_and_free_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    uv_fs_req_cleanup(fs);
    job_free(job);
}

/* Closes the file (if open) off the loop thread, then frees the job. */
static void job_finish(static_job *job)
{
    uv_fs_req_cleanup(&job->fs); /* the last request's path copy and result */
    if (job->fd >= 0) {
        job->fs.data = job;
        if (uv_fs_close(uv_default_loop(), &job->fs, job->fd, close_and_free_cb) == 0)
            return;
    }
    job_free(job);
}

static void http_date(time_t t, char *out, size_t cap)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static bool not_modified(http_request *req, const char *etag, time_t mtime)
{
    const char *inm = http_header(req, "If-None-Match");
    if (inm)
        return strstr(inm, etag) != NULL || strcmp(inm, "*") == 0;
    const char *ims = http_header(req, "If-Modified-Since");
    if (ims) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        if (strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm))
            return timegm(&tm) >= mtime;
    }
    return false;
}

/* Documents and scripts (html, css, js ...) are revalidated on every use
 * (no-cache): module URLs carry no version, so after an update every file
 * must move together. Images and fonts are kept fresh for ten minutes: the
 * page's favicon is fetched by the browser separately from the same file's
 * <img>, after the load, and with no-cache that second fetch went to the
 * server again (a 304) on every page load. */
static const char *cache_control(const char *path)
{
    int i = content_type_index(path);
    return i >= 0 && content_types[i].image ? "max-age=600" : "no-cache";
}

/* The answer's validators and cache headers, for the variant job->gzip
 * names. The gzip variant has its own ETag ("<size>-<mtime>-gz"), so a
 * cache's If-None-Match is checked against the bytes it holds. */
static void variant_headers(const static_job *job, char *etag, size_t etag_cap, char *headers,
                            size_t cap, bool with_encoding)
{
    char date[64];
    snprintf(etag, etag_cap, "\"%zx-%llx%s\"", job->size, (unsigned long long)job->mtime,
             job->gzip ? "-gz" : "");
    http_date(job->mtime, date, sizeof(date));
    snprintf(headers, cap, "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: %s\r\n%s%s", etag, date,
             cache_control(job->path), job->vary ? "Vary: Accept-Encoding\r\n" : "",
             with_encoding && job->gzip ? "Content-Encoding: gzip\r\n" : "");
}

/* Answers 304 when the request's validators match the variant; true if so. */
static bool try_not_modified(static_job *job)
{
    char etag[64], headers[320];
    variant_headers(job, etag, sizeof(etag), headers, sizeof(headers), false);
    if (!not_modified(job->req, etag, job->mtime))
        return false;
    http_respond(job->req, 304, headers, NULL, NULL, 0);
    return true;
}

/* The 200 (or 304) of the variant, with body (len bytes) as its content. */
static void send_file(static_job *job, const void *body, size_t len)
{
    if (try_not_modified(job)) /* still, for a file that changed size while read */
        return;
    char etag[64], headers[320];
    variant_headers(job, etag, sizeof(etag), headers, sizeof(headers), true);
    http_respond(job->req, 200, headers, static_content_type(job->path), body, len);
}

static void gzip_work_cb(uv_work_t *work)
{
    static_job *job = work->data;
    if (gzip_compress(job->data, job->size, &job->gz, &job->gz_len) < 0)
        job->gz = NULL;
}

static void gzip_after_cb(uv_work_t *work, int status)
{
    static_job *job = work->data;
    if (status < 0 || !job->gz) {
        /* not compressed (out of memory): the identity variant is as good */
        free(job->gz);
        job->gz = NULL;
        job->gzip = false;
        send_file(job, job->data, job->size);
        job_finish(job);
        return;
    }
    send_file(job, job->gz, job->gz_len);
    if (gz_cache_put(job->path, job->size, (int64_t)job->mtime, job->mtime_nsec, job->gz,
                     job->gz_len) == 0)
        job->gz = NULL; /* the cache's now */
    job_finish(job);
}

/* The file is read: answer with it, compressing it on the pool first when
 * the gzip variant is wanted. */
static void file_read(static_job *job)
{
    if (!job->gzip) {
        send_file(job, job->data, job->size);
        job_finish(job);
        return;
    }
    job->work.data = job;
    if (uv_queue_work(uv_default_loop(), &job->work, gzip_work_cb, gzip_after_cb) < 0)
        gzip_after_cb(&job->work, -1);
}

static void read_cb(uv_fs_t *fs);
static void start_resolve(static_job *job);

static void read_more(static_job *job)
{
    uv_fs_req_cleanup(&job->fs);
    uv_buf_t buf = uv_buf_init(job->data + job->done, (unsigned)(job->size - job->done));
    if (uv_fs_read(uv_default_loop(), &job->fs, job->fd, &buf, 1, (int64_t)job->done, read_cb) <
        0) {
        http_respond_error(job->req, 500, "internal", "cannot read file");
        job_finish(job);
    }
}

static void read_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    if (fs->result < 0) {
        http_respond_error(job->req, 500, "internal", "cannot read file");
        job_finish(job);
        return;
    }
    job->done += (size_t)fs->result;
    if (fs->result == 0 || job->done == job->size) {
        job->size = job->done; /* a file that shrank meanwhile */
        file_read(job);
        return;
    }
    read_more(job);
}

static void open_cb(uv_fs_t *fs);

static void fstat_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    if (fs->result < 0) {
        http_respond_error(job->req, 500, "internal", "cannot stat file");
        job_finish(job);
        return;
    }
    uv_stat_t st = fs->statbuf;
    if ((st.st_mode & S_IFMT) == S_IFDIR && !job->retried_index) {
        /* a directory: serve its index.html */
        size_t len = strlen(job->path);
        char *p = realloc(job->path, len + sizeof("/index.html"));
        if (!p) {
            http_respond_error(job->req, 500, "internal", "out of memory");
            job_finish(job);
            return;
        }
        memcpy(p + len, "/index.html", sizeof("/index.html"));
        job->path = p;
        job->retried_index = true;
        uv_file fd = job->fd;
        job->fd = -1;
        uv_fs_req_cleanup(&job->fs);
        uv_fs_t closer;
        uv_fs_close(uv_default_loop(), &closer, fd, NULL); /* a directory fd: no disk I/O */
        uv_fs_req_cleanup(&closer);
        start_resolve(job); /* index.html may be a symlink too */
        return;
    }
    if ((st.st_mode & S_IFMT) != S_IFREG) {
        http_respond_error(job->req, 404, "not_found", "no such file");
        job_finish(job);
        return;
    }
    if (st.st_size > STATIC_MAX_FILE) {
        http_respond_error(job->req, 500, "internal", "file too large to serve");
        job_finish(job);
        return;
    }
    job->size = (size_t)st.st_size;
    job->mtime = (time_t)st.st_mtim.tv_sec;
    job->mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
    job->vary = static_compressible(job->path, job->size);
    job->gzip = job->vary && job->accepts_gzip;
    /* what needs no read: a 304, or a gzip variant already compressed */
    if (try_not_modified(job)) {
        job_finish(job);
        return;
    }
    if (job->gzip) {
        gz_entry *e = gz_cache_find(job->path, job->size, (int64_t)job->mtime, job->mtime_nsec);
        if (e) {
            send_file(job, e->data, e->len);
            job_finish(job);
            return;
        }
    }
    job->data = malloc(job->size ? job->size : 1);
    if (!job->data) {
        http_respond_error(job->req, 500, "internal", "out of memory");
        job_finish(job);
        return;
    }
    if (job->size == 0) {
        file_read(job);
        return;
    }
    read_more(job);
}

static void open_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    if (fs->result < 0) {
        http_respond_error(job->req, 404, "not_found", "no such file");
        job_finish(job);
        return;
    }
    job->fd = (uv_file)fs->result;
    uv_fs_req_cleanup(&job->fs);
    if (uv_fs_fstat(uv_default_loop(), &job->fs, job->fd, fstat_cb) < 0) {
        http_respond_error(job->req, 500, "internal", "cannot stat file");
        job_finish(job);
    }
}

/* Each root's directory as configured and its real path, so every file can
 * be checked to lie inside it after symlinks are resolved. */
static struct {
    const char *dir;
    char *real;
    size_t real_len;
} roots[STATIC_ROOT_COUNT];

int static_files_init(static_root root, const char *dir)
{
    static const char *const names[STATIC_ROOT_COUNT] = {"web root (--web-root)",
                                                         "SDK root (--sdk-root)"};
    free(roots[root].real);
    roots[root].dir = dir;
    roots[root].real = realpath(dir, NULL);
    if (!roots[root].real) {
        log_warn("%s %s does not exist: its files will be 404", names[root], dir);
        return -1;
    }
    roots[root].real_len = strlen(roots[root].real);
    return 0;
}

static void realpath_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    const char *real = fs->result == 0 ? fs->ptr : NULL;
    const char *root_real = roots[job->root].real;
    size_t root_real_len = roots[job->root].real_len;
    /* a symlink may point anywhere: what it resolves to must be under the root */
    if (!real || !root_real || strncmp(real, root_real, root_real_len) != 0 ||
        (real[root_real_len] != '/' && real[root_real_len] != '\0')) {
        http_respond_error(job->req, 404, "not_found", "no such file");
        job_finish(job);
        return;
    }
    char *resolved = strdup(real);
    uv_fs_req_cleanup(&job->fs);
    if (!resolved) {
        http_respond_error(job->req, 500, "internal", "out of memory");
        job_finish(job);
        return;
    }
    free(job->path);
    job->path = resolved;
    if (uv_fs_open(uv_default_loop(), &job->fs, job->path, O_RDONLY | O_CLOEXEC, 0, open_cb) < 0) {
        http_respond_error(job->req, 404, "not_found", "no such file");
        job_finish(job);
    }
}

static void start_resolve(static_job *job)
{
    if (uv_fs_realpath(uv_default_loop(), &job->fs, job->path, realpath_cb) < 0) {
        http_respond_error(job->req, 404, "not_found", "no such file");
        job_finish(job);
    }
}

void static_serve(http_request *req, static_root root, const char *path)
{
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "method_not_allowed", "%s is not allowed here",
                           req->method_name);
        return;
    }
    char rel[1024];
    if (static_safe_path(path, rel, sizeof(rel)) < 0) {
        http_respond_error(req, 400, "bad_path", "path is not allowed");
        return;
    }
    const char *dir = roots[root].dir;
    if (!dir) {
        http_respond_error(req, 404, "not_found", "no such file");
        return;
    }
    static_job *job = calloc(1, sizeof(*job));
    size_t len = strlen(dir) + strlen(rel) + 1;
    if (job)
        job->path = malloc(len);
    if (!job || !job->path) {
        free(job);
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    snprintf(job->path, len, "%s%s", dir, rel);
    job->req = req;
    job->root = root;
    job->accepts_gzip = static_accepts_gzip(http_header(req, "Accept-Encoding"));
    job->fd = -1;
    job->fs.data = job;
    start_resolve(job);
}
