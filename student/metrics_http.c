#include "student/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dl_metrics_http {
  int fd;
  pthread_t thread;
  pthread_mutex_t lock;
  char *text;
  atomic_int stop;
};

static void answer(dl_metrics_http *h, int c) {
  // Read what the request sends at once (a scraper's GET fits); the answer
  // is the same for any path.
  char req[2048];
  struct pollfd p = {c, POLLIN, 0};
  if (poll(&p, 1, 1000) > 0 && recv(c, req, sizeof req, 0) < 0) return;
  pthread_mutex_lock(&h->lock);
  char *body = strdup(h->text ? h->text : "");
  pthread_mutex_unlock(&h->lock);
  char head[160];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n\r\n",
                   strlen(body));
  if (send(c, head, (size_t)n, MSG_NOSIGNAL) == n) send(c, body, strlen(body), MSG_NOSIGNAL);
  free(body);
}

static void *serve(void *arg) {
  dl_metrics_http *h = arg;
  while (!atomic_load(&h->stop)) {
    struct pollfd p = {h->fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    int c = accept(h->fd, NULL, NULL);
    if (c < 0) continue;
    answer(h, c);
    close(c);
  }
  return NULL;
}

dl_metrics_http *dl_metrics_http_start(const char *addr, int port, dl_err *err) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (port < 1 || port > 65535 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    dl_fail(err, "metrics endpoint: bad address %s:%d", addr, port);
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
    dl_fail(err, "metrics endpoint: cannot listen on %s:%d (%s)", addr, port, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  dl_metrics_http *h = dl_calloc(1, sizeof *h);
  h->fd = fd;
  pthread_mutex_init(&h->lock, NULL);
  if (pthread_create(&h->thread, NULL, serve, h) != 0) {
    close(fd);
    free(h);
    dl_fail(err, "metrics endpoint: cannot start its thread");
    return NULL;
  }
  return h;
}

void dl_metrics_http_publish(dl_metrics_http *h, const char *text) {
  char *copy = strdup(text);
  pthread_mutex_lock(&h->lock);
  char *old = h->text;
  h->text = copy;
  pthread_mutex_unlock(&h->lock);
  free(old);
}

void dl_metrics_http_stop(dl_metrics_http *h) {
  if (!h) return;
  atomic_store(&h->stop, 1);
  pthread_join(h->thread, NULL);
  close(h->fd);
  pthread_mutex_destroy(&h->lock);
  free(h->text);
  free(h);
}
