/* chatd-floor: the raw echo floor, a minimal single-threaded epoll TCP echo server with no
 * framing, no parsing and no allocation per message. Whatever one core can echo through it
 * is the ceiling for any server on this machine; `chatd-bench echo --raw` measures it with
 * the same payload sizes and connection counts as the WebSocket scenarios, so chatd's numbers
 * can be read as a fraction of it.
 *
 * Usage: chatd-floor [--listen 127.0.0.1:9000]   (runs until SIGINT/SIGTERM) */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)

/* Bytes read but not yet written back, per connection; only a socket that could not take
 * all of an echo has one. */
typedef struct pending {
    char *buf;
    size_t off, len;
} pending;

static pending *g_pend;
static size_t g_maxfd;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void drop(int ep, int fd)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    free(g_pend[fd].buf);
    g_pend[fd] = (pending){0};
}

/* Writes what is pending; returns 1 when all is written, 0 when the socket is full, -1. */
static int write_pending(int fd)
{
    pending *p = &g_pend[fd];
    while (p->off < p->len) {
        ssize_t n = write(fd, p->buf + p->off, p->len - p->off);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        p->off += (size_t)n;
    }
    p->off = p->len = 0;
    return 1;
}

static void on_readable(int ep, int fd, char *buf)
{
    for (;;) {
        ssize_t n = read(fd, buf, BUF_SIZE);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            drop(ep, fd);
            return;
        }
        if (n < 0)
            return;
        ssize_t w = write(fd, buf, (size_t)n);
        if (w < 0 && errno != EAGAIN) {
            drop(ep, fd);
            return;
        }
        if (w < 0)
            w = 0;
        if (w < n) { /* keep the rest, stop reading until it is out */
            pending *p = &g_pend[fd];
            p->buf = realloc(p->buf, (size_t)(n - w));
            memcpy(p->buf, buf + w, (size_t)(n - w));
            p->off = 0;
            p->len = (size_t)(n - w);
            struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            return;
        }
        if (n < BUF_SIZE)
            return;
    }
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:9000";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_at = argv[++i];
        } else {
            fprintf(stderr, "usage: chatd-floor [--listen HOST:PORT]\n");
            return 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (!colon || (size_t)(colon - listen_at) >= sizeof host) {
        fprintf(stderr, "chatd-floor: --listen wants HOST:PORT\n");
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "chatd-floor: bad address '%s'\n", host);
        return 2;
    }

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    g_maxfd = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (size_t)rl.rlim_cur;
    g_pend = calloc(g_maxfd, sizeof *g_pend);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0) {
        fprintf(stderr, "chatd-floor: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGINT, &act, NULL);
    sigaction(SIGTERM, &act, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "chatd-floor listening on %s\n", listen_at);

    static char buf[BUF_SIZE];
    struct epoll_event evs[512];
    while (!g_stop) {
        int n = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if ((size_t)c >= g_maxfd) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                int r = write_pending(fd);
                if (r < 0) {
                    drop(ep, fd);
                } else if (r > 0) {
                    struct epoll_event rev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &rev);
                }
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                on_readable(ep, fd, buf);
        }
    }
    close(ep);
    close(lfd);
    return 0;
}
