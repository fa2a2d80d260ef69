// Acceptance: two teachers split the blocks by rendezvous hashing; one is
// killed with SIGKILL mid-stream and the students finish from the other with
// no block missing or duplicated; restarted, it rejoins and takes its share.
// The teachers are real `distill teacher` processes on ipc:// endpoints.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timing.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "tests/transport/teacher_process.h"
#include "transport/rendezvous.h"

enum { kBlocks = 2000, kRanks = 2 };

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  char ep[2][128], out[3][128];
  const char *ids[2] = {"teacher-a", "teacher-b"};
  for (int i = 0; i < 2; i++) snprintf(ep[i], sizeof ep[i], "ipc:///tmp/distill-failover-%d-%d", (int)getpid(), i);
  for (int i = 0; i < 3; i++) snprintf(out[i], sizeof out[i], "/tmp/distill-failover-%d-%d.out", (int)getpid(), i);
  pid_t a = test_teacher_spawn(DISTILL_BIN, ep[0], ids[0], out[0], NULL);
  pid_t b = test_teacher_spawn(DISTILL_BIN, ep[1], ids[1], out[1], NULL);
  CHECK(a > 0 && b > 0, "two teachers started (%s, %s)", ep[0], ep[1]);

  // How rendezvous hashing splits this stream between the two ids.
  bool live[2] = {true, true};
  int share_a = 0;
  for (uint64_t blk = 0; blk < kBlocks; blk++) share_a += dl_rendezvous_pick(ids, live, 2, blk) == 0;
  printf("rendezvous: teacher-a owns %d of %d blocks\n", share_a, kBlocks);

  const char *teachers[2] = {ep[0], ep[1]};
  test_rank ranks[kRanks];
  for (uint32_t r = 0; r < kRanks; r++) {
    test_rank_init(&ranks[r], teachers, 2, "vitl", r, kRanks, kBlocks);
    ranks[r].seconds_per_block = 0.002;  // about 2 s of stream, so the kill lands mid-way
    test_rank_start(&ranks[r]);
  }
  CHECK(test_wait_progress(ranks, kRanks, kBlocks / 4, 20), "a quarter of the stream arrived before the kill");
  kill(a, SIGKILL);
  waitpid(a, NULL, 0);
  uint64_t at_kill = test_progress(ranks, kRanks);
  printf("killed teacher-a (SIGKILL) at %llu blocks delivered\n", (unsigned long long)at_kill);
  CHECK(test_wait_progress(ranks, kRanks, kBlocks / 2, 20), "the stream went on past half without teacher-a");
  uint64_t at_restart = test_progress(ranks, kRanks);
  a = test_teacher_spawn(DISTILL_BIN, ep[0], ids[0], out[2], NULL);
  printf("restarted teacher-a at %llu blocks delivered\n", (unsigned long long)at_restart);
  for (int r = 0; r < kRanks; r++) test_rank_join(&ranks[r]);
  long computed_a2 = test_teacher_terminate(a, out[2]);
  long computed_b = test_teacher_terminate(b, out[1]);
  printf("teacher-b computed %ld blocks; restarted teacher-a computed %ld\n", computed_b, computed_a2);

  uint64_t deaths = 0, restarts = 0, failovers = 0;
  for (int r = 0; r < kRanks; r++) {
    test_rank_check(&ranks[r]);
    dl_student_metrics_print(&ranks[r].metrics, "vitl", (uint32_t)r, stdout);
    deaths += ranks[r].metrics.teacher_deaths;
    restarts += ranks[r].metrics.teacher_restarts;
    failovers += ranks[r].metrics.failovers + ranks[r].metrics.timeouts;
  }
  CHECK(share_a > kBlocks / 3 && share_a < 2 * kBlocks / 3, "rendezvous gives each teacher a fair share (%d of %d)", share_a, kBlocks);
  CHECK(deaths >= kRanks, "every rank saw teacher-a die (%llu deaths)", (unsigned long long)deaths);
  // Often zero: requests sent after the kill fail at once (IMMEDIATE) and are
  // simply sent elsewhere once teacher-a is declared dead.
  printf("requests moved off teacher-a after its death: %llu\n", (unsigned long long)failovers);
  CHECK(restarts >= kRanks, "every rank saw teacher-a come back (%llu restarts)", (unsigned long long)restarts);
  CHECK(computed_b > kBlocks - share_a, "teacher-b computed its own %d blocks plus failed-over ones (%ld)",
        kBlocks - share_a, computed_b);
  // After the restart about half of the remaining blocks belong to teacher-a.
  long remaining = (long)(kBlocks - at_restart);
  CHECK(computed_a2 > remaining / 4, "restarted teacher-a took its share again: %ld of the last %ld blocks",
        computed_a2, remaining);
  for (int i = 0; i < 3; i++) unlink(out[i]);
  for (int i = 0; i < 2; i++) unlink(ep[i] + strlen("ipc://"));  // the socket files stay after a SIGKILL
  return dl_test_summary("transport_failover");
}
