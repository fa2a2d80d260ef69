// The TCP group backend (student/group_tcp.h) with three ranks as three
// processes on loopback: sums and maxima of a buffer spanning several 4 MiB
// chunks equal, bit for bit on every rank, the rank-order sum ((x0 + x1) + x2)
// computed locally; a broadcast of 9 MB arrives intact; ranks that call
// different operations are stopped with a message, not summed.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timing.h"
#include "student/group_tcp.h"
#include "tests/harness.h"

#define WORLD 3
#define N ((size_t)2500000)  // floats: 3 chunks of at most 1M
#define PORT "15640"

// Rank r's value i: signs and magnitudes that make the summation order visible.
// Not inlined: the expected sums must add rounded floats, not fuse the
// scaling multiply into the addition (FMA contraction).
__attribute__((noinline)) static float value(int rank, size_t i) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(rank + 1) * 0xD1B54A32D192ED03ULL;
  x ^= x >> 29;
  const float u = (float)(x % 2000001) / 1000000.0f - 1.0f;
  static const float scale[5] = {1e-3f, 1.0f, 3e2f, 1e4f, 7e-1f};
  return u * scale[(i + (size_t)rank) % 5];
}

static int run_rank(int rank, int out_of_step) {
  dl_test_failures = 0;  // this process's own checks (fork copied the parent's count)
  dl_group_hello me = {.rank = rank, .world = WORLD, .group = "unit", .recipe_hash = 42};
  dl_err err;
  int status;
  dl_group_tcp *g = dl_group_tcp_join("127.0.0.1:" PORT, &me, 20, NULL, &status, &err);
  CHECK(g != NULL, "rank %d joined%s%s", rank, g ? "" : ": ", g ? "" : err.msg);
  if (!g) return 1;
  if (out_of_step) {
    float x[10] = {0};
    const int rc = dl_group_tcp_allreduce(g, x, 10, rank == 1 ? DL_REDUCE_MAX : DL_REDUCE_SUM, &err);
    if (rank == 0)
      CHECK(rc != 0 && strstr(err.msg, "rank 1 (") && strstr(err.msg, "fell out of step"),
            "rank 0 refuses a maximum against its sum: %s", rc ? err.msg : "(no error)");
    else
      CHECK(rc != 0, "rank %d stops too: %s", rank, rc ? err.msg : "(no error)");
    dl_group_tcp_close(g);
    return dl_test_failures != 0;
  }
  float *x = malloc(N * sizeof *x), *want = malloc(N * sizeof *want);
  size_t reordered = 0;
  for (size_t i = 0; i < N; i++) {
    x[i] = value(rank, i);
    want[i] = (value(0, i) + value(1, i)) + value(2, i);
    reordered += want[i] != (value(2, i) + value(1, i)) + value(0, i);
  }
  const double t0 = dl_now_seconds();
  int rc = dl_group_tcp_allreduce(g, x, N, DL_REDUCE_SUM, &err);
  const double ms = (dl_now_seconds() - t0) * 1e3;
  CHECK(rc == 0 && memcmp(x, want, N * sizeof *x) == 0,
        "rank %d: sum of %zu floats = (x0 + x1) + x2 bit for bit (%zu values would differ in another order; %.1f ms)",
        rank, N, reordered, ms);
  for (size_t i = 0; i < N; i++) {
    x[i] = value(rank, i);
    const float a = value(0, i), b = value(1, i), c = value(2, i);
    want[i] = a > b ? (a > c ? a : c) : (b > c ? b : c);
  }
  rc = dl_group_tcp_allreduce(g, x, N, DL_REDUCE_MAX, &err);
  CHECK(rc == 0 && memcmp(x, want, N * sizeof *x) == 0, "rank %d: element-wise maximum", rank);
  const size_t nb = 9u << 20;
  unsigned char *b = calloc(nb, 1);
  if (rank == 0)
    for (size_t i = 0; i < nb; i++) b[i] = (unsigned char)(i * 7 + 3);
  rc = dl_group_tcp_broadcast(g, b, nb, &err);
  size_t bad = 0;
  for (size_t i = 0; i < nb; i++) bad += b[i] != (unsigned char)(i * 7 + 3);
  CHECK(rc == 0 && bad == 0, "rank %d: broadcast of %zu bytes from rank 0 (%zu wrong)", rank, nb, bad);
  free(b);
  free(x);
  free(want);
  dl_group_tcp_close(g);
  return dl_test_failures != 0;
}

static void run_group(int out_of_step) {
  pid_t pid[WORLD];
  fflush(stdout);
  for (int r = 0; r < WORLD; r++) {
    pid[r] = fork();
    if (pid[r] == 0) {
      const int rc = run_rank(r, out_of_step);
      fflush(stdout);
      _exit(rc);
    }
  }
  for (int r = 0; r < WORLD; r++) {
    int st = 0;
    waitpid(pid[r], &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: rank %d's process passed its checks",
          out_of_step ? "out of step" : "collectives", r);
  }
}

int main(void) {
  run_group(0);
  run_group(1);
  return dl_test_summary("test_group_tcp");
}
