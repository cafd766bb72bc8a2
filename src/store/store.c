/* store: request queue, storage thread, group commit and completion
 * delivery (see store.h); the database work itself is a backend's
 * (store_backend.h).
 *
 * The loop thread appends requests to `in` under a mutex. The storage thread
 * takes everything queued (up to PASS_MAX), runs it in ONE transaction and
 * commits, so a burst of sends costs one fsync instead of one each; the
 * larger the backlog, the larger the next pass, which is what lets durable
 * throughput grow with load. Only after the commit are the requests moved
 * to `out` and the loop woken with a uv_async_t, so no done callback can
 * acknowledge something that is not on disk.
 *
 * With a backend of several connections (PostgreSQL), read-only requests go
 * to a second queue, `rin`, served by reader threads with a handle each;
 * the writer sees only writes. A backend that cannot reach its database
 * answers STORE_UNAVAILABLE, which store.c passes on for the whole pass
 * (no one-by-one re-run: it would only fail again, slowly). */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/store_backend.h"

/* Bounds one transaction, and with it the memory held by results waiting
 * for the commit and the latency of the first request in a huge backlog. */
#define PASS_MAX 8192

/* How long the queue must stay empty before the thread counts as idle. */
#define IDLE_NS (20 * 1000000L)

/* How long store_close lets a backend with run (PostgreSQL) work through
 * the queue. Each pass is bounded by the backend's answer deadline, but a
 * queue of passes against a server that times out every one would add
 * them up; past this, what is still queued answers STORE_UNAVAILABLE
 * without running, and close waits only for the passes in flight. SQLite
 * (no run) always drains: its passes do not wait on anyone. */
#define CLOSE_DRAIN_MS 6000

typedef struct {
    store_req *head, *tail;
} req_list;

typedef struct reader {
    store *s;
    void *bk;
    pthread_t thread;
    bool started;
} reader;

/* Reads a reader thread takes at once (one pipeline, one round trip). */
#define READ_BATCH 32

struct store {
    uv_async_t async; /* s is freed in its close callback */
    const struct store_backend_ops *ops;
    void *bk; /* the writer's */
    pthread_t thread;
    reader *readers;
    size_t nreaders;
    store_req **batch; /* the writer's pass as an array, for ops->run */

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* storage thread waits: work arrived or stop */
    pthread_cond_t read_cv; /* reader threads wait: reads arrived or stop */
    pthread_cond_t idle_cv; /* store_close waits: a pass finished */
    req_list in;            /* submitted, not taken by the writer yet */
    req_list rin;           /* reads for the reader threads (none: all in `in`) */
    req_list out;           /* committed, not handed to the loop yet */
    int busy;               /* threads running a pass */
    /* An idle writer runs the backend's maintain (idle) this often: the
     * health probe (STORE_PROBE_MS) and the background purge. 0: never. */
    long wake_ms;
    bool stop;
    bool abandon; /* closing took too long: answer what is taken, run nothing */

    /* Loop thread only. */
    store_req *delivering; /* completions being handed out right now */
    size_t outstanding;    /* submitted, done not called yet */
    bool closing;

    _Atomic uint64_t commits, writes;
};

char *store_search_bound(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || (unsigned char)key[n - 1] == 0xff)
        return NULL;
    char *hi = strdup(key);
    if (hi)
        hi[n - 1] = (char)((unsigned char)hi[n - 1] + 1);
    return hi;
}

bool store_op_is_write(store_op op)
{
    switch (op) {
    case STORE_USER_CREATE:
    case STORE_USER_EXTERNAL:
    case STORE_TOKEN_CREATE:
    case STORE_TOKEN_DELETE:
    case STORE_JWT_REVOKE:
    case STORE_MESSAGE_SEND:
    case STORE_READ:
    case STORE_USER_ADMIN:
    case STORE_TOKEN_PURGE:
    case STORE_USER_LAST_SEEN:
    case STORE_USER_SETTINGS:
    case STORE_USER_PASSWORD:
    case STORE_USER_PROFILE:
    case STORE_GROUP_CREATE:
    case STORE_GROUP_ADD:
    case STORE_GROUP_REMOVE:
    case STORE_GROUP_LEAVE:
    case STORE_GROUP_UPDATE:
    case STORE_GROUP_ROLE:
    case STORE_GROUP_DISSOLVE:
    case STORE_GROUP_MUTE:
    case STORE_GROUP_SEND:
    case STORE_GROUP_READ:
    case STORE_MESSAGE_RECALL:
    case STORE_MESSAGE_DELETE:
        return true;
    default:
        return false;
    }
}

static void list_append(req_list *l, store_req *head, store_req *tail)
{
    if (!head)
        return;
    if (l->tail)
        l->tail->next = head;
    else
        l->head = head;
    l->tail = tail;
}

/* A request's outputs go back to "nothing happened" before it runs, because
 * a failed group transaction runs it a second time. */
static void reset_outputs(store_req *r)
{
    json_decref(r->result);
    r->result = NULL;
    r->status = STORE_ERROR;
    r->duplicate = false;
}

static void count_commit(store *s, uint64_t writes)
{
    if (writes == 0)
        return;
    metrics_store_commit(writes);
    atomic_fetch_add_explicit(&s->commits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->writes, writes, memory_order_relaxed);
}

/* Every request of a list answers status, with no result. */
static void fail_all(store_req **reqs, size_t n, int status)
{
    for (size_t i = 0; i < n; i++) {
        reset_outputs(reqs[i]);
        reqs[i]->status = status;
    }
}

/* Runs reqs[0..n) with a backend's run: one transaction, and when it fails
 * (not for unavailability) each request alone. */
static void run_batch(store *s, void *bk, store_req **reqs, size_t n)
{
    size_t writes = 0;
    for (size_t i = 0; i < n; i++) {
        reset_outputs(reqs[i]);
        if (store_op_is_write(reqs[i]->op))
            writes++;
    }
    int rc = s->ops->run(bk, reqs, n);
    if (rc == 0) {
        count_commit(s, writes);
        return;
    }
    if (rc == STORE_UNAVAILABLE || n == 1) {
        fail_all(reqs, n, rc == STORE_UNAVAILABLE ? STORE_UNAVAILABLE : STORE_ERROR);
        return;
    }
    log_warn("store: a transaction of %zu requests failed, retrying them one by one", n);
    for (size_t i = 0; i < n; i++) {
        reset_outputs(reqs[i]);
        rc = s->ops->run(bk, &reqs[i], 1);
        if (rc == 0)
            count_commit(s, store_op_is_write(reqs[i]->op) ? 1 : 0);
        else
            fail_all(&reqs[i], 1, rc == STORE_UNAVAILABLE ? STORE_UNAVAILABLE : STORE_ERROR);
    }
}

/* One request in its own transaction: the fallback after a group failed, so
 * that one bad request (or a transient error) costs only itself. */
static void run_single(store *s, store_req *r)
{
    bool write = store_op_is_write(r->op);
    reset_outputs(r);
    if (s->ops->begin(s->bk, write) != 0) {
        s->ops->rollback(s->bk);
        return;
    }
    s->ops->execute(s->bk, r);
    if (r->status == STORE_ERROR || s->ops->commit(s->bk) != 0) {
        s->ops->rollback(s->bk);
        reset_outputs(r);
        return;
    }
    count_commit(s, write ? 1 : 0);
}

/* Runs one pass: every request in one transaction. Reads run inside it too,
 * in submission order, so a read submitted after a write sees it; their
 * results are only handed out after the commit, like the writes'. */
static void run_pass(store *s, store_req *head)
{
    size_t n = 0, writes = 0;
    for (store_req *r = head; r; r = r->next) {
        if (s->ops->run)
            s->batch[n] = r;
        n++;
        if (store_op_is_write(r->op))
            writes++;
    }
    if (s->ops->run) {
        run_batch(s, s->bk, s->batch, n);
        return;
    }
    if (n == 1) {
        run_single(s, head);
        return;
    }
    if (s->ops->begin(s->bk, writes > 0) == 0) {
        bool ok = true;
        for (store_req *r = head; r && ok; r = r->next) {
            reset_outputs(r);
            s->ops->execute(s->bk, r);
            ok = r->status != STORE_ERROR;
        }
        if (ok && s->ops->commit(s->bk) == 0) {
            count_commit(s, writes);
            return;
        }
    }
    /* Nothing of this pass is committed: retry each request alone, so the
     * others still succeed and exactly the failing ones answer STORE_ERROR. */
    s->ops->rollback(s->bk);
    log_warn("store: a transaction of %zu requests failed, retrying them one by one", n);
    for (store_req *r = head; r; r = r->next)
        run_single(s, r);
}

/* Hands a finished list to the loop. Called with s->mu held. */
static void finish_locked(store *s, store_req *head, store_req *tail)
{
    list_append(&s->out, head, tail);
    s->busy--;
    pthread_cond_broadcast(&s->idle_cv);
    /* Thread-safe and coalescing: one wakeup may deliver several passes. */
    uv_async_send(&s->async);
}

/* A reader thread: takes up to READ_BATCH reads at a time and runs them on
 * its own connection. */
static void *reader_main(void *arg)
{
    reader *rd = arg;
    store *s = rd->s;
    store_req *batch[READ_BATCH];
    pthread_setname_np(pthread_self(), "chatd-read");
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->rin.head && !s->stop)
            pthread_cond_wait(&s->read_cv, &s->mu);
        if (!s->rin.head)
            break;
        store_req *head = s->rin.head, *tail = head;
        size_t n = 1;
        batch[0] = head;
        while (n < READ_BATCH && tail->next) {
            tail = tail->next;
            batch[n++] = tail;
        }
        s->rin.head = tail->next;
        if (!s->rin.head)
            s->rin.tail = NULL;
        tail->next = NULL;
        s->busy++;
        /* more left: wake another reader */
        if (s->rin.head)
            pthread_cond_signal(&s->read_cv);
        bool abandon = s->abandon;
        pthread_mutex_unlock(&s->mu);

        if (abandon)
            fail_all(batch, n, STORE_UNAVAILABLE);
        else
            run_batch(s, rd->bk, batch, n); /* may reorder batch, not the list */

        pthread_mutex_lock(&s->mu);
        finish_locked(s, head, tail);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Whether the writer's connection is down (a backend with healthy). */
static bool writer_down(store *s)
{
    return s->ops->healthy && !s->ops->healthy(s->bk);
}

/* Called with s->mu held and the queue empty: waits up to ns for work or
 * stop; if neither came, runs the backend's idle housekeeping (without the
 * lock) and returns true. False as soon as work is queued or stop is set. */
static bool idle_then_maintain(store *s, long ns)
{
    if (s->in.head || s->stop)
        return false;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ns / 1000000000L;
    until.tv_nsec += ns % 1000000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int rc = 0;
    while (!s->in.head && !s->stop && rc == 0)
        rc = pthread_cond_timedwait(&s->work_cv, &s->mu, &until);
    if (s->in.head || s->stop)
        return false;
    pthread_mutex_unlock(&s->mu);
    s->ops->maintain(s->bk, true);
    pthread_mutex_lock(&s->mu);
    return true;
}

static void *storage_main(void *arg)
{
    store *s = arg;
    /* Named for top -H and perf. */
    pthread_setname_np(pthread_self(), "chatd-store");
    pthread_mutex_lock(&s->mu);
    bool maintained = true;
    for (;;) {
        /* A quiet moment is the time for optional housekeeping, but an
         * empty queue right after a pass usually only means the loop is
         * still answering it and about to submit more: wait a little. */
        if (!maintained && idle_then_maintain(s, IDLE_NS))
            maintained = true;
        /* A backend that can lose its connection is probed now and then
         * while idle, so /healthz notices and it reconnects by itself; and
         * the purge of expired tokens runs on an idle store too. */
        while (s->wake_ms && idle_then_maintain(s, s->wake_ms * 1000000L))
            ;
        while (!s->in.head && !s->stop)
            pthread_cond_wait(&s->work_cv, &s->mu);
        if (!s->in.head)
            break;
        /* Take up to PASS_MAX from the front; the rest waits for the next pass. */
        store_req *head = s->in.head, *tail = head;
        for (size_t n = 1; n < PASS_MAX && tail->next; n++)
            tail = tail->next;
        s->in.head = tail->next;
        if (!s->in.head)
            s->in.tail = NULL;
        tail->next = NULL;
        s->busy++;
        bool abandon = s->abandon;
        pthread_mutex_unlock(&s->mu);
        uint64_t pass_start = uv_hrtime();

        /* run may reorder its array, not the list: answers go out in
         * submission order */
        if (abandon) {
            for (store_req *r = head; r; r = r->next) {
                reset_outputs(r);
                r->status = STORE_UNAVAILABLE;
            }
        } else {
            run_pass(s, head);
        }
        metrics_store_pass(pass_start);

        pthread_mutex_lock(&s->mu);
        finish_locked(s, head, tail);
        pthread_mutex_unlock(&s->mu);

        s->ops->maintain(s->bk, false);
        maintained = false;

        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    /* Closing checkpoints the WAL into the database file: disk work, so it
     * happens here rather than on the loop thread in store_close. */
    s->ops->close(s->bk);
    s->bk = NULL;
    return NULL;
}

/* Calls done for every request in s->delivering. A done callback may submit
 * new requests or even call store_close, which drains s->delivering itself;
 * s stays allocated until the async handle's close callback, so this loop
 * may look at it afterwards. */
static void deliver(store *s)
{
    while (s->delivering) {
        store_req *r = s->delivering;
        s->delivering = r->next;
        r->next = NULL;
        s->outstanding--;
        metrics_store_answered();
        r->done(r);
    }
    /* Keep the loop alive only while answers are owed. */
    if (s->outstanding == 0 && !s->closing)
        uv_unref((uv_handle_t *)&s->async);
}

/* Moves committed requests from the thread's queue to the delivery list,
 * after any still being delivered. Loop thread. */
static void take_completed(store *s)
{
    pthread_mutex_lock(&s->mu);
    store_req *head = s->out.head;
    s->out.head = s->out.tail = NULL;
    pthread_mutex_unlock(&s->mu);
    if (!head)
        return;
    store_req **pp = &s->delivering;
    while (*pp)
        pp = &(*pp)->next;
    *pp = head;
}

static void on_async(uv_async_t *h)
{
    store *s = h->data;
    take_completed(s);
    deliver(s);
}

static void on_closed(uv_handle_t *h)
{
    store *s = h->data;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->read_cv);
    pthread_cond_destroy(&s->idle_cv);
    free(s->readers);
    free(s->batch);
    free(s);
}

bool store_is_postgres(const char *uri)
{
    return uri && (strncmp(uri, "postgres://", 11) == 0 || strncmp(uri, "postgresql://", 13) == 0);
}

/* Stops and joins the reader threads that run, closes every reader handle. */
static void readers_stop(store *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->read_cv);
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < s->nreaders; i++) {
        if (s->readers[i].started)
            pthread_join(s->readers[i].thread, NULL);
        s->readers[i].started = false;
        if (s->readers[i].bk)
            s->ops->close(s->readers[i].bk);
        s->readers[i].bk = NULL;
    }
}

store *store_open_opts(uv_loop_t *loop, const store_options *o, char *err, size_t err_len)
{
    store_options opts = *o;
    if (!opts.data_dir || !*opts.data_dir)
        opts.data_dir = "./data";
    bool pg = store_is_postgres(opts.store);
    if (!pg && opts.store && *opts.store && strcmp(opts.store, "sqlite") != 0) {
        snprintf(err, err_len, "--store must be sqlite or a postgres:// URI");
        return NULL;
    }
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->ops = pg ? &store_pg_backend : &store_sqlite_backend;
    if (pg) {
        s->nreaders = opts.connections > 1 ? (size_t)opts.connections - 1 : 1;
        s->readers = calloc(s->nreaders, sizeof(*s->readers));
        s->batch = calloc(PASS_MAX, sizeof(*s->batch));
        if (!s->readers || !s->batch) {
            free(s->readers);
            free(s->batch);
            free(s);
            snprintf(err, err_len, "out of memory");
            return NULL;
        }
    }
    if (s->ops->healthy)
        s->wake_ms = STORE_PROBE_MS;
    else if (opts.purge_interval_ms >= 0)
        s->wake_ms = opts.purge_interval_ms ? opts.purge_interval_ms : STORE_PURGE_INTERVAL_MS;
    atomic_init(&s->commits, 0);
    atomic_init(&s->writes, 0);
    s->bk = s->ops->open(&opts, true, err, err_len);
    if (!s->bk) {
        free(s->readers);
        free(s->batch);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->nreaders; i++) {
        s->readers[i].s = s;
        s->readers[i].bk = s->ops->open(&opts, false, err, err_len);
        if (!s->readers[i].bk) {
            for (size_t j = 0; j < i; j++)
                s->ops->close(s->readers[j].bk);
            s->ops->close(s->bk);
            free(s->readers);
            free(s->batch);
            free(s);
            return NULL;
        }
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        for (size_t j = 0; j < s->nreaders; j++)
            s->ops->close(s->readers[j].bk);
        s->ops->close(s->bk);
        free(s->readers);
        free(s->batch);
        free(s);
        snprintf(err, err_len, "pthread_mutex_init failed");
        return NULL;
    }
    /* The idle wait measures time, which the wall clock must not bend. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work_cv, &attr);
    pthread_cond_init(&s->idle_cv, &attr); /* store_close's bounded wait */
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&s->read_cv, NULL);
    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc != 0) {
        for (size_t j = 0; j < s->nreaders; j++)
            s->ops->close(s->readers[j].bk);
        s->ops->close(s->bk);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->read_cv);
        pthread_cond_destroy(&s->idle_cv);
        free(s->readers);
        free(s->batch);
        free(s);
        snprintf(err, err_len, "uv_async_init: %s", uv_strerror(rc));
        return NULL;
    }
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async);
    bool started = true;
    for (size_t i = 0; i < s->nreaders && started; i++) {
        started = pthread_create(&s->readers[i].thread, NULL, reader_main, &s->readers[i]) == 0;
        s->readers[i].started = started;
    }
    if (!started || pthread_create(&s->thread, NULL, storage_main, s) != 0) {
        readers_stop(s);
        s->ops->close(s->bk);
        s->closing = true;
        uv_close((uv_handle_t *)&s->async, on_closed);
        snprintf(err, err_len, "cannot start the storage threads");
        return NULL;
    }
    return s;
}

store *store_open(uv_loop_t *loop, const char *data_dir, enum store_durability durability,
                  char *err, size_t err_len)
{
    store_options o = {.store = "sqlite", .data_dir = data_dir, .durability = durability};
    return store_open_opts(loop, &o, err, err_len);
}

int store_health(store *s)
{
    return writer_down(s) ? STORE_UNAVAILABLE : 0;
}

const char *store_backend_name(store *s)
{
    return s->ops->name;
}

void store_submit(store *s, store_req *r)
{
    r->next = NULL;
    metrics_store_submitted();
    if (s->outstanding++ == 0)
        uv_ref((uv_handle_t *)&s->async);
    pthread_mutex_lock(&s->mu);
    if (s->nreaders && !store_op_is_write(r->op)) {
        list_append(&s->rin, r, r);
        pthread_cond_signal(&s->read_cv);
    } else {
        list_append(&s->in, r, r);
        pthread_cond_signal(&s->work_cv);
    }
    pthread_mutex_unlock(&s->mu);
}

void store_close(store *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += CLOSE_DRAIN_MS / 1000;
    until.tv_nsec += (long)(CLOSE_DRAIN_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Drain until quiet: a done callback run here may submit more. */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->in.head || s->rin.head || s->busy) {
            if (s->abandon || !s->ops->run)
                pthread_cond_wait(&s->idle_cv, &s->mu);
            else if (pthread_cond_timedwait(&s->idle_cv, &s->mu, &until) == ETIMEDOUT) {
                log_warn("store: closing: the database did not drain the queue in %d ms,"
                         " the rest answers unavailable",
                         CLOSE_DRAIN_MS);
                s->abandon = true;
            }
        }
        pthread_mutex_unlock(&s->mu);
        take_completed(s);
        if (!s->delivering)
            break;
        deliver(s);
    }
    readers_stop(s); /* sets stop, which ends the writer too */
    pthread_mutex_lock(&s->mu);
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    /* libuv frees nothing itself: s lives until the loop runs the close
     * callback, which is also what makes store_close safe inside deliver. */
    uv_close((uv_handle_t *)&s->async, on_closed);
}

store_req *store_req_new(store_op op, store_done_fn done, void *ctx)
{
    store_req *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->op = op;
    r->done = done;
    r->ctx = ctx;
    r->status = STORE_ERROR;
    return r;
}

int store_req_set_str(char **field, const char *value)
{
    char *copy = NULL;
    if (value) {
        copy = strdup(value);
        if (!copy)
            return -1;
    }
    free(*field);
    *field = copy;
    return 0;
}

void store_req_free(store_req *r)
{
    if (!r)
        return;
    free(r->username);
    free(r->password_hash);
    free(r->userpic);
    free(r->external_id);
    free(r->query);
    free(r->msg_type);
    free(r->msg_data);
    free(r->client_msg_id);
    json_decref(r->cursors);
    json_decref(r->members);
    json_decref(r->message_ids);
    free(r->name);
    free(r->avatar);
    json_decref(r->result);
    free(r);
}

int store_msg_extras(json_t *m, bool recalled, int64_t width, int64_t height)
{
    if (!m)
        return -1;
    if (recalled)
        return json_object_set_new(m, "recalled", json_true());
    if (width > 0 && json_object_set_new(m, "width", json_integer(width)) != 0)
        return -1;
    if (height > 0 && json_object_set_new(m, "height", json_integer(height)) != 0)
        return -1;
    return 0;
}

int store_msg_deleted(json_t *m)
{
    json_object_del(m, "width");
    json_object_del(m, "height");
    if (json_object_set_new(m, "deleted", json_true()) != 0 ||
        json_object_set_new(m, "data", json_string("")) != 0)
        return -1;
    return 0;
}

void store_stats(store *s, uint64_t *commits, uint64_t *writes)
{
    if (commits)
        *commits = atomic_load_explicit(&s->commits, memory_order_relaxed);
    if (writes)
        *writes = atomic_load_explicit(&s->writes, memory_order_relaxed);
}
