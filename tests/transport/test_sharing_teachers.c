// Sharing across several teachers (docs/protocol.md, "Teacher side"): three
// families whose speeds differ 1:3:6, paced, against teacher A; teacher B
// joins a third of the way in and A leaves at two thirds. Rendezvous moves
// blocks between them, so some blocks are computed twice; that must stay
// bounded by the lead and be counted (computed_again, reason teacher
// changed). Every family still gets every block once, in order, correct.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"

enum { kBlocks = 600, kRanks = 4, kWindow = 8, kLeadBlocks = 20 };

static void config(dl_teacher_config *cfg, dl_synthetic_spec *spec, const char *bind, const char *id) {
  test_teacher_config(cfg, spec);
  cfg->bind = bind;
  cfg->teacher_id = id;
  // 2560-byte blocks: the pacing bound is half of this, 20 blocks.
  cfg->cache_bytes = 2 * kLeadBlocks * 2560;
  cfg->lead_policy = DL_LEAD_PACE;
}

static void print_families(const char *name, const dl_teacher_metrics *m) {
  printf("-- teacher %s: ", name);
  dl_teacher_sharing_print(m, stdout);
  dl_teacher_metrics_print(m, stdout);
}

int main(void) {
  dl_teacher_config ca, cb;
  dl_synthetic_spec sa, sb;
  config(&ca, &sa, "tcp://127.0.0.1:*", "teacher-a");
  test_teacher a, b;
  if (test_teacher_start(&a, &ca)) return 1;
  const char *b_endpoint = "tcp://127.0.0.1:15991";
  const char *teachers[2] = {dl_teacher_server_endpoint(a.server), b_endpoint};
  test_rank ranks[kRanks];
  test_rank_init(&ranks[0], teachers, 2, "slow", 0, 1, kBlocks);
  test_rank_init(&ranks[1], teachers, 2, "medium", 0, 2, kBlocks);
  test_rank_init(&ranks[2], teachers, 2, "medium", 1, 2, kBlocks);
  test_rank_init(&ranks[3], teachers, 2, "fast", 0, 1, kBlocks);
  const double spb[kRanks] = {0.006, 0.004, 0.004, 0.001};  // blocks/s 167 : 500 : 1000
  for (int i = 0; i < kRanks; i++) {
    ranks[i].seconds_per_block = spb[i];
    ranks[i].cfg.window = kWindow;
    ranks[i].cfg.request_timeout_ms = 3000;
    ranks[i].timeout_s = 60;
    test_rank_start(&ranks[i]);
  }
  // B joins once the slow family is a third of the way through.
  int ok_join = test_wait_progress(&ranks[0], 1, kBlocks / 3, 30);
  config(&cb, &sb, b_endpoint, "teacher-b");
  int b_started = ok_join && test_teacher_start(&b, &cb) == 0;
  CHECK(b_started, "teacher B joined at the slow family's block %" PRIu64, test_progress(&ranks[0], 1));
  // A leaves at two thirds.
  int ok_leave = test_wait_progress(&ranks[0], 1, 2 * kBlocks / 3, 30);
  dl_teacher_metrics ma, mb;
  test_teacher_stop(&a, &ma);
  CHECK(ok_leave, "teacher A left at the slow family's block %" PRIu64, test_progress(&ranks[0], 1));
  for (int i = 0; i < kRanks; i++) test_rank_join(&ranks[i]);
  if (!b_started) return dl_test_summary("transport_sharing_teachers");
  test_sleep(0.3);
  test_teacher_stop(&b, &mb);
  print_families("A", &ma);
  print_families("B", &mb);
  for (int i = 0; i < kRanks; i++) test_rank_check(&ranks[i]);
  CHECK(ma.computed == ma.computed_unique + ma.computed_again && mb.computed == mb.computed_unique + mb.computed_again,
        "each teacher: computed = unique + again (A %" PRIu64 " = %" PRIu64 " + %" PRIu64 ", B %" PRIu64 " = %" PRIu64
        " + %" PRIu64 ")",
        ma.computed, ma.computed_unique, ma.computed_again, mb.computed, mb.computed_unique, mb.computed_again);
  CHECK(ma.computed_unique > 0 && mb.computed_unique > 0 && ma.blocks_served > 0 && mb.blocks_served > 0,
        "both teachers served a share (A %" PRIu64 ", B %" PRIu64 " blocks)", ma.blocks_served, mb.blocks_served);
  const uint64_t computed = ma.computed + mb.computed, unique = ma.computed_unique + mb.computed_unique;
  const uint64_t changed = ma.again_teacher_changed + mb.again_teacher_changed;
  // What one change of owner may cost: the lead (pacing bound) and every
  // rank's window of requests in flight.
  const uint64_t per_change = kLeadBlocks + kRanks * kWindow;
  CHECK(computed - kBlocks <= 2 * per_change,
        "blocks computed twice over both teachers: %" PRIu64 " for 2 changes of owner (bound: 2 x (lead %d + windows %d))",
        computed - kBlocks, kLeadBlocks, kRanks * kWindow);
  CHECK(unique >= kBlocks && unique - kBlocks <= (uint64_t)kRanks * kWindow && changed > 0 &&
            computed - kBlocks <= changed + ma.again_evicted + mb.again_evicted + ma.again_rewind + mb.again_rewind +
                                      (unique - kBlocks),
        "counted: %" PRIu64 " computed again as 'teacher changed'; unique over both %" PRIu64 " (the stream has %d; "
        "at most the requests in flight when A left count twice as unique)",
        changed, unique, kBlocks);
  CHECK(ma.held + mb.held > 0, "pacing held %" PRIu64 " requests on A and %" PRIu64 " on B", ma.held, mb.held);
  return dl_test_summary("transport_sharing_teachers");
}
