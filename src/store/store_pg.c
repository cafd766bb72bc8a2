/* store_pg: the PostgreSQL backend of store (store_backend.h), for
 * deployments where several chatd nodes share one database.
 *
 * One handle = one libpq connection, used by one storage thread (store.c
 * runs a writer handle and --store-connections - 1 reader handles). A pass
 * (store.c's group of requests) is sent in libpq's pipeline mode, every
 * statement prepared once per connection, as one implicit transaction:
 * the statements, then a Sync, which commits. So a pass of N sends costs
 * about one round trip, and nothing is acknowledged before the Sync's
 * answer says the transaction committed. Each write op is ONE statement,
 * most of them a server function created by the migrations (chatd_send,
 * chatd_read, chatd_user_external, ...), so no statement of a pipeline
 * needs the result of another.
 *
 * Sequence (store.h): chatd_send takes the conversation's counter row in
 * `threads` first (its row lock orders the writers of one conversation,
 * also across nodes), only then checks (from_id, client_msg_id) for a
 * stored duplicate, allocates the id with nextval and seq = last_seq + 1.
 * A pass's runs of consecutive sends are executed sorted by conversation,
 * so two nodes' passes lock the rows they share in the same order; the
 * remaining deadlocks (PostgreSQL aborts one pass) end in store.c's
 * one-by-one re-run. The same client_msg_id sent at once to another
 * conversation on another node no longer aborts the pass: chatd_send_batch
 * catches the unique violation and numbers again, and the send answers
 * the other node's message (migration 2).
 *
 * Groups (store.h "Groups", migration 5): every group op is one call of a
 * server function (chatd_group_send, chatd_group_add, ...) answering
 * (o_status, o_result JSON), so they pipeline like the rest and a pass may
 * hold several of one group, run in order in its transaction. A change of
 * a group, a send included, first locks the group's row (chatd_group_lock),
 * which orders the group's writers across nodes; the seq comes from the
 * threads row (0, group id) under that lock, so it stays gapless and in
 * commit order, and a limit like max_members is checked under it. Read
 * and mute touch only the member's row; a pass reading a group on one node
 * while the same user sends to it on another can deadlock, as a 1:1 read
 * and send can: PostgreSQL aborts one pass and store.c re-runs it request
 * by request.
 *
 * Nothing is cached across requests: users, tokens and revoked JWTs are
 * read from the database every time, because another node may change
 * them.
 *
 * Failure: a failed connect or a lost connection answers the pass (and a
 * Sync whose answer never came, i.e. a commit of unknown outcome) with
 * STORE_UNAVAILABLE; the connection is reopened at the next request or
 * health probe, no sooner than a backoff of 100 ms doubling to 2 s.
 * Every wait is bounded: libpq's connect_timeout (2 s) a connect, and
 * ANSWER_TIMEOUT_MS (5 s) the answer of a pass or of a connection's
 * set-up, after which the connection is cancelled and dropped and the
 * pass answers STORE_UNAVAILABLE; the sessions' lock_timeout and
 * statement_timeout end most such waits a little earlier on the server's
 * side (also STORE_UNAVAILABLE, not a one-by-one re-run). Keepalives and
 * the TCP user timeout only notice a server that is gone. Durability: PostgreSQL's commit is
 * what counts; --durability normal sets synchronous_commit = off for the
 * writer's session (a crash of PostgreSQL's machine may lose the last
 * commits, never corrupt), full keeps the server's setting (on by
 * default).
 *
 * This file holds the connection (open, set-up, reconnect with backoff),
 * the pass (pipeline, commit) and the backend's ops table;
 * store_pg_internal.h lists the other files and what they share. */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/store_pg_internal.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* The longest a storage thread waits for PostgreSQL's answer to a pass (or
 * to a connection's set-up): then the pass answers STORE_UNAVAILABLE, the
 * server is asked to cancel and the connection is dropped. A live server
 * that does not answer (a row lock held by a stuck session, a stopped
 * backend) must turn into 503s, not into a writer blocked forever behind
 * which every send waits. The server's own limits sit a little below, so
 * the usual case (a lock wait) ends with PostgreSQL's error, the
 * transaction surely rolled back, before our deadline: lock_timeout first,
 * statement_timeout for everything else. */
#define ANSWER_TIMEOUT_MS 5000
#define LOCK_TIMEOUT_MS 4000
#define STATEMENT_TIMEOUT_MS 4500

typedef struct {
    char *uri;
    enum store_durability durability;
    bool primary;
    PGconn *conn;
    atomic_bool up;      /* read by store_health on the loop thread */
    int backoff_ms;      /* before the next connect attempt after a failure */
    int64_t next_try_ms; /* monotonic; no attempt before */
    bool down_logged;
    int purge_interval_ms; /* < 0: never */
    int64_t next_purge_ms; /* wall clock; 0: at the first maintain */
    bool purge_more;       /* the last purge was a full batch: go on at once */
} pg;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- connection ------------------------------------------------------- */

static void set_up(pg *b, bool up)
{
    atomic_store(&b->up, up);
}

/* Drops the connection; the next attempt waits for the backoff. */
static void conn_lost(pg *b, const char *why)
{
    if (!b->down_logged)
        log_warn("store: PostgreSQL connection%s lost: %s", b->primary ? "" : " (reader)", why);
    b->down_logged = true;
    if (b->conn)
        PQfinish(b->conn);
    b->conn = NULL;
    set_up(b, false);
    b->next_try_ms = now_ms() + b->backoff_ms;
}

/* Waits until the socket can be read or (if want_write) written, or until
 * deadline_ms (monotonic; 0: no deadline). 0 ready, 1 deadline passed, -1
 * error. */
static int wait_socket(PGconn *c, bool want_write, int64_t deadline_ms)
{
    struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN | (want_write ? POLLOUT : 0)};
    int rc;
    do {
        int wait = -1;
        if (deadline_ms) {
            int64_t left = deadline_ms - now_ms();
            if (left <= 0)
                return 1;
            wait = (int)left;
        }
        rc = poll(&pfd, 1, wait);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -1 : rc == 0 ? 1 : 0;
}

/* After a PQsend* on a blocking connection outside pipeline mode: the last
 * result of the command (the caller clears it), or NULL when the connection
 * failed or deadline_ms (0: none) passed first. PQexec would wait forever
 * on a server that accepted the statement and never answers. */
PGresult *pg_await_result(PGconn *c, int64_t deadline_ms)
{
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (wait_socket(c, false, deadline_ms) != 0 || PQconsumeInput(c) != 1) {
                PQclear(last);
                return NULL;
            }
        }
        PGresult *res = PQgetResult(c);
        if (!res)
            return last;
        PQclear(last);
        last = res;
    }
}

/* Runs a statement of constant text outside the pipeline (set-up only),
 * waiting for its answer until deadline_ms (0: no deadline). */
int pg_exec_simple(PGconn *c, const char *sql, int64_t deadline_ms, char *err, size_t err_len)
{
    PGresult *res = PQsendQuery(c, sql) == 1 ? pg_await_result(c, deadline_ms) : NULL;
    ExecStatusType st = PQresultStatus(res);
    int ret = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (ret != 0 && err)
        snprintf(err, err_len, "%s",
                 res || PQstatus(c) == CONNECTION_BAD ? PQerrorMessage(c) : "no answer in time");
    PQclear(res);
    return ret;
}

/* Opens and prepares a connection. 0, or -1 with err. */
static int conn_open(pg *b, bool migrating, char *err, size_t err_len)
{
    /* Ours first, so the URI's own settings win; connect_timeout bounds
     * the connect, keepalives and tcp_user_timeout notice a server that is
     * gone (a live one that does not answer is ANSWER_TIMEOUT_MS's). */
    const char *keys[] = {"connect_timeout",
                          "keepalives_idle",
                          "keepalives_interval",
                          "keepalives_count",
                          "tcp_user_timeout",
                          "fallback_application_name",
                          "dbname",
                          NULL};
    const char *vals[] = {"2", "10", "5", "3", "10000", "chatd", b->uri, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, err_len, "%s", c ? PQerrorMessage(c) : "out of memory");
        /* libpq messages end with a newline */
        size_t l = strlen(err);
        while (l && (err[l - 1] == '\n' || err[l - 1] == ' '))
            err[--l] = '\0';
        PQfinish(c);
        return -1;
    }
    /* Migrations may legitimately take long (and wait for another node's):
     * no deadline and no server timeouts for them; everything after is
     * bounded, so a reconnect cannot hang a storage thread either. */
    char timeouts[96];
    snprintf(timeouts, sizeof(timeouts), "SET lock_timeout = %d; SET statement_timeout = %d",
             LOCK_TIMEOUT_MS, STATEMENT_TIMEOUT_MS);
    int64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;
    if (pg_exec_simple(c, "SET client_min_messages = warning", deadline, err, err_len) != 0 ||
        (b->durability == STORE_DURABLE_NORMAL &&
         pg_exec_simple(c, "SET synchronous_commit = off", deadline, err, err_len) != 0) ||
        (migrating && pg_migrate(c, err, err_len) != 0)) {
        PQfinish(c);
        return -1;
    }
    deadline = now_ms() + ANSWER_TIMEOUT_MS;
    if (pg_exec_simple(c, timeouts, deadline, err, err_len) != 0) {
        PQfinish(c);
        return -1;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        char name[16];
        snprintf(name, sizeof(name), "s%d", i);
        PGresult *res = PQsendPrepare(c, name, pg_stmt_sql[i], 0, NULL) == 1
                            ? pg_await_result(c, deadline)
                            : NULL;
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(err, err_len, "prepare statement %d: %s", i,
                     res || PQstatus(c) == CONNECTION_BAD ? PQerrorMessage(c)
                                                          : "no answer in time");
            PQclear(res);
            PQfinish(c);
            return -1;
        }
        PQclear(res);
    }
    /* Non-blocking: a big pass is written while its first answers are
     * read, or both sides could block on full socket buffers. */
    if (PQenterPipelineMode(c) != 1 || PQsetnonblocking(c, 1) != 0) {
        snprintf(err, err_len, "pipeline mode: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    b->conn = c;
    return 0;
}

/* A connection is usable, (re)connecting when the backoff allows. */
static bool ensure_conn(pg *b)
{
    if (b->conn) {
        /* Between passes nothing may arrive: readable means the server
         * closed the session (a restart's notice, or EOF). Reconnect now
         * rather than fail the next pass on it. */
        struct pollfd pfd = {.fd = PQsocket(b->conn), .events = POLLIN};
        if (poll(&pfd, 1, 0) == 0)
            return true;
        conn_lost(b, "the server closed the connection");
        b->next_try_ms = 0;
    }
    if (now_ms() < b->next_try_ms)
        return false;
    char err[512];
    if (conn_open(b, false, err, sizeof(err)) != 0) {
        if (!b->down_logged)
            log_warn("store: cannot connect to PostgreSQL: %s", err);
        b->down_logged = true;
        b->next_try_ms = now_ms() + b->backoff_ms;
        b->backoff_ms = b->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : b->backoff_ms * 2;
        set_up(b, false);
        return false;
    }
    if (b->down_logged)
        log_info("store: PostgreSQL connection%s back", b->primary ? "" : " (reader)");
    b->down_logged = false;
    b->backoff_ms = BACKOFF_MIN_MS;
    set_up(b, true);
    return true;
}

/* SQLSTATEs that mean the server or the connection, not the request. */
static bool sqlstate_unavailable(const char *st)
{
    if (!st)
        return false;
    return strncmp(st, "08", 2) == 0 ||  /* connection exception */
           strncmp(st, "57P", 3) == 0 || /* admin shutdown, crash shutdown, cannot connect now */
           strncmp(st, "53", 2) == 0 ||  /* insufficient resources */
           strcmp(st, "25006") == 0 ||   /* read-only transaction: a standby after failover */
           /* Our lock_timeout and statement_timeout (or a cancel): the
            * server did not serve the pass in time. Re-running its requests
            * one by one would wait as long again for each. */
           strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0;
}

/* ---- a pass ------------------------------------------------------------ */

/* One statement of a pipeline: the requests [first, first + count) it
 * answers (a run of consecutive sends is one chatd_send_batch call). */
typedef struct {
    size_t first, count;
} slot;

/* Sends reqs[0..n) as one pipeline ending in a Sync (one implicit
 * transaction, committed by the Sync) and reads every answer. Returns 0
 * when the transaction committed (each request's outputs set; STORE_ERROR
 * only for one that could not be sent or answered, which wrote nothing or
 * committed with the rest, so it must not be re-run),
 * STORE_ERROR when a statement failed (the transaction rolled back, the
 * connection is fine), STORE_UNAVAILABLE when the connection failed (the
 * outcome of a Sync not answered is unknown). */
static int pipeline(pg *b, store_req **reqs, size_t n)
{
    PGconn *c = b->conn;
    int64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;
    bool synced = false, fatal = false, lost = false, late = false;
    char errbuf[300] = "";
    int fail_state = STORE_ERROR;
    slot *slots = malloc((n ? n : 1) * sizeof(*slots));
    size_t nslots = 0;
    if (!slots)
        return STORE_ERROR;
    for (size_t i = 0; i < n && !lost;) {
        params p;
        size_t count = 1;
        int rc;
        store_op op = reqs[i]->op;
        if (op == STORE_MESSAGE_SEND || op == STORE_GROUP_SEND) {
            while (i + count < n && reqs[i + count]->op == op)
                count++;
            rc = 0;
            for (size_t k = i; k < i + count; k++)
                if (!reqs[k]->msg_type || !reqs[k]->msg_data)
                    rc = -1;
            if (rc != 0)
                memset(&p, 0, sizeof(p));
            else if (op == STORE_MESSAGE_SEND)
                rc = pg_build_sends(&p, reqs + i, count);
            else
                rc = pg_build_group_sends(&p, reqs + i, count);
        } else {
            rc = pg_build(&p, reqs[i]);
        }
        if (rc == 0) {
            char name[16];
            snprintf(name, sizeof(name), "s%d", (int)p.st);
            if (PQsendQueryPrepared(c, name, p.n, p.val, p.len, p.fmt, 0) != 1)
                lost = true;
            slots[nslots++] = (slot){i, count};
        } else if (rc < 0) {
            /* Not sent: it alone answers STORE_ERROR, the others commit. */
            log_error("store: request %d without its inputs", (int)reqs[i]->op);
            for (size_t k = i; k < i + count; k++)
                reqs[k]->status = STORE_ERROR;
        }
        /* rc 1: answered without the database */
        pg_params_free(&p);
        i += count;
    }
    /* Always sent, even after a failed build: it ends the pipeline. */
    if (!lost && PQpipelineSync(c) != 1)
        lost = true;
    /* Answers: per statement one result and a NULL, then the Sync's. */
    size_t next = 0;
    while (!lost && !synced) {
        int f = PQflush(c);
        if (f < 0) {
            lost = true;
            break;
        }
        while (!lost && !synced && !PQisBusy(c)) {
            PGresult *res = PQgetResult(c);
            if (!res)
                continue; /* the end of one statement's results */
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_PIPELINE_SYNC) {
                synced = true;
            } else if (next >= nslots) {
                lost = true; /* more results than statements: cannot happen */
            } else {
                slot sl = slots[next++];
                if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                    /* An answer that cannot be built (out of memory)
                     * fails its request only: the transaction still
                     * commits, so the pass must not be re-run. */
                    store_op op = reqs[sl.first]->op;
                    bool batch = op == STORE_MESSAGE_SEND || op == STORE_GROUP_SEND;
                    bool rows_ok = !batch || (size_t)PQntuples(res) == sl.count;
                    if (!rows_ok)
                        log_error("store: a send batch: %d rows for %zu sends", PQntuples(res),
                                  sl.count);
                    group_members_seen *seen =
                        op == STORE_GROUP_SEND ? malloc(sl.count * sizeof(*seen)) : NULL;
                    size_t nseen = 0;
                    for (size_t k = 0; k < sl.count; k++) {
                        store_req *r = reqs[sl.first + k];
                        if (!rows_ok || (op == STORE_GROUP_SEND && !seen))
                            r->status = STORE_ERROR;
                        else if (op == STORE_MESSAGE_SEND)
                            r->status = pg_answer_send(r, res, (int)k);
                        else if (op == STORE_GROUP_SEND)
                            r->status = pg_answer_group_send(r, res, (int)k, seen, &nseen);
                        else
                            r->status = pg_answer(r, res);
                        if (r->status == STORE_ERROR)
                            log_error("store: request %d: its answer cannot be built", (int)r->op);
                    }
                    for (size_t k = 0; k < nseen; k++)
                        json_decref(seen[k].ids);
                    free(seen);
                } else if (st != PGRES_PIPELINE_ABORTED) {
                    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                    if (sqlstate_unavailable(state))
                        fail_state = STORE_UNAVAILABLE;
                    if (!errbuf[0])
                        snprintf(errbuf, sizeof(errbuf), "%s (SQLSTATE %s)",
                                 PQresultErrorMessage(res), state ? state : "none");
                    fatal = true;
                } else {
                    fatal = true;
                }
            }
            PQclear(res);
        }
        if (lost || synced)
            break;
        int w = PQstatus(c) == CONNECTION_BAD ? -1 : wait_socket(c, f == 1, deadline);
        late = w == 1;
        if (w != 0 || PQconsumeInput(c) != 1) {
            lost = true;
            break;
        }
    }
    free(slots);
    if (late) {
        /* The outcome is unknown (the Sync may yet commit): every request
         * answers STORE_UNAVAILABLE and a client's retry is idempotent. The
         * cancel frees the locks the pass holds (the server's own timeouts
         * do too, unless its backend is stopped); the connection, in the
         * middle of a pipeline, is dropped. PQcancel has no timeout of its
         * own in libpq 15, but it only connects (bounded by TCP's) and
         * sends the request to the postmaster, which answers at once. */
        PGcancel *cancel = PQgetCancel(c);
        char why[256];
        if (cancel && PQcancel(cancel, why, sizeof(why)) != 1)
            log_warn("store: PostgreSQL cancel: %s", why);
        PQfreeCancel(cancel);
        snprintf(why, sizeof(why), "no answer within %d ms", ANSWER_TIMEOUT_MS);
        conn_lost(b, why);
        return STORE_UNAVAILABLE;
    }
    if (lost || PQstatus(c) == CONNECTION_BAD) {
        conn_lost(b, PQerrorMessage(c));
        return STORE_UNAVAILABLE;
    }
    if (errbuf[0]) {
        /* one line in the log: libpq's message ends with a newline */
        for (char *q = errbuf; *q; q++)
            if (*q == '\n')
                *q = ' ';
        if (fail_state == STORE_UNAVAILABLE)
            conn_lost(b, errbuf);
        else
            log_warn("store: PostgreSQL: %s", errbuf);
    }
    return fatal ? fail_state : 0;
}

static int pg_run(void *p, store_req **reqs, size_t n)
{
    pg *b = p;
    if (!ensure_conn(b))
        return STORE_UNAVAILABLE;
    int rc = pipeline(b, reqs, n);
    if (rc == 0)
        set_up(b, true);
    return rc;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The background purge (store_sqlite.c's purge_maybe): on the writer's
 * connection, one pipeline of one chatd_token_purge call, bounded by
 * STORE_PURGE_BATCH rows a table, so it holds the writer for about one
 * round trip. Every node purges; SKIP LOCKED keeps them apart. */
static void purge_maybe(pg *b)
{
    if (!b->primary || b->purge_interval_ms < 0 || !b->conn)
        return;
    int64_t now = wall_ms();
    if (!b->purge_more && now < b->next_purge_ms)
        return;
    store_req r = {.op = STORE_TOKEN_PURGE, .time = now, .limit = STORE_PURGE_BATCH};
    store_req *rp = &r;
    int64_t tokens = 0, jwts = 0;
    if (pipeline(b, &rp, 1) == 0 && r.status == STORE_OK) {
        tokens = json_integer_value(json_object_get(r.result, "tokens"));
        jwts = json_integer_value(json_object_get(r.result, "jwts"));
        if (tokens || jwts)
            log_debug("store: purged %lld expired tokens, %lld revoked JWTs", (long long)tokens,
                      (long long)jwts);
    }
    json_decref(r.result);
    b->purge_more = tokens >= STORE_PURGE_BATCH || jwts >= STORE_PURGE_BATCH;
    b->next_purge_ms = now + b->purge_interval_ms;
}

static void pg_maintain(void *p, bool idle)
{
    pg *b = p;
    /* A probe when idle: notices a lost connection (for /healthz) and
     * reconnects once the backoff allows. */
    if (idle)
        ensure_conn(b);
    purge_maybe(b);
}

static bool pg_healthy(void *p)
{
    return atomic_load(&((pg *)p)->up);
}

static void pg_close(void *p)
{
    pg *b = p;
    if (!b)
        return;
    if (b->conn)
        PQfinish(b->conn);
    free(b->uri);
    free(b);
}

static void *pg_open(const store_options *o, bool primary, char *err, size_t err_len)
{
    pg *b = calloc(1, sizeof(*b));
    if (!b || !(b->uri = strdup(o->store))) {
        free(b);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    b->durability = o->durability;
    b->primary = primary;
    b->backoff_ms = BACKOFF_MIN_MS;
    b->purge_interval_ms = o->purge_interval_ms ? o->purge_interval_ms : STORE_PURGE_INTERVAL_MS;
    atomic_init(&b->up, false);
    if (conn_open(b, primary, err, err_len) != 0) {
        if (primary) {
            pg_close(b);
            return NULL;
        }
        /* a reader connects later, at its first request */
        log_warn("store: PostgreSQL reader connection: %s", err);
        b->down_logged = true;
        return b;
    }
    set_up(b, true);
    return b;
}

const struct store_backend_ops store_pg_backend = {
    .name = "postgresql",
    .open = pg_open,
    .run = pg_run,
    .maintain = pg_maintain,
    .healthy = pg_healthy,
    .close = pg_close,
};
