/* io_uring: connection sockets on one io_uring of the server's own. Part
 * of net/server.c (included there; see io_ops): it works on its queues and
 * helpers directly.
 *
 * Reads: each connection has one receive armed at a time; the kernel picks
 * a buffer from a ring of URING_BUF_COUNT provided buffers, and the
 * completion's handling arms the next receive, which goes to the kernel with
 * the pass's other requests (no read call of ours). A buffer goes back to
 * the ring as soon as its bytes were handed to the protocol (which copies
 * what it keeps). Pausing arms nothing more, so a paused connection takes at
 * most one more buffer (into c->in) and the kernel's buffer fills, as with
 * epoll. (A multishot receive, armed once for a connection's life, drained
 * the whole socket buffer into c->in before a pause took hold: megabytes per
 * connection for a client that pipelines and never reads, which
 * abuse/http_pipelining's RSS bound caught.)
 *
 * Writes: a flush queues one send (one buffer) or writev (several) per
 * connection with data, at most one in flight (CONN_WRITING), and every
 * request of a loop pass (sends, receives, cancels, closes) goes to the
 * kernel in one io_uring_enter at the end of the pass.
 *
 * Completions: the ring runs with IORING_SETUP_DEFER_TASKRUN (the kernel
 * does our requests' work only when we ask for events, in our own context:
 * no interrupts of the loop thread) and signals a registered eventfd when
 * there is work; libuv watches that eventfd. One io_uring_enter that does
 * not wait runs at most 20 pieces of that work (the kernel's limit) and
 * keeps the rest, which the eventfd does not signal again. (Asking for more
 * takes a waiting enter with a zero timeout, whose timer cost 48 us per call
 * in strace -c, most of chatd's CPU at half load.) IORING_SQ_TASKRUN says
 * there is work, but it is set as often by work that just arrived (which
 * the eventfd does signal): spinning on it burns a core at half load. So a
 * round that brought a full batch is followed by more rounds and, still
 * full, by polling without sleeping (the loop is saturated then); a lighter
 * one that leaves the flag set gets a 1 ms timer,
 * so no leftover waits longer than that.
 *
 * Closing: an armed receive or a send in flight still points at the
 * struct: they are cancelled, the fd is closed by a request queued behind
 * the cancels, and the struct is freed (conn_released) only after their
 * last completion. */
#include <liburing.h>
#include <sys/eventfd.h>

#define URING_SQ_ENTRIES 4096
#define URING_CQ_ENTRIES 16384 /* completions a pass may bring; more wait in the kernel */
/* Provided receive buffers: 4 MiB of address space, of which small messages
 * touch only each buffer's first page (1 MiB resident); a fixed cost, not
 * per connection. 1,024 of them showed as 220 bytes "per connection" in the
 * first 19,000 connections' RSS (chatd-bench conns), the pool's first touch;
 * a round of deferred work (at most 20 pieces, each a few buffers) and its
 * reaping, which returns them, never need more than a few dozen. Smaller
 * buffers split more frames across completions, which costs a copy into
 * c->in each: with 4 KiB buffers, echo of 1 KiB messages took 15-25% more
 * server CPU per message than epoll (chatd-bench echo, 1,000 connections,
 * window 4). */
#define URING_BUF_COUNT 256 /* a power of two */
#define URING_BUF_STRIDE 16384
#define URING_BUF_SIZE (URING_BUF_STRIDE - 64) /* room for the NUL on_read may write */
#define URING_WORK_BATCH 20 /* what the kernel runs per io_uring_enter unless waiting */
#define URING_ROUNDS 32     /* rounds of URING_WORK_BATCH per pass */
#define URING_FULL_ROUND (URING_WORK_BATCH / 2) /* completions that mark a round as full */
#define URING_KICK_MS 1
#define URING_BGID 1

/* the low bits of user_data: what a completion is for (conns are 16-aligned) */
enum { URING_OP_RECV = 1, URING_OP_SEND = 2, URING_OP_CANCEL = 3, URING_OP_MASK = 15 };

typedef struct uring_state {
    struct io_uring ring;
    int efd;         /* signalled by the kernel when the ring has work for us */
    uv_poll_t watch; /* libuv's watch on efd */
    uv_idle_t idle;  /* active while full batches come: poll without sleeping */
    uv_timer_t kick; /* 1 ms after a light round that left work flagged */
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned bufs_returned; /* added to the ring since the last advance */
    size_t zombies;         /* closed connections waiting for their last completion */
    int handles_open;       /* freed when every handle's close callback ran */
} uring_state;

static uring_state *uring_of(const server *srv)
{
    return srv->io_state;
}

/* A free submission slot; when the queue is full, what is in it goes to the
 * kernel first. NULL only when even that fails. */
static struct io_uring_sqe *uring_sqe(uring_state *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe && io_uring_submit(&u->ring) >= 0)
        sqe = io_uring_get_sqe(&u->ring);
    return sqe;
}

/* Arms c's receive; -1 (logged) when there is no submission slot. */
static int uring_arm_recv(conn *c)
{
    uring_state *u = uring_of(conn_server(c));
    struct io_uring_sqe *sqe = uring_sqe(u);
    if (!sqe) {
        log_error("io_uring: no submission slot to receive on a connection");
        return -1;
    }
    io_uring_prep_recv(sqe, c->fd, NULL, 0, 0); /* length 0: the buffer's */
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;  /* usually nothing is there yet */
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = URING_BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | URING_OP_RECV);
    c->flags |= CONN_RECV_ARMED;
    return 0;
}

static void uring_cancel(uring_state *u, conn *c, unsigned op)
{
    struct io_uring_sqe *sqe = uring_sqe(u);
    if (!sqe) {
        log_error("io_uring: no submission slot to cancel a request");
        return;
    }
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)c | op, 0);
    io_uring_sqe_set_data64(sqe, URING_OP_CANCEL);
}

/* A closed connection's last request completed: it may be freed. */
static void uring_maybe_released(uring_state *u, conn *c)
{
    if (c->flags & (CONN_RECV_ARMED | CONN_WRITING))
        return;
    u->zombies--;
    conn_released(c);
}

static void uring_return_buf(uring_state *u, unsigned bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * URING_BUF_STRIDE, URING_BUF_SIZE,
                          (unsigned short)bid, io_uring_buf_ring_mask(URING_BUF_COUNT),
                          (int)u->bufs_returned++);
}

static void uring_recv_done(uring_state *u, conn *c, int res, unsigned flags)
{
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        if (!(c->flags & CONN_CLOSING))
            got_bytes(c, u->bufs + (size_t)bid * URING_BUF_STRIDE, (size_t)res);
        uring_return_buf(u, bid); /* the protocol copied what it keeps */
    } else if (res == 0) {        /* EOF */
        /* while paused, what came before the EOF waits in c->in (and a reply
         * may be on its way): the receive ends here unarmed, and resuming
         * arms it again, which meets the EOF again after c->in was handed on */
        if (!(c->flags & (CONN_CLOSING | CONN_READ_PAUSED)))
            conn_close(c);
    } else if (res < 0 && res != -ENOBUFS && res != -ECANCELED) {
        if (!(c->flags & CONN_CLOSING)) {
            log_debug("read failed: %s", strerror(-res));
            conn_close(c);
        }
    }
    c->flags &= ~CONN_RECV_ARMED;
    if (c->flags & CONN_CLOSING)
        uring_maybe_released(u, c);
    else if (!(c->flags & CONN_READ_PAUSED) && uring_arm_recv(c) < 0)
        conn_close(c); /* the next receive (also after ENOBUFS: the buffers are back) */
}

static void uring_send_done(uring_state *u, conn *c, int res)
{
    c->flags &= ~CONN_WRITING;
    if (c->flags & CONN_CLOSING) {
        uring_maybe_released(u, c);
        return;
    }
    outq *q = c->out;
    q->inflight = 0;
    if (res < 0) {
        log_debug("write failed: %s", strerror(-res));
        conn_close(c);
        return;
    }
    outq_consume(q, (size_t)res);
    if (q->head == q->tail)
        queue_drained(c);
    else
        mark_dirty(c); /* the rest (or what came meanwhile) in this pass's flush */
    check_drained(c);
}

/* Takes every completion there is. */
static unsigned uring_reap(server *srv)
{
    uring_state *u = uring_of(srv);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        uint64_t data = cqe->user_data;
        conn *c = (conn *)(uintptr_t)(data & ~(uint64_t)URING_OP_MASK);
        switch (data & URING_OP_MASK) {
        case URING_OP_RECV:
            uring_recv_done(u, c, cqe->res, cqe->flags);
            break;
        case URING_OP_SEND:
            uring_send_done(u, c, cqe->res);
            break;
        default: /* a cancel's or a close's own completion: nothing to do */
            break;
        }
        seen++;
    }
    io_uring_cq_advance(&u->ring, seen);
    if (u->bufs_returned) {
        io_uring_buf_ring_advance(u->br, (int)u->bufs_returned);
        u->bufs_returned = 0;
    }
    return seen;
}

static bool uring_work_left(uring_state *u)
{
    return (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN) != 0;
}

static void uring_idle_cb(uv_idle_t *h)
{
    (void)h; /* only there so that polling does not block: the check phase runs the rest */
}

static void uring_kick_cb(uv_timer_t *t);

/* Has the kernel run up to URING_WORK_BATCH pieces of deferred work (an
 * enter that does not wait) and takes the completions; more rounds while
 * they come in full batches. */
static void uring_run(server *srv)
{
    uring_state *u = uring_of(srv);
    bool full = false;
    for (int round = 0; round < URING_ROUNDS; round++) {
        int r = io_uring_get_events(&u->ring);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY)
            log_error("io_uring: %s", strerror(-r));
        full = uring_reap(srv) >= URING_FULL_ROUND;
        if (!full || !uring_work_left(u))
            break;
    }
    bool spin = full && uring_work_left(u);
    if (spin != (uv_is_active((uv_handle_t *)&u->idle) != 0)) {
        if (spin)
            uv_idle_start(&u->idle, uring_idle_cb);
        else
            uv_idle_stop(&u->idle);
    }
    if (!spin && uring_work_left(u) && !uv_is_active((uv_handle_t *)&u->kick))
        uv_timer_start(&u->kick, uring_kick_cb, URING_KICK_MS, 0);
}

static void uring_kick_cb(uv_timer_t *t)
{
    uring_run(t->data);
}

static void uring_watch_cb(uv_poll_t *w, int status, int events)
{
    (void)events;
    server *srv = w->data;
    uring_state *u = uring_of(srv);
    if (status < 0) {
        log_error("io_uring watch failed: %s", uv_strerror(status));
        return;
    }
    uint64_t count;
    if (read(u->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
        log_debug("io_uring eventfd: %s", strerror(errno)); /* a read resets it to 0 */
    uring_run(srv);
}

static void uring_write(conn *c)
{
    outq *q = c->out;
    uring_state *u = uring_of(conn_server(c));
    size_t n = fill_iov(&q->iov, &q->iov_cap, q, writable_items(c, q));
    struct io_uring_sqe *sqe = n ? uring_sqe(u) : NULL;
    if (!sqe) {
        log_error("io_uring: cannot queue a send; closing the connection");
        conn_close(c);
        return;
    }
    if (n == 1)
        io_uring_prep_send(sqe, c->fd, q->iov[0].iov_base, q->iov[0].iov_len, MSG_NOSIGNAL);
    else
        io_uring_prep_writev(sqe, c->fd, q->iov, (unsigned)n, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | URING_OP_SEND);
    q->inflight = (uint32_t)n; /* kept by conn_drop_pending until it completes */
    c->flags |= CONN_WRITING;
}

static int uring_add(conn *c)
{
    return uring_arm_recv(c); /* -1: accept_one drops the connection */
}

static void uring_resume_read(conn *c)
{
    /* still armed: its completion arms it again now that reads are not paused */
    if (!(c->flags & CONN_RECV_ARMED) && uring_arm_recv(c) < 0)
        conn_close(c);
}

static bool uring_release(conn *c)
{
    uring_state *u = uring_of(conn_server(c));
    if (c->flags & CONN_RECV_ARMED)
        uring_cancel(u, c, URING_OP_RECV);
    if (c->flags & CONN_WRITING)
        uring_cancel(u, c, URING_OP_SEND);
    /* Closed by a request queued behind the cancels, not close(2) now: a
     * send already queued for this fd number must not meet a new file that
     * a thread opened under the same number before this pass's submit. The
     * requests hold the socket until they end, so the peer sees the close
     * once the cancels land. */
    struct io_uring_sqe *sqe = uring_sqe(u);
    if (sqe) {
        io_uring_prep_close(sqe, c->fd);
        io_uring_sqe_set_data64(sqe, URING_OP_CANCEL); /* its completion says nothing */
    } else {
        close(c->fd);
    }
    if (!(c->flags & (CONN_RECV_ARMED | CONN_WRITING)))
        return true;
    u->zombies++;
    return false;
}

static void uring_pass(server *srv)
{
    if (uv_is_active((uv_handle_t *)&uring_of(srv)->idle))
        uring_run(srv); /* what the last pass left */
}

static void uring_submit(server *srv)
{
    uring_state *u = uring_of(srv);
    if (io_uring_sq_ready(&u->ring) == 0)
        return;
    int r = io_uring_submit(&u->ring);
    if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR)
        log_error("io_uring submit: %s", strerror(-r));
}

static void uring_handle_closed(uv_handle_t *h)
{
    uring_state *u = h->data;
    if (--u->handles_open > 0)
        return;
    io_uring_queue_exit(&u->ring);
    close(u->efd);
    free(u->br);
    free(u->bufs);
    free(u);
}

static void uring_close(server *srv)
{
    uring_state *u = uring_of(srv);
    /* the connections' last completions (their cancels), so their structs
     * are freed by the caller's free_closed; bounded, as it runs at exit */
    for (int tries = 0; u->zombies > 0 && tries < 200; tries++) {
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        uring_reap(srv);
    }
    if (u->zombies > 0)
        log_warn("io_uring: %zu closed connections did not finish their requests", u->zombies);
    srv->io_state = NULL;
    u->watch.data = u;
    u->kick.data = u;
    uv_close((uv_handle_t *)&u->watch, uring_handle_closed);
    uv_close((uv_handle_t *)&u->idle, uring_handle_closed);
    uv_close((uv_handle_t *)&u->kick, uring_handle_closed);
}

static int uring_init(server *srv)
{
    uring_state *u = calloc(1, sizeof(*u));
    if (!u)
        return UV_ENOMEM;
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_TASKRUN_FLAG | IORING_SETUP_CQSIZE,
                                .cq_entries = URING_CQ_ENTRIES};
    int r = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &p);
    if (r < 0) {
        free(u);
        return r; /* -errno, as libuv's errors */
    }
    u->efd = -1;
    size_t ring_bytes = URING_BUF_COUNT * sizeof(struct io_uring_buf);
    if (posix_memalign((void **)&u->br, 4096, ring_bytes) != 0 ||
        posix_memalign((void **)&u->bufs, 4096, (size_t)URING_BUF_COUNT * URING_BUF_STRIDE) != 0) {
        r = UV_ENOMEM;
        goto fail;
    }
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)u->br,
                                   .ring_entries = URING_BUF_COUNT,
                                   .bgid = URING_BGID};
    r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0)
        goto fail;
    for (unsigned i = 0; i < URING_BUF_COUNT; i++)
        uring_return_buf(u, i);
    io_uring_buf_ring_advance(u->br, (int)u->bufs_returned);
    u->bufs_returned = 0;
    u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->efd < 0) {
        r = uv_translate_sys_error(errno);
        goto fail;
    }
    r = io_uring_register_eventfd(&u->ring, u->efd);
    if (r < 0)
        goto fail;
    r = uv_poll_init(srv->loop, &u->watch, u->efd);
    if (r < 0)
        goto fail;
    uv_idle_init(srv->loop, &u->idle);
    u->idle.data = u;
    uv_timer_init(srv->loop, &u->kick);
    u->kick.data = srv;
    u->handles_open = 3;
    u->watch.data = srv;
    srv->io_state = u;
    uv_poll_start(&u->watch, UV_READABLE, uring_watch_cb);
    return 0;
fail:
    io_uring_queue_exit(&u->ring);
    if (u->efd >= 0)
        close(u->efd);
    free(u->br);
    free(u->bufs);
    free(u);
    return r;
}

static const io_ops io_uring_ops = {
    .name = "io_uring",
    .init = uring_init,
    .close = uring_close,
    .add = uring_add,
    .write = uring_write,
    .resume_read = uring_resume_read,
    .release = uring_release,
    .pass = uring_pass,
    .submit = uring_submit,
};
