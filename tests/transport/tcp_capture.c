#include "tests/transport/tcp_capture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/err.h"

struct tcp_capture {
  int listen_fd, server_port;
  char endpoint[64];
  uint8_t *buf;
  size_t n, cap;
  atomic_bool stop;
  pthread_t thread;
};

static void record(tcp_capture *c, const uint8_t *p, size_t n) {
  if (c->n + n > c->cap) {
    c->cap = (c->n + n) * 2;
    c->buf = realloc(c->buf, c->cap);
    if (!c->buf) abort();
  }
  memcpy(c->buf + c->n, p, n);
  c->n += n;
}

static int connect_server(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Copies both ways until either side closes or the capture stops.
static void pump(tcp_capture *c, int client, int server) {
  uint8_t chunk[65536];
  while (!atomic_load(&c->stop)) {
    struct pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    if (poll(p, 2, 50) <= 0) continue;
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t got = read(p[i].fd, chunk, sizeof chunk);
      if (got <= 0) return;
      if (i == 1) record(c, chunk, (size_t)got);
      int to = i == 0 ? server : client;
      for (ssize_t off = 0; off < got;) {
        ssize_t w = send(to, chunk + off, (size_t)(got - off), MSG_NOSIGNAL);  // no SIGPIPE
        if (w <= 0) return;
        off += w;
      }
    }
  }
}

static void *capture_main(void *arg) {
  tcp_capture *c = arg;
  while (!atomic_load(&c->stop)) {
    struct pollfd p = {c->listen_fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int client = accept(c->listen_fd, NULL, NULL);
    if (client < 0) continue;
    int server = connect_server(c->server_port);
    if (server >= 0) {
      pump(c, client, server);
      close(server);
    }
    close(client);
  }
  return NULL;
}

tcp_capture *tcp_capture_start(int server_port) {
  tcp_capture *c = dl_calloc(1, sizeof *c);
  c->server_port = server_port;
  c->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  socklen_t len = sizeof a;
  if (bind(c->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(c->listen_fd, 4) != 0 ||
      getsockname(c->listen_fd, (struct sockaddr *)&a, &len) != 0) {
    close(c->listen_fd);
    free(c);
    return NULL;
  }
  snprintf(c->endpoint, sizeof c->endpoint, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
  pthread_create(&c->thread, NULL, capture_main, c);
  return c;
}

const char *tcp_capture_endpoint(const tcp_capture *c) { return c->endpoint; }

void tcp_capture_stop(tcp_capture *c, uint8_t **bytes, size_t *n) {
  atomic_store(&c->stop, true);
  pthread_join(c->thread, NULL);
  close(c->listen_fd);
  *bytes = c->buf;
  *n = c->n;
  free(c);
}
