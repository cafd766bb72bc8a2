/* io_epoll: connection sockets on an edge-triggered epoll set of the
 * server's own, with read(2) and writev(2). Part of net/server.c (included
 * there; see io_ops): it works on its queues and helpers directly.
 *
 * Every connection is added once, with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET,
 * and never re-armed: a read event reads until the kernel has no more (a
 * short read means none, as data that arrives later brings a new edge), at
 * most READS_PER_EVENT buffers, and the rest is read on the next pass so one
 * flooding peer cannot hold the loop. A write the kernel cuts short leaves
 * the socket flagged to wake us with EPOLLOUT once there is room. libuv
 * watches the set's fd as one uv_poll_t. */

#include <sys/epoll.h>

#define READS_PER_EVENT 4   /* 64 KiB reads per connection per pass before others' turn */
#define EVENTS_PER_WAIT 256 /* epoll_wait batch; a fuller set takes more than one */
#define WAITS_PER_PASS 8    /* ... and at most this many per pass, then timers get a turn */

typedef struct epoll_state {
    int epfd;
    uv_poll_t watch; /* libuv's watch on epfd */
    uv_idle_t idle;  /* active while reads are left over: polling must not block */
    int *read_more;  /* fds of connections to read again on the next pass */
    size_t read_more_len, read_more_cap;
    struct iovec *iov; /* scratch vector for writev */
    size_t iov_cap;
    int handles_open; /* freed when both handles' close callbacks ran */
} epoll_state;

static epoll_state *epoll_of(const server *srv)
{
    return srv->io_state;
}

static void epoll_want_read(conn *c);

/* Reads what the kernel holds for c into the loop's one buffer (reads and
 * their handling run one connection at a time, so one buffer serves all):
 * until a short read, or with `drain` until EAGAIN or EOF (the peer hung
 * up, or an edge may have passed while reads were paused). */
static void epoll_read(conn *c, bool drain)
{
    server *srv = conn_server(c);
    for (int reads = 0; reads < READS_PER_EVENT;) {
        if (c->flags & (CONN_CLOSING | CONN_READ_PAUSED))
            return; /* a resume reads again, draining */
        ssize_t n = read(c->fd, srv->read_buf, srv->read_buf_size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                log_debug("read failed: %s", strerror(errno));
                conn_close(c);
            }
            return;
        }
        if (n == 0) { /* EOF */
            conn_close(c);
            return;
        }
        reads++;
        got_bytes(c, srv->read_buf, (size_t)n);
        if ((size_t)n < srv->read_buf_size && !drain)
            return;
    }
    epoll_want_read(c);
}

static void epoll_idle_cb(uv_idle_t *h)
{
    (void)h; /* only there so that polling does not block: the check phase reads */
}

/* Queues c to be read (draining) in the next pass's check phase. */
static void epoll_want_read(conn *c)
{
    if (c->flags & (CONN_READ_MORE | CONN_CLOSING))
        return;
    epoll_state *ep = epoll_of(conn_server(c));
    if (ep->read_more_len == ep->read_more_cap) {
        size_t cap = ep->read_more_cap ? ep->read_more_cap * 2 : 64;
        int *fds = realloc(ep->read_more, cap * sizeof(*fds));
        if (!fds) {
            conn_close(c);
            return;
        }
        ep->read_more = fds;
        ep->read_more_cap = cap;
    }
    /* by fd, not pointer: a connection that closes meanwhile is simply not
     * found (or its fd's new connection lacks CONN_READ_MORE) */
    ep->read_more[ep->read_more_len++] = c->fd;
    c->flags |= CONN_READ_MORE;
    if (!uv_is_active((uv_handle_t *)&ep->idle))
        uv_idle_start(&ep->idle, epoll_idle_cb);
}

/* Reads the connections queued before this pass; those they queue again
 * wait for the next one. */
static void epoll_pass(server *srv)
{
    epoll_state *ep = epoll_of(srv);
    size_t n = ep->read_more_len;
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        int fd = ep->read_more[i];
        conn *c = (size_t)fd < srv->by_fd_cap ? srv->by_fd[fd] : NULL;
        if (!c || !(c->flags & CONN_READ_MORE))
            continue;
        c->flags &= ~CONN_READ_MORE;
        epoll_read(c, true);
    }
    memmove(ep->read_more, ep->read_more + n, (ep->read_more_len - n) * sizeof(int));
    ep->read_more_len -= n;
    if (ep->read_more_len == 0)
        uv_idle_stop(&ep->idle);
}

/* One epoll event of c. */
static void epoll_event(conn *c, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        if (!(c->flags & CONN_READ_PAUSED))
            epoll_read(c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        else if (events & EPOLLERR) /* reset: the paused input is lost anyway */
            conn_close(c);
    }
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && (c->flags & CONN_WRITING) &&
        !(c->flags & CONN_CLOSING)) {
        c->flags &= ~CONN_WRITING;
        mark_dirty(c); /* written in this pass's flush, with whatever else came */
    }
}

/* libuv says the epoll set has events: take them, a batch at a time. */
static void epoll_watch_cb(uv_poll_t *w, int status, int events)
{
    (void)events;
    server *srv = w->data;
    if (status < 0) {
        log_error("epoll watch failed: %s", uv_strerror(status));
        return;
    }
    struct epoll_event evs[EVENTS_PER_WAIT];
    for (int waits = 0; waits < WAITS_PER_PASS; waits++) {
        int n = epoll_wait(epoll_of(srv)->epfd, evs, EVENTS_PER_WAIT, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_error("epoll_wait: %s", strerror(errno));
            return;
        }
        /* a connection closed by an earlier event of the batch is freed
         * only in the check phase, so its pointer is still good here */
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (!(c->flags & CONN_CLOSING))
                epoll_event(c, evs[i].events);
        }
        if (n < EVENTS_PER_WAIT)
            return;
    }
}

/* Writes in vectored writes until the kernel takes less than offered; the
 * rest waits for the EPOLLOUT edge (CONN_WRITING). */
static void epoll_write(conn *c)
{
    outq *q = c->out;
    epoll_state *ep = epoll_of(conn_server(c));
    while (writable_items(c, q) > 0) {
        size_t n = fill_iov(&ep->iov, &ep->iov_cap, q, writable_items(c, q));
        if (n == 0) { /* no memory for the vector */
            conn_close(c);
            return;
        }
        size_t offered = 0;
        for (size_t i = 0; i < n; i++)
            offered += ep->iov[i].iov_len;
        ssize_t r = writev(c->fd, ep->iov, (int)n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->flags |= CONN_WRITING;
                return;
            }
            log_debug("write failed: %s", strerror(errno));
            conn_close(c);
            return;
        }
        outq_consume(q, (size_t)r);
        if ((size_t)r < offered) { /* the socket buffer is full */
            c->flags |= CONN_WRITING;
            return;
        }
    }
    if (q->head == q->tail)
        queue_drained(c);
}

static int epoll_add(conn *c)
{
    /* edge-triggered, reads and writes, once for the connection's life: the
     * set reports input that is already there when it is added */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
    return epoll_ctl(epoll_of(conn_server(c))->epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void epoll_resume_read(conn *c)
{
    epoll_want_read(c);
}

static bool epoll_release(conn *c)
{
    /* close(2) also takes the fd out of the set; an event for it already
     * fetched in this batch finds CONN_CLOSING and is skipped */
    close(c->fd);
    return true;
}

static void epoll_submit(server *srv)
{
    (void)srv; /* every write went out when it was made */
}

static void epoll_handle_closed(uv_handle_t *h)
{
    epoll_state *ep = h->data;
    if (--ep->handles_open > 0)
        return;
    close(ep->epfd);
    free(ep->read_more);
    free(ep->iov);
    free(ep);
}

static void epoll_close(server *srv)
{
    epoll_state *ep = epoll_of(srv);
    srv->io_state = NULL;
    ep->watch.data = ep;
    uv_close((uv_handle_t *)&ep->idle, epoll_handle_closed);
    uv_close((uv_handle_t *)&ep->watch, epoll_handle_closed);
}

static int epoll_init(server *srv)
{
    epoll_state *ep = calloc(1, sizeof(*ep));
    if (!ep)
        return UV_ENOMEM;
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0) {
        int r = uv_translate_sys_error(errno);
        free(ep);
        return r;
    }
    int r = uv_poll_init(srv->loop, &ep->watch, ep->epfd);
    if (r < 0) {
        close(ep->epfd);
        free(ep);
        return r;
    }
    uv_idle_init(srv->loop, &ep->idle);
    ep->watch.data = srv;
    ep->idle.data = ep;
    ep->handles_open = 2;
    srv->io_state = ep;
    uv_poll_start(&ep->watch, UV_READABLE, epoll_watch_cb);
    return 0;
}

static const io_ops io_epoll = {
    .name = "epoll",
    .init = epoll_init,
    .close = epoll_close,
    .add = epoll_add,
    .write = epoll_write,
    .resume_read = epoll_resume_read,
    .release = epoll_release,
    .pass = epoll_pass,
    .submit = epoll_submit,
};
