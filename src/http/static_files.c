/* static_files: serve the web client from --web-root (see static_files.h). */
#include "http/static_files.h"

#include <fcntl.h>
#include <http_parser.h>
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

static const struct {
    const char *ext;
    const char *type;
} content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".htm", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json; charset=utf-8"},
    {".map", "application/json; charset=utf-8"},
    {".txt", "text/plain; charset=utf-8"},
    {".md", "text/markdown; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
    {".jpeg", "image/jpeg"},
    {".gif", "image/gif"},
    {".webp", "image/webp"},
    {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},
    {".woff", "font/woff"},
    {".wasm", "application/wasm"},
    {".webmanifest", "application/manifest+json"},
};

const char *static_content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++)
            if (strcasecmp(dot, content_types[i].ext) == 0)
                return content_types[i].type;
    return "application/octet-stream";
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
    uv_fs_t fs;
    uv_file fd;
    char *path;
    char *data;
    size_t size, done;
    time_t mtime;
    bool retried_index;
} static_job;

static void job_free(static_job *job)
{
    free(job->path);
    free(job->data);
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

static void send_file(static_job *job)
{
    char etag[64], date[64], headers[256];
    snprintf(etag, sizeof(etag), "\"%zx-%llx\"", job->size, (unsigned long long)job->mtime);
    http_date(job->mtime, date, sizeof(date));
    snprintf(headers, sizeof(headers),
             "ETag: %s\r\nLast-Modified: %s\r\nCache-Control: no-cache\r\n", etag, date);
    const char *type = static_content_type(job->path);
    if (not_modified(job->req, etag, job->mtime))
        http_respond(job->req, 304, headers, NULL, NULL, 0);
    else
        http_respond(job->req, 200, headers, type, job->data, job->size);
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
        send_file(job);
        job_finish(job);
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
    job->data = malloc(job->size ? job->size : 1);
    if (!job->data) {
        http_respond_error(job->req, 500, "internal", "out of memory");
        job_finish(job);
        return;
    }
    if (job->size == 0) {
        send_file(job);
        job_finish(job);
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

/* The web root's real path, so every file can be checked to lie inside it
 * after symlinks are resolved. */
static char *root_real;
static size_t root_real_len;

int static_files_init(const char *web_root)
{
    free(root_real);
    root_real = realpath(web_root, NULL);
    if (!root_real) {
        log_warn("web root %s does not exist: static files will be 404", web_root);
        return -1;
    }
    root_real_len = strlen(root_real);
    return 0;
}

static void realpath_cb(uv_fs_t *fs)
{
    static_job *job = fs->data;
    const char *real = fs->result == 0 ? fs->ptr : NULL;
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

void static_serve(http_request *req, const char *web_root)
{
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "method_not_allowed", "%s is not allowed here",
                           req->method_name);
        return;
    }
    char rel[1024];
    if (static_safe_path(req->path, rel, sizeof(rel)) < 0) {
        http_respond_error(req, 400, "bad_path", "path is not allowed");
        return;
    }
    static_job *job = calloc(1, sizeof(*job));
    size_t len = strlen(web_root) + strlen(rel) + 1;
    if (job)
        job->path = malloc(len);
    if (!job || !job->path) {
        free(job);
        http_respond_error(req, 500, "internal", "out of memory");
        return;
    }
    snprintf(job->path, len, "%s%s", web_root, rel);
    job->req = req;
    job->fd = -1;
    job->fs.data = job;
    start_resolve(job);
}
