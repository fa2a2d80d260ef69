// A student group over plain TCP, for launchers without mpirun (Kubernetes
// StatefulSets): rank 0 listens, the other ranks connect to it (a star).
//
// Rendezvous: each rank r > 0 connects to rank 0's HOST:PORT, retrying until
// the deadline, and says hello: the protocol magic, its rank, the world size,
// the group name and the recipe's hash. Rank 0 refuses a hello that differs
// from its own (or a rank already present and alive) with a reason the
// refused rank prints; when all W - 1 ranks are in it welcomes them all.
//
// Collectives are deterministic: rank 0 receives the ranks' buffers and
// combines them in rank order (((x0 + x1) + x2) + ...), then sends the result
// back, so every rank holds the same bits whatever the message timing; for
// two ranks this equals MPI's sum bit for bit (x0 + x1 = x1 + x0). Buffers
// travel in 4 MiB chunks. Every operation starts with a header (operation,
// length) that rank 0 checks, so ranks that fell out of step are stopped
// with a message instead of summing the wrong buffers.
//
// Any failure (a peer gone, nothing heard for timeout_s seconds) is returned
// as -1 with a message naming the peer; the caller ends the process and the
// launcher restarts the group.
#ifndef DISTILL_STUDENT_GROUP_TCP_H
#define DISTILL_STUDENT_GROUP_TCP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "model/losses.h"

typedef struct dl_group_tcp dl_group_tcp;

typedef struct dl_group_hello {
  int rank, world;
  const char *group;       // the group's name (at most 200 bytes)
  uint64_t recipe_hash;    // of the recipe text: every rank must train the same recipe
} dl_group_hello;

#define DL_GROUP_REFUSED (-2)  // dl_group_tcp_join: the group refused this rank (or rank 0 refused all)
#define DL_GROUP_STOPPED (-3)  // dl_group_tcp_join: *stop was set (SIGTERM) while the group formed

// Forms the group; NULL with a message on failure (*status -1,
// DL_GROUP_REFUSED when the hellos disagree: a configuration error, or
// DL_GROUP_STOPPED). stop (may be NULL) is looked at twice a second.
dl_group_tcp *dl_group_tcp_join(const char *addr, const dl_group_hello *me, int timeout_s,
                                const volatile sig_atomic_t *stop, int *status, dl_err *err);
void dl_group_tcp_close(dl_group_tcp *g);

// Element-wise sum or maximum over the ranks, in place, identical on every rank.
int dl_group_tcp_allreduce(dl_group_tcp *g, float *data, size_t n, dl_reduce_op op, dl_err *err);
// Rank 0's n bytes to every rank (n must be the same on every rank).
int dl_group_tcp_broadcast(dl_group_tcp *g, void *data, size_t n, dl_err *err);

#endif
