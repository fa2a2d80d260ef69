#include "student/tcp_io.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/timing.h"

int dl_tcp_split_addr(const char *addr, char *host, size_t host_cap, int *port, dl_err *err) {
  const char *colon = strrchr(addr, ':');
  const char *h = addr, *h_end = colon;
  if (addr[0] == '[') {  // [v6]:port
    h = addr + 1;
    h_end = strchr(addr, ']');
    if (!h_end || h_end + 1 != colon) h_end = NULL;
  }
  char *end;
  long p = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || !h_end || h_end == h || (size_t)(h_end - h) >= host_cap || *end || end == colon + 1 || p < 1 ||
      p > 65535)
    return dl_fail(err, "'%s' is not HOST:PORT (a name or address, and a TCP port 1-65535)", addr);
  memcpy(host, h, (size_t)(h_end - h));
  host[h_end - h] = 0;
  *port = (int)p;
  return 0;
}

int dl_tcp_listen(int port, dl_err *err) {
  // Dual stack first (IPv6 socket that takes IPv4 too), IPv4 alone where the
  // machine has no IPv6.
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, zero = 0;
  if (fd >= 0) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 64) == 0) return fd;
    close(fd);
  }
  fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return dl_fail(err, "group: socket: %s", strerror(errno));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = INADDR_ANY};
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0) {
    dl_fail(err, "group: cannot listen on port %d: %s", port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int remaining_ms(double deadline) {
  const double left = deadline - dl_now_seconds();
  return left <= 0 ? 0 : left > 1e6 ? 1000000000 : (int)(left * 1000.0) + 1;
}

static void describe(const struct sockaddr *sa, char *out, size_t cap) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  }
  const char *shown = strncmp(host, "::ffff:", 7) == 0 ? host + 7 : host;  // an IPv4 peer on the dual-stack socket
  snprintf(out, cap, "%s:%d", shown, port);
}

int dl_tcp_accept(int listen_fd, double deadline, char *peer, size_t peer_cap, dl_err *err) {
  for (;;) {
    struct pollfd p = {listen_fd, POLLIN, 0};
    const int wait = remaining_ms(deadline);
    if (wait == 0) return dl_fail(err, "timed out");
    int rc = poll(&p, 1, wait);
    if (rc < 0 && errno != EINTR) return dl_fail(err, "group: poll: %s", strerror(errno));
    if (rc <= 0) continue;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept(listen_fd, (struct sockaddr *)&sa, &len);
    if (fd < 0) continue;
    fcntl(fd, F_SETFD, FD_CLOEXEC);  // the peer gave up between poll and accept
    describe((struct sockaddr *)&sa, peer, peer_cap);
    return fd;
  }
}

// connect() on a non-blocking socket, at most timeout_ms.
static int connect_within(const struct addrinfo *ai, int timeout_ms, dl_err *err) {
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return dl_fail(err, "socket: %s", strerror(errno));
  int rc = connect(fd, ai->ai_addr, ai->ai_addrlen), soerr = 0;
  if (rc != 0 && errno == EINPROGRESS) {
    struct pollfd p = {fd, POLLOUT, 0};
    socklen_t len = sizeof soerr;
    rc = poll(&p, 1, timeout_ms);
    if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0) rc = 0;
    else errno = rc == 0 ? ETIMEDOUT : soerr ? soerr : errno, rc = -1;
  }
  if (rc != 0) {
    dl_fail(err, "%s", strerror(errno));
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

int dl_tcp_connect_once(const char *host, int port, dl_err *err) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) return dl_fail(err, "cannot resolve %s: %s", host, gai_strerror(rc));
  int fd = -1;
  for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = connect_within(ai, 2000, err);
  freeaddrinfo(res);
  return fd;
}

void dl_tcp_tune(int fd, int timeout_s) {
  int one = 1, idle = timeout_s / 3 > 1 ? timeout_s / 3 : 1, interval = idle / 3 > 1 ? idle / 3 : 1, count = 3;
  unsigned user_ms = (unsigned)timeout_s * 1000u;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof user_ms);
}

// Waits until fd is ready for `events`, retrying after signals; -1 on timeout.
static int wait_ready(int fd, short events, int timeout_ms) {
  const double deadline = dl_now_seconds() + timeout_ms / 1000.0;
  for (;;) {
    struct pollfd p = {fd, events, 0};
    int rc = poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return 0;
    if (rc == 0) return -1;
    if (errno != EINTR) return -1;
  }
}

int dl_tcp_send_all(int fd, const void *buf, size_t n, int timeout_ms, const char *who, dl_err *err) {
  const char *p = buf;
  while (n > 0) {
    if (wait_ready(fd, POLLOUT, timeout_ms))
      return dl_fail(err, "%s: no progress sending for %d s", who, timeout_ms / 1000);
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) return dl_fail(err, "%s: connection lost while sending (%s)", who, strerror(errno));
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int dl_tcp_recv_all(int fd, void *buf, size_t n, int timeout_ms, const char *who, dl_err *err) {
  char *p = buf;
  while (n > 0) {
    if (wait_ready(fd, POLLIN, timeout_ms))
      return dl_fail(err, "%s: nothing received for %d s", who, timeout_ms / 1000);
    ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k == 0) return dl_fail(err, "%s: closed the connection (the process ended or its machine was lost)", who);
    if (k < 0) return dl_fail(err, "%s: connection lost (%s)", who, strerror(errno));
    p += k;
    n -= (size_t)k;
  }
  return 0;
}
