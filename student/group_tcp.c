#include "student/group_tcp.h"

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/timing.h"
#include "student/tcp_io.h"

#define MAGIC "DLGROUP1"
#define NAME_MAX_BYTES 200
#define CHUNK_FLOATS ((size_t)1 << 20)  // 4 MiB per message: bounded memory, big enough for throughput

enum { OP_SUM = 1, OP_MAX = 2, OP_BCAST = 3 };

struct dl_group_tcp {
  int rank, world, timeout_ms;
  int *fd;        // rank 0: fd[r] of rank r (fd[0] unused); others: fd[0], rank 0's
  char (*who)[160];  // peers' names for messages
  float *tmp;     // rank 0: one chunk received
};

// Little-endian fields of the hello, the reply and the operation header.
static void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
  return v;
}
static uint64_t get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static dl_group_tcp *group_new(int rank, int world, int timeout_s) {
  dl_group_tcp *g = dl_calloc(1, sizeof *g);
  g->rank = rank;
  g->world = world;
  g->timeout_ms = timeout_s * 1000;
  g->fd = dl_malloc((size_t)world * sizeof *g->fd);
  for (int r = 0; r < world; r++) g->fd[r] = -1;
  g->who = dl_calloc((size_t)world, sizeof *g->who);
  if (rank == 0) g->tmp = dl_malloc(CHUNK_FLOATS * sizeof(float));
  return g;
}

void dl_group_tcp_close(dl_group_tcp *g) {
  if (!g) return;
  for (int r = 0; r < g->world; r++)
    if (g->fd[r] >= 0) close(g->fd[r]);
  free(g->fd);
  free(g->who);
  free(g->tmp);
  free(g);
}

// ------------------------------------------------------------ rendezvous

static void refuse(int fd, const char *why, int timeout_ms) {
  uint8_t head[8];
  const size_t len = strlen(why);
  put_u32(head, 1);
  put_u32(head + 4, (uint32_t)len);
  dl_err ignored;
  if (dl_tcp_send_all(fd, head, sizeof head, timeout_ms, "refused rank", &ignored) == 0)
    dl_tcp_send_all(fd, why, len, timeout_ms, "refused rank", &ignored);
  close(fd);
}

// An existing member's connection is still open (no EOF or error pending).
static int still_connected(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, 0) <= 0) return 1;
  if (p.revents & (POLLHUP | POLLERR)) return 0;
  char c;
  return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
}

// Reads one hello; 0 and the fields, or -1 with what was wrong in `why`.
static int read_hello(int fd, int timeout_ms, const char *peer, dl_group_hello *h, char *name, char *why,
                      size_t why_cap) {
  uint8_t b[28];
  dl_err err;
  if (dl_tcp_recv_all(fd, b, sizeof b, timeout_ms, peer, &err)) return snprintf(why, why_cap, "%s", err.msg), -1;
  if (memcmp(b, MAGIC, 8) != 0)
    return snprintf(why, why_cap, "%s: not a distill student group hello (another program or version)", peer), -1;
  h->rank = (int)get_u32(b + 8);
  h->world = (int)get_u32(b + 12);
  h->recipe_hash = get_u64(b + 16);
  const uint32_t len = get_u32(b + 24);
  if (len > NAME_MAX_BYTES) return snprintf(why, why_cap, "%s: group name of %u bytes", peer, len), -1;
  if (dl_tcp_recv_all(fd, name, len, timeout_ms, peer, &err)) return snprintf(why, why_cap, "%s", err.msg), -1;
  name[len] = 0;
  h->group = name;
  return 0;
}

// Why rank 0 refuses hello h, or "" when it fits.
static void judge(const dl_group_hello *me, const dl_group_hello *h, char *why, size_t cap) {
  why[0] = 0;
  if (h->world != me->world)
    snprintf(why, cap, "rank %d says the group has %d ranks, rank 0 says %d (--world, the StatefulSet's replicas)",
             h->rank, h->world, me->world);
  else if (h->rank < 1 || h->rank >= me->world)
    snprintf(why, cap, "rank %d is not a rank of a %d-rank group (1..%d may join rank 0)", h->rank, me->world,
             me->world - 1);
  else if (strcmp(h->group, me->group) != 0)
    snprintf(why, cap, "rank %d is in group '%s', rank 0 in group '%s' (--group)", h->rank, h->group, me->group);
  else if (h->recipe_hash != me->recipe_hash)
    snprintf(why, cap, "rank %d trains another recipe than rank 0 (recipe text hash %016llx, rank 0 %016llx)",
             h->rank, (unsigned long long)h->recipe_hash, (unsigned long long)me->recipe_hash);
}

static bool stopped(const volatile sig_atomic_t *stop) { return stop && *stop; }

static int host_group(dl_group_tcp *g, int port, const dl_group_hello *me, double deadline,
                      const volatile sig_atomic_t *stop, dl_err *err) {
  int lfd = dl_tcp_listen(port, err);
  if (lfd < 0) return -1;
  int joined = 0, refused = 0;
  while (joined < g->world - 1) {
    char peer[96], name[NAME_MAX_BYTES + 1], why[700];
    const double slice = dl_now_seconds() + 0.5;  // a signal is noticed within half a second
    int fd = dl_tcp_accept(lfd, slice < deadline ? slice : deadline, peer, sizeof peer, err);
    if (fd < 0 && stopped(stop)) {
      close(lfd);
      dl_fail(err, "group: stopped by a signal while %d of %d ranks had joined", joined + 1, g->world);
      return DL_GROUP_STOPPED;
    }
    if (fd < 0 && dl_now_seconds() < deadline) continue;
    if (fd < 0) {
      char missing[200] = "";
      for (int r = 1, n = 0; r < g->world && n < (int)sizeof missing - 12; r++)
        if (g->fd[r] < 0) n += snprintf(missing + n, sizeof missing - (size_t)n, "%s%d", n ? ", " : "", r);
      close(lfd);
      return dl_fail(err, "group: %d of %d ranks joined rank 0 on port %d within %d s (missing rank %s%s)",
                     joined + 1, g->world, port, g->timeout_ms / 1000, missing,
                     refused ? "; some were refused, see above" : "");
    }
    dl_tcp_tune(fd, g->timeout_ms / 1000);
    dl_group_hello h = {0};
    if (read_hello(fd, 10000, peer, &h, name, why, sizeof why) == 0) judge(me, &h, why, sizeof why);
    if (!why[0] && g->fd[h.rank] >= 0 && still_connected(g->fd[h.rank]))
      snprintf(why, sizeof why, "rank %d is already in the group (from %s)", h.rank, g->who[h.rank]);
    if (why[0]) {
      fprintf(stderr, "distill: student: group: refused %s: %s\n", peer, why);
      refuse(fd, why, 2000);
      refused++;
      continue;
    }
    if (g->fd[h.rank] >= 0) close(g->fd[h.rank]);  // a rank that left before the group formed, back again
    else joined++;
    g->fd[h.rank] = fd;
    snprintf(g->who[h.rank], sizeof g->who[h.rank], "rank %d (%s)", h.rank, peer);
  }
  close(lfd);
  uint8_t welcome[8];
  put_u32(welcome, 0);
  put_u32(welcome + 4, 0);
  for (int r = 1; r < g->world; r++)
    if (dl_tcp_send_all(g->fd[r], welcome, sizeof welcome, g->timeout_ms, g->who[r], err))
      return dl_fail_prefix(err, "group");
  return 0;
}

// One attempt of rank r > 0: 1 joined, 0 try again, -1 / DL_GROUP_REFUSED final.
// Waits for rank 0's answer until the deadline: 1 readable, 0 not by then,
// DL_GROUP_STOPPED.
static int await_answer(int fd, double deadline, const volatile sig_atomic_t *stop) {
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 500) > 0) return 1;
    if (stopped(stop)) return DL_GROUP_STOPPED;
    if (dl_now_seconds() >= deadline) return 0;
  }
}

static int try_join(dl_group_tcp *g, const char *host, int port, const dl_group_hello *me, double deadline,
                    const volatile sig_atomic_t *stop, char *last, size_t last_cap, dl_err *err) {
  dl_err e;
  int fd = dl_tcp_connect_once(host, port, &e);
  if (fd < 0) return snprintf(last, last_cap, "%s", e.msg), 0;
  dl_tcp_tune(fd, g->timeout_ms / 1000);
  const size_t len = strlen(me->group);
  uint8_t b[28 + NAME_MAX_BYTES];
  memcpy(b, MAGIC, 8);
  put_u32(b + 8, (uint32_t)me->rank);
  put_u32(b + 12, (uint32_t)me->world);
  put_u64(b + 16, me->recipe_hash);
  put_u32(b + 24, (uint32_t)len);
  memcpy(b + 28, me->group, len);
  uint8_t reply[8];
  int answer = 0;
  if (dl_tcp_send_all(fd, b, 28 + len, 10000, g->who[0], &e) == 0) answer = await_answer(fd, deadline, stop);
  if (answer == DL_GROUP_STOPPED) {
    close(fd);
    dl_fail(err, "group: stopped by a signal while waiting for %s to start the group", g->who[0]);
    return DL_GROUP_STOPPED;
  }
  if (answer == 0) snprintf(e.msg, sizeof e.msg, "%s did not start the group", g->who[0]);
  if (answer == 0 || dl_tcp_recv_all(fd, reply, sizeof reply, 10000, g->who[0], &e)) {
    close(fd);  // rank 0 restarted, or is still waiting for the others when the deadline came
    return snprintf(last, last_cap, "%s", e.msg), 0;
  }
  if (get_u32(reply) != 0) {
    char why[401];
    const uint32_t n = get_u32(reply + 4) < 400 ? get_u32(reply + 4) : 400;
    if (dl_tcp_recv_all(fd, why, n, 2000, g->who[0], &e)) snprintf(why, sizeof why, "(no reason received)");
    else why[n] = 0;
    close(fd);
    dl_fail(err, "group: %s refused this rank: %s", g->who[0], why);
    return DL_GROUP_REFUSED;
  }
  g->fd[0] = fd;
  return 1;
}

dl_group_tcp *dl_group_tcp_join(const char *addr, const dl_group_hello *me, int timeout_s,
                                const volatile sig_atomic_t *stop, int *status, dl_err *err) {
  char host[256];
  int port;
  *status = -1;
  if (dl_tcp_split_addr(addr, host, sizeof host, &port, err)) return (void)dl_fail_prefix(err, "--group-addr"), NULL;
  if (strlen(me->group) > NAME_MAX_BYTES) return dl_fail(err, "group: the name '%s' is too long", me->group), NULL;
  dl_group_tcp *g = group_new(me->rank, me->world, timeout_s);
  const double deadline = dl_now_seconds() + timeout_s;
  int rc = -1;
  if (me->rank == 0) {
    rc = host_group(g, port, me, deadline, stop, err);
  } else {
    snprintf(g->who[0], sizeof g->who[0], "rank 0 (%s)", addr);
    char last[600] = "no attempt";
    while ((rc = try_join(g, host, port, me, deadline, stop, last, sizeof last, err)) == 0 &&
           dl_now_seconds() < deadline && !stopped(stop))
      sleep_ms(500);
    if (rc == 0 && stopped(stop))
      dl_fail(err, "group: stopped by a signal while trying to join %s", g->who[0]), rc = DL_GROUP_STOPPED;
    else if (rc == 0)
      dl_fail(err, "group: could not join %s within %d s (last: %s); is rank 0 running with the same --group-addr port?",
              g->who[0], timeout_s, last), rc = -1;
    else if (rc == 1)
      rc = 0;
  }
  if (rc == 0) {
    *status = 0;
    return g;
  }
  *status = rc == DL_GROUP_REFUSED || rc == DL_GROUP_STOPPED ? rc : -1;
  dl_group_tcp_close(g);
  return NULL;
}

// ------------------------------------------------------------ collectives

static const char *op_name(uint32_t op) {
  return op == OP_SUM ? "a sum" : op == OP_MAX ? "a maximum" : op == OP_BCAST ? "a broadcast" : "an unknown operation";
}

// Every rank announces (op, n); rank 0 checks they are its own.
static int agree(dl_group_tcp *g, uint32_t op, uint64_t n, dl_err *err) {
  uint8_t h[16];
  put_u32(h, op);
  put_u32(h + 4, 0);
  put_u64(h + 8, n);
  if (g->rank != 0) return dl_tcp_send_all(g->fd[0], h, sizeof h, g->timeout_ms, g->who[0], err);
  for (int r = 1; r < g->world; r++) {
    if (dl_tcp_recv_all(g->fd[r], h, sizeof h, g->timeout_ms, g->who[r], err)) return -1;
    if (get_u32(h) != op || get_u64(h + 8) != n)
      return dl_fail(err, "%s is at %s of %llu values, rank 0 at %s of %llu: the ranks fell out of step", g->who[r],
                     op_name(get_u32(h)), (unsigned long long)get_u64(h + 8), op_name(op), (unsigned long long)n);
  }
  return 0;
}

int dl_group_tcp_allreduce(dl_group_tcp *g, float *data, size_t n, dl_reduce_op op, dl_err *err) {
  if (agree(g, op == DL_REDUCE_MAX ? OP_MAX : OP_SUM, n, err)) return dl_fail_prefix(err, "group");
  for (size_t off = 0; off < n; off += CHUNK_FLOATS) {
    const size_t m = n - off < CHUNK_FLOATS ? n - off : CHUNK_FLOATS;
    float *x = data + off;
    if (g->rank != 0) {
      if (dl_tcp_send_all(g->fd[0], x, m * sizeof *x, g->timeout_ms, g->who[0], err) ||
          dl_tcp_recv_all(g->fd[0], x, m * sizeof *x, g->timeout_ms, g->who[0], err))
        return dl_fail_prefix(err, "group");
      continue;
    }
    for (int r = 1; r < g->world; r++) {  // rank order: the same sum on every run
      if (dl_tcp_recv_all(g->fd[r], g->tmp, m * sizeof *x, g->timeout_ms, g->who[r], err))
        return dl_fail_prefix(err, "group");
      if (op == DL_REDUCE_MAX)
        for (size_t i = 0; i < m; i++) x[i] = g->tmp[i] > x[i] ? g->tmp[i] : x[i];
      else
        for (size_t i = 0; i < m; i++) x[i] += g->tmp[i];
    }
    for (int r = 1; r < g->world; r++)
      if (dl_tcp_send_all(g->fd[r], x, m * sizeof *x, g->timeout_ms, g->who[r], err))
        return dl_fail_prefix(err, "group");
  }
  return 0;
}

int dl_group_tcp_broadcast(dl_group_tcp *g, void *data, size_t n, dl_err *err) {
  if (agree(g, OP_BCAST, n, err)) return dl_fail_prefix(err, "group");
  const size_t chunk = CHUNK_FLOATS * sizeof(float);
  for (size_t off = 0; off < n; off += chunk) {
    const size_t m = n - off < chunk ? n - off : chunk;
    char *x = (char *)data + off;
    if (g->rank != 0) {
      if (dl_tcp_recv_all(g->fd[0], x, m, g->timeout_ms, g->who[0], err)) return dl_fail_prefix(err, "group");
      continue;
    }
    for (int r = 1; r < g->world; r++)
      if (dl_tcp_send_all(g->fd[r], x, m, g->timeout_ms, g->who[r], err)) return dl_fail_prefix(err, "group");
  }
  return 0;
}
