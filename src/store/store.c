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
 * acknowledge something that is not on disk. */
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/store_backend.h"

/* Bounds one transaction, and with it the memory held by results waiting
 * for the commit and the latency of the first request in a huge backlog. */
#define PASS_MAX 8192

/* How long the queue must stay empty before the thread counts as idle. */
#define IDLE_NS (20 * 1000000L)

typedef struct {
    store_req *head, *tail;
} req_list;

struct store {
    uv_async_t async; /* s is freed in its close callback */
    const struct store_backend_ops *ops;
    void *bk;
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* storage thread waits: work arrived or stop */
    pthread_cond_t idle_cv; /* store_close waits: a pass finished */
    req_list in;            /* submitted, not taken by the thread yet */
    req_list out;           /* committed, not handed to the loop yet */
    bool busy;              /* the thread is running a pass */
    bool stop;

    /* Loop thread only. */
    store_req *delivering; /* completions being handed out right now */
    size_t outstanding;    /* submitted, done not called yet */
    bool closing;

    _Atomic uint64_t commits, writes;
};

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
    atomic_fetch_add_explicit(&s->commits, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->writes, writes, memory_order_relaxed);
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
        n++;
        if (store_op_is_write(r->op))
            writes++;
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

static void *storage_main(void *arg)
{
    store *s = arg;
    /* Named for top -H and perf. */
    pthread_setname_np(pthread_self(), "chatd-store");
    pthread_mutex_lock(&s->mu);
    bool maintained = true;
    for (;;) {
        if (!s->in.head && !s->stop && !maintained) {
            /* A quiet moment is the time for optional housekeeping, but an
             * empty queue right after a pass usually only means the loop is
             * still answering it and about to submit more: wait a little. */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += IDLE_NS;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            int rc = 0;
            while (!s->in.head && !s->stop && rc == 0)
                rc = pthread_cond_timedwait(&s->work_cv, &s->mu, &until);
            if (!s->in.head && !s->stop) {
                pthread_mutex_unlock(&s->mu);
                s->ops->maintain(s->bk, true);
                pthread_mutex_lock(&s->mu);
                maintained = true;
            }
        }
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
        s->busy = true;
        pthread_mutex_unlock(&s->mu);

        run_pass(s, head);

        pthread_mutex_lock(&s->mu);
        list_append(&s->out, head, tail);
        s->busy = false;
        pthread_cond_broadcast(&s->idle_cv);
        /* Thread-safe and coalescing: one wakeup may deliver several passes. */
        uv_async_send(&s->async);
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
    pthread_cond_destroy(&s->idle_cv);
    free(s);
}

store *store_open(uv_loop_t *loop, const char *data_dir, enum store_durability durability,
                  char *err, size_t err_len)
{
    if (!data_dir || !*data_dir)
        data_dir = "./data";
    store *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->ops = &store_sqlite_backend;
    atomic_init(&s->commits, 0);
    atomic_init(&s->writes, 0);
    s->bk = s->ops->open(data_dir, durability, err, err_len);
    if (!s->bk) {
        free(s);
        return NULL;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        s->ops->close(s->bk);
        free(s);
        snprintf(err, err_len, "pthread_mutex_init failed");
        return NULL;
    }
    /* The idle wait measures time, which the wall clock must not bend. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->work_cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&s->idle_cv, NULL);
    int rc = uv_async_init(loop, &s->async, on_async);
    if (rc != 0) {
        s->ops->close(s->bk);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->idle_cv);
        free(s);
        snprintf(err, err_len, "uv_async_init: %s", uv_strerror(rc));
        return NULL;
    }
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async);
    if (pthread_create(&s->thread, NULL, storage_main, s) != 0) {
        s->ops->close(s->bk);
        s->closing = true;
        uv_close((uv_handle_t *)&s->async, on_closed);
        snprintf(err, err_len, "cannot start the storage thread");
        return NULL;
    }
    return s;
}

void store_submit(store *s, store_req *r)
{
    r->next = NULL;
    if (s->outstanding++ == 0)
        uv_ref((uv_handle_t *)&s->async);
    pthread_mutex_lock(&s->mu);
    list_append(&s->in, r, r);
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
}

void store_close(store *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    /* Drain until quiet: a done callback run here may submit more. */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->in.head || s->busy)
            pthread_cond_wait(&s->idle_cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        take_completed(s);
        if (!s->delivering)
            break;
        deliver(s);
    }
    pthread_mutex_lock(&s->mu);
    s->stop = true;
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
    json_decref(r->result);
    free(r);
}

void store_stats(store *s, uint64_t *commits, uint64_t *writes)
{
    if (commits)
        *commits = atomic_load_explicit(&s->commits, memory_order_relaxed);
    if (writes)
        *writes = atomic_load_explicit(&s->writes, memory_order_relaxed);
}
