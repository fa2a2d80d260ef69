#include "student/reduce.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

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
// MPI counts are ints: large buffers (a ViT-L's gradients) go in chunks.
static size_t mpi_chunk(size_t left) { return left > (size_t)INT_MAX / 2 ? (size_t)INT_MAX / 2 : left; }

static void mpi_reduce(float *data, size_t n, dl_reduce_op op, void *ctx) {
  (void)ctx;
  for (size_t off = 0, count; off < n; off += count) {
    count = mpi_chunk(n - off);
    MPI_Allreduce(MPI_IN_PLACE, data + off, (int)count, MPI_FLOAT, op == DL_REDUCE_MAX ? MPI_MAX : MPI_SUM,
                  MPI_COMM_WORLD);
  }
}
#endif

static void tcp_reduce(float *data, size_t n, dl_reduce_op op, void *ctx) {
  dl_group *g = ctx;
  dl_err err;
  if (dl_group_tcp_allreduce(g->tcp, data, n, op, &err) == 0) return;
  // Like MPI's default error handler: the group cannot go on without a rank.
  // _exit: the transport and loader threads are mid-flight; stdio is flushed.
  fprintf(stderr, "distill: student: rank %d of %d: %s; stopping (restart the group; --resume auto continues from "
                  "rank 0's newest checkpoint)\n", g->rank, g->world, err.msg);
  fflush(NULL);
  _exit(1);
}

int dl_group_init(dl_group *g, dl_err *err) {
  *g = (dl_group){.rank = 0, .world = 1, .mpi = false, .tcp = NULL};
  if (!dl_group_launched()) return 0;
#ifdef DISTILL_MPI
  if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return dl_fail(err, "MPI_Init failed");
  MPI_Comm_rank(MPI_COMM_WORLD, &g->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g->world);
  g->mpi = true;
  return 0;
#else
  return dl_fail(err, "started by mpirun, but this build has no MPI (install libopenmpi-dev and rebuild, or use "
                      "--group-addr)");
#endif
}

int dl_group_join_tcp(dl_group *g, const char *addr, const dl_group_hello *me, int timeout_s,
                      const volatile sig_atomic_t *stop, dl_err *err) {
  int status;
  g->tcp = dl_group_tcp_join(addr, me, timeout_s, stop, &status, err);
  if (!g->tcp) return status;
  g->rank = me->rank;
  g->world = me->world;
  return 0;
}

void dl_group_finalize(dl_group *g) {
#ifdef DISTILL_MPI
  if (g->mpi) MPI_Finalize();
#endif
  dl_group_tcp_close(g->tcp);
  g->tcp = NULL;
  g->mpi = false;
}

dl_reduce dl_group_reduce(dl_group *g) {
  if (g->tcp && g->world > 1) return (dl_reduce){tcp_reduce, g};
#ifdef DISTILL_MPI
  if (g->mpi && g->world > 1) return (dl_reduce){mpi_reduce, g};
#endif
  return (dl_reduce){NULL, NULL};
}

int dl_group_broadcast(dl_group *g, void *data, size_t n, dl_err *err) {
  if (g->world <= 1) return 0;
  if (g->tcp) return dl_group_tcp_broadcast(g->tcp, data, n, err);
#ifdef DISTILL_MPI
  if (g->mpi) {
    for (size_t off = 0, count; off < n; off += count) {
      count = mpi_chunk(n - off);
      if (MPI_Bcast((char *)data + off, (int)count, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return dl_fail(err, "group: MPI_Bcast failed");
    }
    return 0;
  }
#endif
  return dl_fail(err, "group: %d ranks but no backend joined", g->world);
}
