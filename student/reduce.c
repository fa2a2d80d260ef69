#include "student/reduce.h"

#include <limits.h>
#include <stdlib.h>

#ifdef DISTILL_MPI
#include <mpi.h>
#endif

bool dl_group_launched(void) {
  const char *size = getenv("OMPI_COMM_WORLD_SIZE");
  if (!size) size = getenv("PMI_SIZE");
  // srun --mpi=pmix sets neither before MPI_Init: its ranks carry PMIX_RANK
  // and the step's task count.
  if (!size && getenv("PMIX_RANK")) size = getenv("SLURM_STEP_NUM_TASKS");
  return size && atoi(size) > 1;
}

#ifdef DISTILL_MPI
static void mpi_reduce(float *data, size_t n, dl_reduce_op op, void *ctx) {
  (void)ctx;
  // MPI counts are ints: large buffers (a ViT-L's gradients) go in chunks.
  for (size_t off = 0; off < n;) {
    const int count = n - off > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)(n - off);
    MPI_Allreduce(MPI_IN_PLACE, data + off, count, MPI_FLOAT, op == DL_REDUCE_MAX ? MPI_MAX : MPI_SUM,
                  MPI_COMM_WORLD);
    off += (size_t)count;
  }
}
#endif

int dl_group_init(dl_group *g, dl_err *err) {
  *g = (dl_group){.rank = 0, .world = 1, .mpi = false};
  if (!dl_group_launched()) return 0;
#ifdef DISTILL_MPI
  if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return dl_fail(err, "MPI_Init failed");
  MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g->world);
  g->mpi = true;
  return 0;
#else
  return dl_fail(err, "started by mpirun, but this build has no MPI (install libopenmpi-dev and rebuild)");
#endif
}

void dl_group_finalize(dl_group *g) {
#ifdef DISTILL_MPI
  if (g->mpi) MPI_Finalize();
#endif
  g->mpi = false;
}

dl_reduce dl_group_reduce(dl_group *g) {
#ifdef DISTILL_MPI
  if (g->mpi && g->world > 1) return (dl_reduce){mpi_reduce, g};
#endif
  (void)g;
  return (dl_reduce){NULL, NULL};
}
