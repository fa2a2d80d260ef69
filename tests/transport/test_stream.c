// Acceptance: two student groups (1 rank and 3 ranks) each receive every
// block of a 2,000-block stream exactly once, in order per rank, checked by
// content; with both groups in step the teacher computes each block once, and
// twice with the cache (and so any sharing) disabled.
#include <stdio.h>
#include <string.h>

#include "common/timing.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"

enum { kBlocks = 2000, kRanks = 4 };

static void run(size_t cache_bytes, const char *codecs, int zstd_level, float tolerance,
                int io_threads, uint64_t expect_computed) {
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  cfg.cache_bytes = cache_bytes;
  cfg.io_threads = io_threads;
  dl_err err;
  if (dl_codec_spec_parse(codecs, &cfg.codecs, &err)) {
    CHECK(0, "codec spec %s: %s", codecs, err.msg);
    return;
  }
  cfg.zstd_level = zstd_level;
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) {
    CHECK(0, "teacher started");
    return;
  }
  const char *endpoint = dl_teacher_server_endpoint(t.server);
  test_rank ranks[kRanks];
  test_rank_init(&ranks[0], &endpoint, 1, "vits", 0, 1, kBlocks);
  for (uint32_t r = 0; r < 3; r++) test_rank_init(&ranks[1 + r], &endpoint, 1, "vitb", r, 3, kBlocks);
  double t0 = dl_now_seconds();
  for (int i = 0; i < kRanks; i++) {
    ranks[i].tolerance = tolerance;
    test_rank_start(&ranks[i]);
  }
  for (int i = 0; i < kRanks; i++) test_rank_join(&ranks[i]);
  double secs = dl_now_seconds() - t0;
  dl_teacher_metrics m;
  test_teacher_stop(&t, &m);
  printf("-- cache %zu bytes, codecs %s, zstd %d, %d I/O threads: %.2f s\n", cache_bytes, codecs,
         zstd_level, io_threads, secs);
  dl_teacher_metrics_print(&m, stdout);
  uint64_t delivered = 0;
  for (int i = 0; i < kRanks; i++) {
    test_rank_check(&ranks[i]);
    delivered += ranks[i].delivered;
  }
  CHECK(delivered == 2 * kBlocks, "%llu blocks delivered over both groups (2 x %d)",
        (unsigned long long)delivered, kBlocks);
  CHECK(m.computed == expect_computed, "teacher computed %llu blocks, expected %llu",
        (unsigned long long)m.computed, (unsigned long long)expect_computed);
  CHECK(m.bad_messages == 0, "teacher saw %llu bad messages", (unsigned long long)m.bad_messages);
}

// A compute callback as slow as a model, so both groups' requests for a block
// meet while it is being computed.
static int slow_compute(void *user, uint64_t block, uint32_t res, dl_target_block *out, dl_err *err) {
  test_sleep(0.002);
  return dl_synthetic_compute(user, block, res, out, err);
}

static void coalescing(void) {
  enum { kShort = 300 };
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  cfg.compute_block = slow_compute;
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return;
  const char *endpoint = dl_teacher_server_endpoint(t.server);
  test_rank ranks[2];
  test_rank_init(&ranks[0], &endpoint, 1, "vits", 0, 1, kShort);
  test_rank_init(&ranks[1], &endpoint, 1, "vitl", 0, 1, kShort);
  for (int i = 0; i < 2; i++) test_rank_start(&ranks[i]);
  for (int i = 0; i < 2; i++) test_rank_join(&ranks[i]);
  test_sleep(0.3);  // the teacher handles the BYEs (well before dead_after)
  dl_teacher_metrics m;
  test_teacher_stop(&t, &m);
  printf("-- coalescing, slow compute\n");
  dl_teacher_metrics_print(&m, stdout);
  for (int i = 0; i < 2; i++) test_rank_check(&ranks[i]);
  CHECK(m.computed == kShort && m.coalesced > 0,
        "requests waiting for the same block shared one computation (%llu computed, %llu coalesced)",
        (unsigned long long)m.computed, (unsigned long long)m.coalesced);
  CHECK(m.live_peers == 0 && m.peers_lost == 2 && m.peers_silent == 0,
        "both students said BYE and were forgotten (%llu lost, %llu silent)",
        (unsigned long long)m.peers_lost, (unsigned long long)m.peers_silent);
}

int main(void) {
  coalescing();
  // In step with a cache: every block computed once, sent twice.
  run(64u << 20, "f32", 0, 0.0f, 1, kBlocks);
  // The same with the sends spread over three ZeroMQ I/O threads: still every
  // block once per group, in order, and (the whole stream fits the cache)
  // computed once.
  run(64u << 20, "f32", 0, 0.0f, 3, kBlocks);
  // No cache: each group's request computes its own copy. Lossy codecs and
  // zstd on this run, so the content check also covers them end to end.
  run(0, "f16,patch=int8", 3, 1.0f / 200, 1, 2 * kBlocks);
  return dl_test_summary("transport_stream");
}
