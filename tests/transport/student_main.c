// transport_student: one student rank as its own process, for benchmarks and
// manual runs against `distill teacher --synthetic D,P`. It checks every block
// it receives against the synthetic targets (every value, or every Nth with
// --verify-stride) and prints one result line. Exit 0 when all blocks arrived
// in order and correct, 1 otherwise, 2 on bad flags.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/flags.h"
#include "common/err.h"
#include "common/timing.h"
#include "transport/malloc_tuning.h"
#include "transport/student_client.h"
#include "transport/synthetic.h"

int main(int argc, char **argv) {
  const char *connect = "tcp://127.0.0.1:5555", *group = "student", *synthetic = NULL;
  int rank = 0, world = 1, blocks = 1000, block_size = 32, crops = 2, window = 16, stride = 1;
  int resolution = 224, timeout_s = 120;
  double tolerance = 0;
  bool quiet = false;
  const dl_flag flags[] = {
      {"connect", DL_FLAG_STRING, &connect, "E1[,E2..]", "teacher endpoints"},
      {"group", DL_FLAG_STRING, &group, "NAME", "student group"},
      {"rank", DL_FLAG_INT, &rank, "R", "this rank"},
      {"world", DL_FLAG_INT, &world, "W", "ranks in the group"},
      {"blocks", DL_FLAG_INT, &blocks, "N", "stream length in blocks"},
      {"synthetic", DL_FLAG_STRING, &synthetic, "D,P", "what the teacher serves"},
      {"block-size", DL_FLAG_INT, &block_size, "N", "samples per block"},
      {"crops", DL_FLAG_INT, &crops, "N", "global crops per sample"},
      {"window", DL_FLAG_INT, &window, "N", "blocks in flight"},
      {"verify-stride", DL_FLAG_INT, &stride, "N", "check every Nth value"},
      {"tolerance", DL_FLAG_DOUBLE, &tolerance, "X", "largest codec error per value"},
      {"resolution", DL_FLAG_INT, &resolution, "PX", "crop resolution"},
      {"timeout", DL_FLAG_INT, &timeout_s, "S", "give up after S seconds"},
      {"quiet", DL_FLAG_BOOL, &quiet, NULL, "no event lines"},
  };
  const dl_command_spec spec = {"transport_student", "--connect E --synthetic D,P [options]",
                                "A test student rank that verifies synthetic targets.", flags,
                                (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  dl_synthetic_spec syn = {0};
  dl_err err;
  if (!synthetic) dl_die_input("transport_student: --synthetic D,P is required");
  if (dl_synthetic_parse(synthetic, &syn, &err)) dl_die_input("transport_student: %s", err.msg);
  if (blocks < 0 || block_size < 1 || crops < 1 || stride < 1 || world < 1 || rank < 0 || rank >= world)
    dl_die_input("transport_student: bad --blocks, --block-size, --crops, --verify-stride, --rank or --world");
  syn.block_size = (uint32_t)block_size;
  syn.crops = (uint32_t)crops;

  char *list = strdup(connect);
  const char *teachers[DL_MAX_TEACHERS];
  int n = 0;
  for (char *save = NULL, *t = strtok_r(list, ",", &save); t && n < DL_MAX_TEACHERS; t = strtok_r(NULL, ",", &save))
    teachers[n++] = t;
  dl_student_config cfg;
  dl_student_config_defaults(&cfg);
  cfg.teachers = teachers;
  cfg.nteachers = n;
  cfg.group = group;
  cfg.rank = (uint32_t)rank;
  cfg.world = (uint32_t)world;
  cfg.end_block = (uint64_t)blocks;
  cfg.window = window;
  cfg.resolution = (uint32_t)resolution;
  cfg.quiet = quiet;
  dl_transport_tune_malloc();
  dl_student_client *c = dl_student_client_create(&cfg, &err);
  if (!c) dl_die_input("transport_student: %s", err.msg);
  uint64_t k = 0, bad = 0;
  double t0 = dl_now_seconds(), first = 0, deadline = t0 + timeout_s;
  int fatal = 0;
  while (!dl_student_client_done(c) && dl_now_seconds() < deadline) {
    dl_target_block b;
    int rc = dl_student_client_next(c, &b, 500, &err);
    if (rc < 0) {
      fprintf(stderr, "transport_student: %s\n", err.msg);
      fatal = 1;
      break;
    }
    if (rc == 0) continue;
    if (k == 0) first = dl_now_seconds();
    uint64_t want = (uint64_t)rank + k * (uint64_t)world;
    if (dl_synthetic_verify(&syn, &b, want, (uint32_t)resolution, (float)tolerance, (uint32_t)stride, &err)) {
      if (bad++ == 0) fprintf(stderr, "transport_student: %s\n", err.msg);
    }
    dl_target_block_free(&b);
    k++;
  }
  double t1 = dl_now_seconds();
  dl_student_metrics m = dl_student_client_metrics(c);
  uint64_t expected = (uint64_t)blocks > (uint64_t)rank ? ((uint64_t)blocks - (uint64_t)rank + (uint64_t)world - 1) / (uint64_t)world : 0;
  printf("student_result group=%s rank=%d delivered=%llu expected=%llu bad=%llu seconds=%.3f "
         "first_block_s=%.3f payload_bytes=%llu raw_bytes=%llu\n",
         group, rank, (unsigned long long)k, (unsigned long long)expected, (unsigned long long)bad,
         t1 - t0, first > 0 ? first - t0 : 0.0, (unsigned long long)m.bytes_wire,
         (unsigned long long)m.bytes_raw);
  dl_student_metrics_print(&m, group, (uint32_t)rank, stdout);
  dl_student_client_destroy(c);
  free(list);
  return !fatal && bad == 0 && k == expected ? 0 : 1;
}
