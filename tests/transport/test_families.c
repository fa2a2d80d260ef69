// The teacher's family table (transport/teacher_families.h) on its own: which
// families need a block, who holds a request back, the states by time and
// progress, and the speed bookkeeping.
#include <stdio.h>

#include "tests/harness.h"
#include "transport/teacher_families.h"

static void needs_and_taken(void) {
  dl_families fs;
  dl_families_init(&fs, 30);
  // Family a: one phase at 224. Family b (2 ranks): 224 up to 80, then 518.
  const dl_plan_phase pa[1] = {{0, 100, 224}}, pb[2] = {{0, 80, 224}, {80, 100, 518}};
  dl_family *a = dl_families_hello(&fs, "a", 1, pa, 1, 0, 0, true);
  dl_families_hello(&fs, "b", 2, pb, 2, 0, 0, true);
  dl_family *b = dl_families_hello(&fs, "b", 2, pb, 2, 1, 1, true);
  a = dl_families_find(&fs, "a");
  CHECK(dl_family_plans(b, 79, 224) && !dl_family_plans(b, 80, 224) && dl_family_plans(b, 80, 518) &&
            !dl_family_plans(b, 100, 518),
        "plans: b has 79 at 224, 80 only at 518, nothing past 100");
  dl_families_cursor(a, 0, 51, 51, false);
  dl_families_cursor(b, 0, 50, 50, false);  // rank 0 takes even blocks: 50 is next
  dl_families_cursor(b, 1, 49, 53, false);  // rank 1: 49 is next, 51 has arrived
  CHECK(dl_family_taken(a, 50) && !dl_family_taken(b, 50) && dl_family_taken(b, 48) && !dl_family_taken(b, 49),
        "taken: a took 50; b's rank 0 took 48, not 50; rank 1 not 49");
  CHECK(dl_families_need(&fs, 50, 224) && !dl_families_need(&fs, 48, 224) && dl_families_need(&fs, 90, 224) &&
            dl_families_need(&fs, 90, 518) && !dl_families_need(&fs, 120, 224),
        "need: 50 (b), not 48 (both took it), 90 at 224 (a) and at 518 (b), not 120 (nobody's plan)");
  CHECK(dl_families_received_by_any(&fs, 51, 224) && !dl_families_received_by_any(&fs, 53, 224),
        "received: 51 reached b's rank 1 (and a took it); 53 reached nobody");
  CHECK(dl_family_position(a) == 51 && dl_family_position(b) == 49 && dl_families_lead(&fs, a) == 2,
        "positions: a 51, b 49 (its slowest rank); a leads by 2");
  dl_families_free(&fs);
}

static void holding(void) {
  dl_families fs;
  dl_families_init(&fs, 30);
  const dl_plan_phase p[1] = {{0, 1000, 224}}, solo[1] = {{0, 1000, 518}};
  dl_family *fast = dl_families_hello(&fs, "fast", 1, p, 1, 0, 100, true);
  dl_families_hello(&fs, "slow", 1, p, 1, 0, 40, true);
  dl_families_hello(&fs, "other", 1, solo, 1, 0, 0, true);
  fast = dl_families_find(&fs, "fast");
  dl_family *slow = dl_families_find(&fs, "slow");
  const dl_family *h = dl_families_holder(&fs, fast, 105, 224, 50);
  CHECK(h == slow, "fast asking block 105 while slow is at 40 with a lead of 50: held by slow");
  CHECK(!dl_families_holder(&fs, fast, 90, 224, 50), "block 90 (within 40 + 50): not held");
  CHECK(!dl_families_holder(&fs, slow, 300, 224, 50), "the slower family is never held by a faster one");
  CHECK(!dl_families_holder(&fs, fast, 105, 300, 50), "a block at a resolution no other family plans: never held");
  CHECK(dl_families_holder(&fs, fast, 105, 518, 50) == dl_families_find(&fs, "other"),
        "at 518 the family that plans it (other, at 0) holds it");
  dl_families_cursor(slow, 0, 60, 60, false);
  CHECK(!dl_families_holder(&fs, fast, 105, 224, 50), "slow moved to 60: 105 goes");
  dl_families_free(&fs);
}

static void states(void) {
  dl_families fs;
  dl_families_init(&fs, 2.0);
  const dl_plan_phase p[1] = {{0, 10, 224}};
  dl_families_hello(&fs, "gone", 1, p, 1, 0, 3, true);
  dl_families_hello(&fs, "bye", 1, p, 1, 0, 3, true);
  dl_families_hello(&fs, "done", 1, p, 1, 0, 3, true);
  dl_family *gone = dl_families_find(&fs, "gone"), *bye = dl_families_find(&fs, "bye"), *done = dl_families_find(&fs, "done");
  dl_families_peer_gone(gone, false, 100.0);
  dl_families_peer_gone(bye, true, 100.0);
  dl_families_cursor(done, 0, 10, 10, false);
  dl_families_tick(&fs, 101.0);
  CHECK(gone->state == DL_FAMILY_ATTACHED && dl_family_holds_others(gone) && dl_family_keeps_blocks(gone),
        "silent for 1 s of a 2 s grace: still attached (holds others, keeps its blocks)");
  CHECK(bye->state == DL_FAMILY_LEFT && !dl_family_holds_others(bye) && dl_family_keeps_blocks(bye),
        "said BYE 1 s ago: left (keeps its blocks, holds nobody)");
  CHECK(done->state == DL_FAMILY_FINISHED && !dl_family_keeps_blocks(done), "cursor past the plan's end: finished");
  dl_families_tick(&fs, 102.5);
  CHECK(gone->state == DL_FAMILY_DETACHED && bye->state == DL_FAMILY_DETACHED, "past the grace: both detached");
  dl_families_hello(&fs, "gone", 1, p, 1, 0, 1, true);
  dl_families_tick(&fs, 103.0);
  CHECK(gone->state == DL_FAMILY_ATTACHED && dl_family_position(gone) == 1,
        "HELLO again (a resume from block 1): attached, paced from its own cursor");
  dl_families_free(&fs);
}

static void speed(void) {
  dl_families fs;
  dl_families_init(&fs, 30);
  const dl_plan_phase p[1] = {{0, 1000, 224}};
  dl_family *f = dl_families_hello(&fs, "f", 1, p, 1, 0, 0, true);
  double t = 10.0;
  dl_families_tick(&fs, t);
  for (int i = 1; i <= 20; i++) {  // 10 blocks/s while not paced, then 1 s held
    t += 0.1;
    dl_families_cursor(f, 0, (uint64_t)i, (uint64_t)i, false);
    dl_families_tick(&fs, t);
  }
  f->paced_now = true;
  dl_families_tick(&fs, t + 1.0);
  f->paced_now = false;
  CHECK(f->paced_seconds > 0.99 && f->paced_seconds < 1.01 && dl_family_rate(f) > 9.9 && dl_family_rate(f) < 10.1,
        "speed: 20 blocks in 2 s unpaced = %.2f blocks/s; 1 s paced counted apart (%.2f s)", dl_family_rate(f),
        f->paced_seconds);
  dl_families_free(&fs);
}

int main(void) {
  needs_and_taken();
  holding();
  states();
  speed();
  return dl_test_summary("transport_families");
}
