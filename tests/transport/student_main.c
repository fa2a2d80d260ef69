// transport_student: one student rank as its own process, for benchmarks and
// manual runs against `distill teacher`. With --synthetic D,P it checks every
// block it receives against the synthetic targets (every value, or every Nth
// with --verify-stride); with --verify none (a model teacher) it checks only
// the order. It prints one result line. Exit 0 when all blocks arrived in
// order and correct, 1 otherwise, 2 on bad flags.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/flags.h"
#include "common/err.h"
#include "common/timing.h"
#include "recipe/recipe.h"
#include "transport/envelope.h"
#include "transport/malloc_tuning.h"
#include "transport/student_client.h"
#include "transport/synthetic.h"
#include "transport/xxhash64.h"

// "FIRST:END:RES[,FIRST:END:RES...]" into plan; returns the phase count.
// The client checks order and overlap.
static int parse_plan(const char *text, dl_plan_phase *plan) {
  int n = 0;
  const char *p = text;
  while (*p) {
    if (n == DL_PLAN_MAX_PHASES) dl_die_input("transport_student: --plan has more than %d phases", DL_PLAN_MAX_PHASES);
    char *end;
    unsigned long long first = strtoull(p, &end, 10), last = 0, res = 0;
    int ok = end != p && *end == ':';
    if (ok) last = strtoull(p = end + 1, &end, 10), ok = end != p && *end == ':';
    if (ok) res = strtoull(p = end + 1, &end, 10), ok = end != p && (*end == ',' || *end == '\0');
    if (!ok || res == 0 || res > 65536)
      dl_die_input("transport_student: --plan phase %d: expected FIRST:END:RES (RES 1..65536) in '%s'", n + 1, text);
    plan[n++] = (dl_plan_phase){first, last, (uint32_t)res};
    p = *end ? end + 1 : end;
  }
  if (n == 0) dl_die_input("transport_student: --plan is empty");
  return n;
}

static uint64_t parse_hex64(const char *text, const char *flag) {
  char *end;
  unsigned long long v = strtoull(text, &end, 16);
  if (end == text || *end) dl_die_input("transport_student: %s wants a hexadecimal number, got '%s'", flag, text);
  return v;
}

// xxHash64 (seed 0) of the tensors in order, each as its name's bytes (no
// terminator) followed by its rows x cols float32 values: equal digests mean
// equal targets, whichever codec carried them.
static uint64_t block_digest(const dl_target_block *b) {
  size_t n = 0;
  for (int i = 0; i < b->ntensors; i++)
    n += strlen(b->tensors[i].name) + (size_t)b->tensors[i].rows * b->tensors[i].cols * sizeof(float);
  uint8_t *buf = dl_malloc(n ? n : 1), *p = buf;
  for (int i = 0; i < b->ntensors; i++) {
    const dl_tensor *t = &b->tensors[i];
    size_t name = strlen(t->name), values = (size_t)t->rows * t->cols * sizeof(float);
    memcpy(p, t->name, name);
    memcpy(p + name, t->data, values);
    p += name + values;
  }
  uint64_t h = dl_xxhash64(buf, n, 0);
  free(buf);
  return h;
}

static void sleep_seconds(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  const char *connect = "tcp://127.0.0.1:5555", *group = "student", *synthetic = NULL;
  const char *recipe_path = NULL, *stream = NULL, *stream_hash = NULL, *plan_text = NULL, *verify = NULL, *digests = NULL;
  int rank = 0, world = 1, blocks = 1000, block_size = 32, crops = 2, window = 16, stride = 1;
  int resolution = 224, timeout_s = 120, start = 0, stop_after = 0;
  double tolerance = 0, seconds_per_block = 0;
  bool quiet = false;
  const dl_flag flags[] = {
      {"connect", DL_FLAG_STRING, &connect, "E1[,E2..]", "teacher endpoints"},
      {"group", DL_FLAG_STRING, &group, "NAME", "student group"},
      {"rank", DL_FLAG_INT, &rank, "R", "this rank"},
      {"world", DL_FLAG_INT, &world, "W", "ranks in the group"},
      {"blocks", DL_FLAG_INT, &blocks, "N", "stream length in blocks"},
      {"start", DL_FLAG_INT, &start, "K", "resume from the rank's K-th block"},
      {"stop-after", DL_FLAG_INT, &stop_after, "N", "leave after N blocks (0: at the stream's end)"},
      {"synthetic", DL_FLAG_STRING, &synthetic, "D,P", "what the teacher serves"},
      {"verify", DL_FLAG_STRING, &verify, "synthetic|none",
       "check content against --synthetic (the default when given), or not (a model teacher)"},
      {"digests", DL_FLAG_STRING, &digests, "FILE", "append 'BLOCK RES XXH64' per block (hex digest of names and floats)"},
      {"block-size", DL_FLAG_INT, &block_size, "N", "samples per block"},
      {"crops", DL_FLAG_INT, &crops, "N", "global crops per sample"},
      {"window", DL_FLAG_INT, &window, "N", "blocks in flight"},
      {"verify-stride", DL_FLAG_INT, &stride, "N", "check every Nth value"},
      {"tolerance", DL_FLAG_DOUBLE, &tolerance, "X", "largest codec error per value"},
      {"resolution", DL_FLAG_INT, &resolution, "PX", "crop resolution"},
      {"seconds-per-block", DL_FLAG_DOUBLE, &seconds_per_block, "S", "sleep S after each block (a slower family)"},
      {"recipe", DL_FLAG_STRING, &recipe_path, "FILE", "send the stream identity (text and hash) of this recipe"},
      {"stream", DL_FLAG_STRING, &stream, "TEXT", "stream identity text sent in HELLO"},
      {"stream-hash", DL_FLAG_STRING, &stream_hash, "HEX", "stream identity hash sent in HELLO (recipe_hash)"},
      {"plan", DL_FLAG_STRING, &plan_text, "F:E:R[,..]",
       "the family's plan sent in HELLO (default [0, --blocks) at --resolution); this rank streams at --resolution"},
      {"timeout", DL_FLAG_INT, &timeout_s, "S", "give up after S seconds"},
      {"quiet", DL_FLAG_BOOL, &quiet, NULL, "no event lines"},
  };
  const dl_command_spec spec = {"transport_student", "--connect E (--synthetic D,P | --verify none) [options]",
                                "A test student rank that verifies synthetic targets.", flags,
                                (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  if (!verify) verify = synthetic ? "synthetic" : NULL;
  if (!verify) dl_die_input("transport_student: --synthetic D,P is required (or --verify none)");
  bool check_content = !strcmp(verify, "synthetic");
  if (!check_content && strcmp(verify, "none"))
    dl_die_input("transport_student: --verify is synthetic or none, not '%s'", verify);
  dl_synthetic_spec syn = {0};
  dl_err err;
  if (check_content && !synthetic) dl_die_input("transport_student: --verify synthetic needs --synthetic D,P");
  if (synthetic && dl_synthetic_parse(synthetic, &syn, &err)) dl_die_input("transport_student: %s", err.msg);
  if (blocks < 0 || block_size < 1 || crops < 1 || stride < 1 || world < 1 || rank < 0 || rank >= world ||
      start < 0 || stop_after < 0 || seconds_per_block < 0)
    dl_die_input("transport_student: bad --blocks, --block-size, --crops, --verify-stride, --rank, --world, "
                 "--start, --stop-after or --seconds-per-block");
  syn.block_size = (uint32_t)block_size;
  syn.crops = (uint32_t)crops;
  dl_plan_phase plan[DL_PLAN_MAX_PHASES];
  int nplan = plan_text ? parse_plan(plan_text, plan) : 0;
  FILE *digest_file = NULL;
  if (digests && !(digest_file = fopen(digests, "a")))
    dl_die_input("transport_student: cannot open --digests %s for appending", digests);

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
  cfg.start_index = (uint64_t)start;
  cfg.end_block = (uint64_t)blocks;
  cfg.window = window;
  cfg.resolution = (uint32_t)resolution;
  cfg.stream_text = stream;
  if (stream_hash) cfg.recipe_hash = parse_hex64(stream_hash, "--stream-hash");
  char recipe_stream[DL_RECIPE_STREAM_TEXT_MAX];
  if (recipe_path) {  // what `distill student --recipe` would send
    dl_recipe r;
    if (dl_recipe_load(recipe_path, &r, &err)) dl_die_input("transport_student: %s", err.msg);
    dl_recipe_stream_text(&r, recipe_stream, sizeof recipe_stream);
    cfg.stream_text = recipe_stream;
    cfg.recipe_hash = dl_recipe_stream_hash(&r);
  }
  cfg.plan = plan;
  cfg.nplan = nplan;
  cfg.quiet = quiet;
  dl_transport_tune_malloc();
  dl_student_client *c = dl_student_client_create(&cfg, &err);
  if (!c) dl_die_input("transport_student: %s", err.msg);
  // The rank's blocks are rank + j * world < blocks; it takes those from j = start on.
  uint64_t rank_blocks = (uint64_t)blocks > (uint64_t)rank
                             ? ((uint64_t)blocks - (uint64_t)rank + (uint64_t)world - 1) / (uint64_t)world : 0;
  uint64_t expected = rank_blocks > (uint64_t)start ? rank_blocks - (uint64_t)start : 0;
  if (stop_after > 0 && (uint64_t)stop_after < expected) expected = (uint64_t)stop_after;
  uint64_t k = 0, bad = 0;
  double t0 = dl_now_seconds(), first = 0, deadline = t0 + timeout_s;
  int fatal = 0;
  while (k < expected && !dl_student_client_done(c) && dl_now_seconds() < deadline) {
    dl_target_block b;
    int rc = dl_student_client_next(c, &b, 500, &err);
    if (rc < 0) {
      fprintf(stderr, "transport_student: %s\n", err.msg);
      fatal = 1;
      break;
    }
    if (rc == 0) continue;
    if (k == 0) first = dl_now_seconds();
    uint64_t want = (uint64_t)rank + ((uint64_t)start + k) * (uint64_t)world;
    if (b.block != want) {
      if (bad++ == 0) fprintf(stderr, "transport_student: block %" PRIu64 " came where %" PRIu64 " was due\n", b.block, want);
    } else if (check_content &&
               dl_synthetic_verify(&syn, &b, want, (uint32_t)resolution, (float)tolerance, (uint32_t)stride, &err)) {
      if (bad++ == 0) fprintf(stderr, "transport_student: %s\n", err.msg);
    }
    if (digest_file) {
      fprintf(digest_file, "%" PRIu64 " %u %016" PRIx64 "\n", b.block, b.resolution, block_digest(&b));
      fflush(digest_file);
    }
    dl_target_block_free(&b);
    k++;
    if (seconds_per_block > 0) sleep_seconds(seconds_per_block);
  }
  double t1 = dl_now_seconds();
  dl_student_metrics m = dl_student_client_metrics(c);
  printf("student_result group=%s rank=%d delivered=%llu expected=%llu bad=%llu seconds=%.3f "
         "first_block_s=%.3f payload_bytes=%llu raw_bytes=%llu held_seconds=%.3f wait_seconds=%.3f\n",
         group, rank, (unsigned long long)k, (unsigned long long)expected, (unsigned long long)bad,
         t1 - t0, first > 0 ? first - t0 : 0.0, (unsigned long long)m.bytes_wire,
         (unsigned long long)m.bytes_raw, m.held_seconds, m.wait_seconds);
  dl_student_metrics_print(&m, group, (uint32_t)rank, stdout);
  dl_student_client_destroy(c);
  if (digest_file) fclose(digest_file);
  free(list);
  return !fatal && bad == 0 && k == expected ? 0 : 1;
}
