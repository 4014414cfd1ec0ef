/* train/dist_tcp.c — the TCP rendezvous of train/dist.h (dist_tcp_share):
 * rank 0 hands a few bytes (NCCL's 128-byte unique id) to every other rank
 * when no MPI is running to broadcast them.
 *
 * Rank 0 listens on MASTER_PORT on all interfaces (IPv6 dual-stack, or IPv4
 * where IPv6 is off) and serves each connection that greets it with a magic
 * word and a rank it has not served yet, so a port scanner or a stale rank of
 * another job cannot take a slot. The other ranks retry connecting every
 * 200 ms, since rank 0 may start last, until the timeout; every failure names
 * the rank, host and port.
 */
#include "train/dist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

#define TCP_MAGIC 0x52545254u /* "RTRT": a hello so strays cannot take a slot */

static double seconds_left(double deadline) { return deadline - now_seconds(); }

static int poll_ms(double deadline) {
    double left = seconds_left(deadline);
    return left <= 0 ? 0 : left > 1.0 ? 1000 : (int)(left * 1000) + 1;
}

/* Moves exactly len bytes, or fails at the deadline. */
static int io_all(int fd, void *buf, size_t len, int sending, double deadline) {
    char *p = buf;
    while (len > 0) {
        struct pollfd pfd = {fd, (short)(sending ? POLLOUT : POLLIN), 0};
        int pr = poll(&pfd, 1, poll_ms(deadline));
        if (pr < 0 && errno == EINTR) continue;
        if (pr < 0) return -1;
        if (pr == 0) {
            if (seconds_left(deadline) <= 0) {
                errno = ETIMEDOUT;
                return -1;
            }
            continue;
        }
        ssize_t k = sending ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) {
            if (k == 0) errno = ECONNRESET;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

static int tcp_listen(int port, char *why, size_t cap) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero); /* IPv4 too */
        struct sockaddr_in6 a6;
        memset(&a6, 0, sizeof a6);
        a6.sin6_family = AF_INET6;
        a6.sin6_addr = in6addr_any;
        a6.sin6_port = htons((uint16_t)port);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0 && listen(fd, 128) == 0) return fd;
        close(fd);
    }
    fd = socket(AF_INET, SOCK_STREAM, 0); /* no IPv6 here */
    if (fd < 0) {
        snprintf(why, cap, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a4;
    memset(&a4, 0, sizeof a4);
    a4.sin_family = AF_INET;
    a4.sin_addr.s_addr = htonl(INADDR_ANY);
    a4.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&a4, sizeof a4) != 0 || listen(fd, 128) != 0) {
        snprintf(why, cap, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int tcp_serve(const void *buf, size_t bytes, int world, int port, double timeout_s) {
    char why[256];
    int lfd = tcp_listen(port, why, sizeof why);
    if (lfd < 0)
        return err_set("rank 0: cannot listen on TCP port %d (%s); pick a free MASTER_PORT", port,
                       why);
    char *served = xcalloc((size_t)world, 1);
    int n_served = 0;
    double deadline = now_seconds() + timeout_s;
    while (n_served < world - 1 && seconds_left(deadline) > 0) {
        struct pollfd pfd = {lfd, POLLIN, 0};
        int pr = poll(&pfd, 1, poll_ms(deadline));
        if (pr <= 0) continue;
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) continue;
        uint32_t hello[2];
        double conn_deadline = now_seconds() + 10.0;
        if (conn_deadline > deadline) conn_deadline = deadline;
        if (io_all(fd, hello, sizeof hello, 0, conn_deadline) == 0 &&
            ntohl(hello[0]) == TCP_MAGIC) {
            uint32_t rank = ntohl(hello[1]);
            if (rank >= 1 && rank < (uint32_t)world && !served[rank] &&
                io_all(fd, (void *)buf, bytes, 1, conn_deadline) == 0) {
                served[rank] = 1;
                n_served++;
            }
        }
        close(fd);
    }
    close(lfd);
    if (n_served < world - 1) {
        char missing[160] = "";
        size_t used = 0;
        for (int q = 1; q < world && used + 16 < sizeof missing; q++)
            if (!served[q])
                used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d",
                                         used ? " " : "", q);
        free(served);
        return err_set("rank 0: only %d of %d ranks connected to TCP port %d within %.0f s "
                       "(missing: %s%s); check that every rank was started with the same "
                       "MASTER_ADDR/MASTER_PORT",
                       n_served, world - 1, port, timeout_s, missing,
                       used + 16 >= sizeof missing ? " ..." : "");
    }
    free(served);
    return 0;
}

/* One attempt to connect to a resolved address before the deadline. */
static int tcp_connect_one(const struct addrinfo *ai, double deadline) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        struct pollfd pfd = {fd, POLLOUT, 0};
        double step = now_seconds() + 2.0; /* do not wait the whole deadline on one try */
        int pr = poll(&pfd, 1, poll_ms(step < deadline ? step : deadline));
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (pr <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
            close(fd);
            errno = pr == 0 ? ETIMEDOUT : soerr ? soerr : errno;
            return -1;
        }
    }
    return fd;
}

static int tcp_fetch(void *buf, size_t bytes, int rank, const char *addr, int port,
                     double timeout_s) {
    char port_s[16], last[256] = "no attempt";
    snprintf(port_s, sizeof port_s, "%d", port);
    double deadline = now_seconds() + timeout_s;
    do {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int gai = getaddrinfo(addr, port_s, &hints, &res);
        if (gai != 0) {
            snprintf(last, sizeof last, "cannot resolve the host: %s", gai_strerror(gai));
        } else {
            for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
                int fd = tcp_connect_one(ai, deadline);
                if (fd < 0) {
                    snprintf(last, sizeof last, "%s", strerror(errno));
                    continue;
                }
                uint32_t hello[2] = {htonl(TCP_MAGIC), htonl((uint32_t)rank)};
                int ok = io_all(fd, hello, sizeof hello, 1, deadline) == 0 &&
                         io_all(fd, buf, bytes, 0, deadline) == 0;
                if (!ok) snprintf(last, sizeof last, "connected, then %s", strerror(errno));
                close(fd);
                if (ok) {
                    freeaddrinfo(res);
                    return 0;
                }
            }
            freeaddrinfo(res);
        }
        struct timespec pause = {0, 200 * 1000 * 1000}; /* rank 0 may not listen yet */
        if (seconds_left(deadline) > 0.2) nanosleep(&pause, NULL);
    } while (seconds_left(deadline) > 0.2);
    return err_set("rank %d: cannot get the rendezvous data from rank 0 at %s:%d within %.1f s "
                   "(last error: %s); check MASTER_ADDR and MASTER_PORT, that rank 0 is "
                   "running, and that no firewall blocks the port",
                   rank, addr, port, timeout_s, last);
}

int dist_tcp_share(void *buf, size_t bytes, int rank, int world, const char *addr, int port,
                   double timeout_s) {
    if (world <= 1) return 0;
    if (rank == 0) return tcp_serve(buf, bytes, world, port, timeout_s);
    return tcp_fetch(buf, bytes, rank, addr, port, timeout_s);
}
