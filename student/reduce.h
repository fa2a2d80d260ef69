// The one interface through which a data-parallel student group shares
// sums: the gradients (averaged), the Sinkhorn-Knopp and centering sums, the
// reported losses and the stop decision. On the CPU it is MPI (Open MPI from
// Debian) when the process was started by mpirun; the CUDA backend will back
// the same calls with NCCL. A process not started by mpirun is a group of one.
#ifndef DISTILL_STUDENT_REDUCE_H
#define DISTILL_STUDENT_REDUCE_H

#include <stdbool.h>

#include "common/err.h"
#include "model/losses.h"

typedef struct dl_group {
  int rank, world;
  bool mpi;  // MPI was initialized (and must be finalized)
} dl_group;

// Joins the group mpirun started (MPI_Init), or makes a group of one.
// -1 when mpirun started this process but the build has no MPI.
int dl_group_init(dl_group *g, dl_err *err);
void dl_group_finalize(dl_group *g);

// The callback for dl_train_config.reduce: element-wise sum or maximum over
// the group's ranks, in place.
dl_reduce dl_group_reduce(dl_group *g);

// True when the process was started by a launcher (mpirun, srun with PMI or PMIx).
bool dl_group_launched(void);

#endif
