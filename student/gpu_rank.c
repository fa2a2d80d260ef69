#include "student/gpu_rank.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>

// The first of vars that is set, as a number >= least: 1 found, 0 none set, -1 not such a number.
static int first_env_number(const char *const *vars, size_t n, long least, const char *what, int *out, dl_err *err) {
  for (size_t i = 0; i < n; i++) {
    const char *s = getenv(vars[i]);
    if (!s) continue;
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < least || v > INT_MAX)
      return dl_fail(err, "%s='%s' is not %s (a number >= %ld)", vars[i], s, what, least);
    *out = (int)v;
    return 1;
  }
  return 0;
}

int dl_local_rank(int rank, int *local, dl_err *err) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
  const int rc = first_env_number(vars, sizeof vars / sizeof vars[0], 0, "a local rank", local, err);
  if (rc < 0) return -1;
  if (rc == 0) *local = rank;
  return 0;
}

int dl_local_size(int *size, dl_err *err) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"};
  const int rc = first_env_number(vars, sizeof vars / sizeof vars[0], 1, "a number of ranks", size, err);
  if (rc < 0) return -1;
  if (rc == 0) *size = 0;
  return 0;
}

int dl_gpu_for_rank(int local_rank, int local_size, int device_count, dl_err *err) {
  if (local_size > device_count)
    return dl_fail(err, "%d ranks on this machine but %d GPU%s: start at most one rank per GPU", local_size,
                   device_count, device_count == 1 ? "" : "s");
  if (local_rank >= device_count)
    return dl_fail(err, "local rank %d but %d GPU%s on this machine: start at most one rank per GPU", local_rank,
                   device_count, device_count == 1 ? "" : "s");
  return local_rank;
}

int dl_group_share_id(dl_group *g, void *id, size_t n, dl_make_id make, void *ctx, dl_err *err) {
  if (g->rank == 0 && make(id, n, ctx, err)) return -1;
  return dl_group_broadcast(g, id, n, err);
}
