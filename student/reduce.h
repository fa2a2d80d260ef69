// The one interface through which a data-parallel student group shares
// sums: the gradients (averaged), the Sinkhorn-Knopp and centering sums, the
// reported losses and the stop decision, and rank 0's checkpoint at resume.
// Two backends on the CPU: MPI (Open MPI from Debian) when the process was
// started by mpirun or srun, and plain TCP (student/group_tcp.h) when the
// ranks are started separately and meet at rank 0's --group-addr (Kubernetes).
// The CUDA backend will back the same calls with NCCL. A process with
// neither is a group of one.
#ifndef DISTILL_STUDENT_REDUCE_H
#define DISTILL_STUDENT_REDUCE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "model/losses.h"
#include "student/group_tcp.h"

typedef struct dl_group {
  int rank, world;
  bool mpi;           // MPI was initialized (and must be finalized)
  dl_group_tcp *tcp;  // the TCP backend, when joined with dl_group_join_tcp
} dl_group;

// Joins the group mpirun started (MPI_Init), or makes a group of one.
// -1 when mpirun started this process but the build has no MPI.
int dl_group_init(dl_group *g, dl_err *err);
// Makes g (a group of one from dl_group_init) rank me->rank of a TCP group
// of me->world ranks meeting at addr; 0, -1, DL_GROUP_REFUSED or
// DL_GROUP_STOPPED when *stop was set meanwhile (see group_tcp.h).
int dl_group_join_tcp(dl_group *g, const char *addr, const dl_group_hello *me, int timeout_s,
                      const volatile sig_atomic_t *stop, dl_err *err);
void dl_group_finalize(dl_group *g);

// The callback for dl_train_config.reduce: element-wise sum or maximum over
// the group's ranks, in place. A failed reduction (a rank gone) cannot be
// trained past: it prints the reason and ends the process with status 1,
// for the launcher to restart the group.
dl_reduce dl_group_reduce(dl_group *g);

// Rank 0's n bytes to every rank; 0, or -1 with a message.
int dl_group_broadcast(dl_group *g, void *data, size_t n, dl_err *err);

// True when the process was started by a launcher (mpirun, srun with PMI or PMIx).
bool dl_group_launched(void);

#endif
