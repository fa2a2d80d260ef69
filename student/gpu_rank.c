#include "student/gpu_rank.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

int dl_local_rank(int rank, int *local, dl_err *err) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *s = getenv(vars[i]);
    if (!s) continue;
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < 0 || v > INT_MAX)
      return dl_fail(err, "%s='%s' is not a local rank (a number >= 0)", vars[i], s);
    *local = (int)v;
    return 0;
  }
  *local = rank;
  return 0;
}

int dl_gpu_for_rank(int local_rank, int device_count) { return local_rank % device_count; }

int dl_group_share_id(dl_group *g, void *id, size_t n, dl_make_id make, void *ctx, dl_err *err) {
  if (g->rank == 0 && make(id, n, ctx, err)) return -1;
  return dl_group_broadcast(g, id, n, err);
}
