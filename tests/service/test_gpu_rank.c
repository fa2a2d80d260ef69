// The host logic of student groups on GPUs (student/gpu_rank.h), which needs
// no GPU: the local rank from Open MPI's and Slurm's variables (and refusals
// of values that are not ranks), the GPU each local rank takes, and rank 0's
// id reaching every rank of a three-process TCP group through the group's
// broadcast, as the NCCL unique id does in distill-gpu.
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "student/gpu_rank.h"
#include "tests/harness.h"

#define WORLD 3
#define ID_BYTES 128  // sizeof(ncclUniqueId)
#define PORT "15650"

static void local_rank_cases(void) {
  dl_err err;
  int local = -7;
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  unsetenv("SLURM_LOCALID");
  unsetenv("LOCAL_RANK");
  CHECK(dl_local_rank(5, &local, &err) == 0 && local == 5, "no launcher variable: the group rank (5 -> %d)", local);
  setenv("SLURM_LOCALID", "1", 1);
  CHECK(dl_local_rank(5, &local, &err) == 0 && local == 1, "SLURM_LOCALID=1 -> %d", local);
  setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
  CHECK(dl_local_rank(5, &local, &err) == 0 && local == 3, "OMPI_COMM_WORLD_LOCAL_RANK=3 wins over Slurm's -> %d",
        local);
  const char *bad[] = {"", "x", "-1", "2a", "99999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", bad[i], 1);
    const int rc = dl_local_rank(0, &local, &err);
    CHECK(rc == -1 && strstr(err.msg, "OMPI_COMM_WORLD_LOCAL_RANK") && strstr(err.msg, bad[i]),
          "OMPI_COMM_WORLD_LOCAL_RANK='%s' refused: %s", bad[i], rc ? err.msg : "(accepted)");
  }
  unsetenv("OMPI_COMM_WORLD_LOCAL_RANK");
  setenv("SLURM_LOCALID", "one", 1);
  CHECK(dl_local_rank(0, &local, &err) == -1 && strstr(err.msg, "SLURM_LOCALID"), "SLURM_LOCALID='one' refused: %s",
        err.msg);
  unsetenv("SLURM_LOCALID");
  setenv("LOCAL_RANK", "2", 1);
  CHECK(dl_local_rank(5, &local, &err) == 0 && local == 2, "torchrun's LOCAL_RANK=2 -> %d", local);
  unsetenv("LOCAL_RANK");
}

static void device_cases(void) {
  dl_err err;
  int own = 0;
  for (int r = 0; r < 8; r++) own += dl_gpu_for_rank(r, 8, 8, &err) == r;
  CHECK(own == 8 && dl_gpu_for_rank(0, 0, 1, &err) == 0, "8 ranks on 8 GPUs take their own; one rank on one GPU: 0");
  CHECK(dl_gpu_for_rank(0, 0, 4, &err) == 0 && dl_gpu_for_rank(3, 0, 4, &err) == 3,
        "an unknown local size: ranks 0 and 3 on 4 GPUs");
  int rc = dl_gpu_for_rank(0, 16, 4, &err);
  CHECK(rc == -1 && strstr(err.msg, "16 ranks") && strstr(err.msg, "4 GPUs"),
        "16 local ranks on 4 GPUs refused at every rank, rank 0 too: %s", rc < 0 ? err.msg : "(accepted)");
  rc = dl_gpu_for_rank(4, 0, 4, &err);
  CHECK(rc == -1 && strstr(err.msg, "local rank 4"), "local rank 4 on 4 GPUs refused: %s",
        rc < 0 ? err.msg : "(accepted)");
  rc = dl_gpu_for_rank(1, 2, 1, &err);
  CHECK(rc == -1 && strstr(err.msg, "1 GPU:"), "two ranks on one GPU refused: %s", rc < 0 ? err.msg : "(accepted)");

  int size = -7;
  const char *vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"};
  for (int i = 0; i < 3; i++) unsetenv(vars[i]);
  CHECK(dl_local_size(&size, &err) == 0 && size == 0, "no launcher variable: local size unknown (%d)", size);
  setenv("SLURM_NTASKS_PER_NODE", "4", 1);
  setenv("LOCAL_WORLD_SIZE", "2", 1);
  CHECK(dl_local_size(&size, &err) == 0 && size == 2, "LOCAL_WORLD_SIZE=2 wins over Slurm's 4 -> %d", size);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "0", 1);
  rc = dl_local_size(&size, &err);
  CHECK(rc == -1 && strstr(err.msg, "OMPI_COMM_WORLD_LOCAL_SIZE='0'"), "a local size of 0 refused: %s",
        rc ? err.msg : "(accepted)");
  for (int i = 0; i < 3; i++) unsetenv(vars[i]);
}

typedef struct maker {
  int rank, calls;
} maker;

// A rank-dependent id, so that a rank keeping its own would be seen.
static int make_id(void *id, size_t n, void *ctx, dl_err *err) {
  (void)err;
  maker *m = ctx;
  m->calls++;
  for (size_t i = 0; i < n; i++) ((unsigned char *)id)[i] = (unsigned char)(i * 31 + 7 + (size_t)m->rank * 101);
  return 0;
}

static int expected_ok(const unsigned char *id) {
  for (size_t i = 0; i < ID_BYTES; i++)
    if (id[i] != (unsigned char)(i * 31 + 7)) return 0;
  return 1;
}

static int run_rank(int rank) {
  dl_test_failures = 0;  // this process's own checks (fork copied the parent's count)
  dl_group g = {.rank = 0, .world = 1};
  const dl_group_hello me = {.rank = rank, .world = WORLD, .group = "gpu-rank", .recipe_hash = 7};
  dl_err err;
  const int joined = dl_group_join_tcp(&g, "127.0.0.1:" PORT, &me, 20, NULL, &err);
  CHECK(joined == 0, "rank %d joined%s%s", rank, joined ? ": " : "", joined ? err.msg : "");
  if (joined) return 1;
  unsigned char id[ID_BYTES];
  memset(id, 0xEE, sizeof id);
  maker m = {rank, 0};
  const int rc = dl_group_share_id(&g, id, sizeof id, make_id, &m, &err);
  CHECK(rc == 0 && expected_ok(id) && m.calls == (rank == 0),
        "rank %d: holds rank 0's %d-byte id (made %d time%s here)", rank, ID_BYTES, m.calls, m.calls == 1 ? "" : "s");
  dl_group_finalize(&g);
  return dl_test_failures != 0;
}

static void group_cases(void) {
  // A group of one makes its id and sends nothing.
  dl_group one = {.rank = 0, .world = 1};
  unsigned char id[ID_BYTES];
  maker m = {0, 0};
  dl_err err;
  CHECK(dl_group_share_id(&one, id, sizeof id, make_id, &m, &err) == 0 && m.calls == 1 && expected_ok(id),
        "a group of one: the id made once, locally");
  pid_t pid[WORLD];
  fflush(stdout);
  for (int r = 0; r < WORLD; r++) {
    pid[r] = fork();
    if (pid[r] == 0) {
      const int rc = run_rank(r);
      fflush(stdout);
      _exit(rc);
    }
  }
  for (int r = 0; r < WORLD; r++) {
    int st = 0;
    waitpid(pid[r], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "TCP group: rank %d's process passed its checks", r);
  }
}

int main(void) {
  local_rank_cases();
  device_cases();
  group_cases();
  return dl_test_summary("test_gpu_rank");
}
