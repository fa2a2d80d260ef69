#include "transport/teacher_discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "common/err.h"

static int add_unique(char (*list)[DL_ADDR_MAX], int n, int max, const char *addr) {
  for (int i = 0; i < n; i++)
    if (!strcmp(list[i], addr)) return n;
  if (n == max) return n;
  snprintf(list[n], DL_ADDR_MAX, "%s", addr);
  return n + 1;
}

int dl_resolve_getaddrinfo(const char *name, char (*addrs)[DL_ADDR_MAX], int max, void *ctx, dl_err *err) {
  (void)ctx;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(name, NULL, &hints, &res);
  // "No such name" and "no address" mean no teachers now (a headless Service
  // whose pods are all gone); anything else may pass, so keep what we have.
  if (rc == EAI_NONAME
#ifdef EAI_NODATA
      || rc == EAI_NODATA
#endif
  )
    return 0;
  if (rc != 0) return dl_fail(err, "cannot resolve %s: %s", name, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
  int n = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    char text[DL_ADDR_MAX];
    const void *src = a->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                                               : (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr;
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) && inet_ntop(a->ai_family, src, text, sizeof text))
      n = add_unique(addrs, n, max, text);
  }
  freeaddrinfo(res);
  return n;
}

bool dl_is_dns_spec(const char *spec) { return !strncmp(spec, DL_DNS_PREFIX, strlen(DL_DNS_PREFIX)); }

int dl_dns_parse(const char *spec, char *name, size_t name_size, int *port, dl_err *err) {
  if (!dl_is_dns_spec(spec)) return dl_fail(err, "%s: not a dns:NAME:PORT teacher source", spec);
  const char *body = spec + strlen(DL_DNS_PREFIX), *colon = strrchr(body, ':');
  if (!colon || colon == body) return dl_fail(err, "%s: expected dns:NAME:PORT", spec);
  size_t len = (size_t)(colon - body);
  if (len >= name_size) return dl_fail(err, "%s: name too long", spec);
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || p < 1 || p > 65535) return dl_fail(err, "%s: port must be 1..65535", spec);
  memcpy(name, body, len);
  name[len] = 0;
  *port = (int)p;
  return 0;
}

void dl_endpoint_of(const char *addr, int port, char *out, size_t size) {
  snprintf(out, size, strchr(addr, ':') ? "tcp://[%s]:%d" : "tcp://%s:%d", addr, port);
}

static int cmp_endpoint(const void *a, const void *b) { return strcmp(a, b); }

int dl_discover_once(const char *const *specs, int nspecs, dl_resolve_fn resolve, void *ctx,
                     char (*endpoints)[DL_ENDPOINT_MAX], int *n, dl_err *err) {
  if (!resolve) resolve = dl_resolve_getaddrinfo;
  int count = 0, failed = 0;
  for (int s = 0; s < nspecs; s++) {
    char name[256], addrs[DL_MAX_DISCOVERED][DL_ADDR_MAX];
    int port;
    if (dl_dns_parse(specs[s], name, sizeof name, &port, err)) return -1;
    int got = resolve(name, addrs, DL_MAX_DISCOVERED, ctx, err);
    if (got < 0) {
      failed++;
      continue;
    }
    for (int i = 0; i < got && count < DL_MAX_DISCOVERED; i++) {
      char ep[DL_ENDPOINT_MAX];
      dl_endpoint_of(addrs[i], port, ep, sizeof ep);
      bool seen = false;
      for (int j = 0; j < count; j++) seen |= !strcmp(endpoints[j], ep);
      if (!seen) snprintf(endpoints[count++], DL_ENDPOINT_MAX, "%s", ep);
    }
  }
  qsort(endpoints, (size_t)count, DL_ENDPOINT_MAX, cmp_endpoint);
  *n = count;
  return failed == nspecs && nspecs > 0 ? -1 : 0;
}

struct dl_discovery {
  char **specs;
  int nspecs, interval_ms;
  dl_resolve_fn resolve;
  void *ctx;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t wake;
  bool stopping;
  // The latest set, under mu.
  char endpoints[DL_MAX_DISCOVERED][DL_ENDPOINT_MAX];
  int n;
  uint64_t generation, failures;
};

// Publishes a resolution when it changed the set; a transient failure keeps it.
static void resolve_and_publish(dl_discovery *d) {
  char eps[DL_MAX_DISCOVERED][DL_ENDPOINT_MAX];
  int n = 0;
  dl_err err;
  int rc = dl_discover_once((const char *const *)d->specs, d->nspecs, d->resolve, d->ctx, eps, &n, &err);
  pthread_mutex_lock(&d->mu);
  if (rc < 0) {
    d->failures++;
  } else if (n != d->n || memcmp(eps, d->endpoints, sizeof eps[0] * (size_t)n) || d->generation == 0) {
    memcpy(d->endpoints, eps, sizeof eps[0] * (size_t)n);
    d->n = n;
    d->generation++;
  }
  pthread_mutex_unlock(&d->mu);
}

static void *discovery_main(void *arg) {
  dl_discovery *d = arg;
  pthread_mutex_lock(&d->mu);
  while (!d->stopping) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    long long ns = until.tv_nsec + (long long)d->interval_ms * 1000000LL;
    until.tv_sec += (time_t)(ns / 1000000000LL);
    until.tv_nsec = (long)(ns % 1000000000LL);
    while (!d->stopping && pthread_cond_timedwait(&d->wake, &d->mu, &until) != ETIMEDOUT) {
    }
    if (d->stopping) break;
    pthread_mutex_unlock(&d->mu);
    resolve_and_publish(d);
    pthread_mutex_lock(&d->mu);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

dl_discovery *dl_discovery_start(const char *const *specs, int nspecs, int interval_ms, dl_resolve_fn resolve,
                                 void *ctx, dl_err *err) {
  for (int i = 0; i < nspecs; i++) {
    char name[256];
    int port;
    if (dl_dns_parse(specs[i], name, sizeof name, &port, err)) return NULL;
  }
  if (interval_ms < 1) {
    dl_fail(err, "the resolve interval must be at least 1 ms, got %d", interval_ms);
    return NULL;
  }
  dl_discovery *d = dl_calloc(1, sizeof *d);
  d->specs = dl_calloc((size_t)nspecs, sizeof *d->specs);
  for (int i = 0; i < nspecs; i++) d->specs[i] = strdup(specs[i]);
  d->nspecs = nspecs;
  d->interval_ms = interval_ms;
  d->resolve = resolve ? resolve : dl_resolve_getaddrinfo;
  d->ctx = ctx;
  pthread_mutex_init(&d->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&d->wake, &ca);
  pthread_condattr_destroy(&ca);
  resolve_and_publish(d);
  pthread_create(&d->thread, NULL, discovery_main, d);
  return d;
}

bool dl_discovery_poll(dl_discovery *d, uint64_t *generation, char (*endpoints)[DL_ENDPOINT_MAX], int *n) {
  pthread_mutex_lock(&d->mu);
  bool changed = d->generation != *generation;
  if (changed) {
    memcpy(endpoints, d->endpoints, sizeof d->endpoints[0] * (size_t)d->n);
    *n = d->n;
    *generation = d->generation;
  }
  pthread_mutex_unlock(&d->mu);
  return changed;
}

uint64_t dl_discovery_failures(dl_discovery *d) {
  pthread_mutex_lock(&d->mu);
  uint64_t f = d->failures;
  pthread_mutex_unlock(&d->mu);
  return f;
}

void dl_discovery_stop(dl_discovery *d) {
  if (!d) return;
  pthread_mutex_lock(&d->mu);
  d->stopping = true;
  pthread_cond_signal(&d->wake);
  pthread_mutex_unlock(&d->mu);
  pthread_join(d->thread, NULL);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->wake);
  for (int i = 0; i < d->nspecs; i++) free(d->specs[i]);
  free(d->specs);
  free(d);
}
