// Acceptance of teacher discovery (dns:NAME:PORT): while two student ranks
// stream, a teacher added under the name is picked up and one removed from it
// is dropped, with every block delivered exactly once, in order. The name is
// resolved by a stub that reads a hosts-style file the test rewrites (glibc
// gives no per-process hosts file for dotted names); the teachers are real
// `distill teacher --synthetic` processes on 127.0.0.1 and 127.0.0.2, one
// port, as pods behind a headless Service would be.
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/timing.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "tests/transport/teacher_process.h"

enum { kBlocks = 3000, kRanks = 2 };
static const char *kName = "teachers.distill.test";

// The stub resolver: lines "NAME ADDR" of the file at ctx.
static int file_resolve(const char *name, char (*addrs)[DL_ADDR_MAX], int max, void *ctx, dl_err *err) {
  FILE *f = fopen(ctx, "r");
  if (!f) return dl_fail(err, "cannot read %s", (const char *)ctx);
  char line[512], host[256], addr[DL_ADDR_MAX];
  int n = 0;
  while (fgets(line, sizeof line, f) && n < max)
    if (sscanf(line, "%255s %63s", host, addr) == 2 && !strcmp(host, name)) snprintf(addrs[n++], DL_ADDR_MAX, "%s", addr);
  fclose(f);
  return n;
}

// Replaces the file whole (rename), so the resolver never reads half of it.
static void write_hosts(const char *path, const char *a, const char *b) {
  char tmp[256];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (a) fprintf(f, "%s %s\n", kName, a);
  if (b) fprintf(f, "%s %s\n", kName, b);
  fclose(f);
  rename(tmp, path);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  bind(fd, (struct sockaddr *)&sa, sizeof sa);
  getsockname(fd, (struct sockaddr *)&sa, &len);
  close(fd);
  return ntohs(sa.sin_port);
}

static int wait_for(const char *log, const char *needle, int count, double timeout_s) {
  double end = dl_now_seconds() + timeout_s;
  while (test_count_lines(log, needle) < count)
    if (dl_now_seconds() > end) return 0; else test_sleep(0.01);
  return 1;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const int port = free_port();
  char hosts[128], ep[2][64], out[2][128], log[2][128], spec[128];
  const char *addr[2] = {"127.0.0.1", "127.0.0.2"}, *ids[2] = {"teacher-a", "teacher-b"};
  snprintf(hosts, sizeof hosts, "/tmp/distill-discovery-%d.hosts", (int)getpid());
  snprintf(spec, sizeof spec, "dns:%s:%d", kName, port);
  pid_t pid[2];
  for (int i = 0; i < 2; i++) {
    snprintf(ep[i], sizeof ep[i], "tcp://%s:%d", addr[i], port);
    snprintf(out[i], sizeof out[i], "/tmp/distill-discovery-%d-%d.out", (int)getpid(), i);
    snprintf(log[i], sizeof log[i], "/tmp/distill-discovery-%d-%d.log", (int)getpid(), i);
    pid[i] = test_teacher_spawn(DISTILL_BIN, ep[i], ids[i], out[i], log[i]);
  }
  CHECK(pid[0] > 0 && pid[1] > 0, "teachers started on %s and %s", ep[0], ep[1]);
  write_hosts(hosts, addr[0], NULL);
  printf("%s resolves to %s only\n", kName, addr[0]);

  const char *teachers[1] = {spec};
  test_rank ranks[kRanks];
  for (uint32_t r = 0; r < kRanks; r++) {
    test_rank_init(&ranks[r], teachers, 1, "vits", r, kRanks, kBlocks);
    ranks[r].cfg.resolve = file_resolve;
    ranks[r].cfg.resolve_ctx = hosts;
    ranks[r].cfg.resolve_interval_ms = 100;
    ranks[r].cfg.dead_after_ms = 3000;  // a loaded machine must not pass for a dead teacher here
    ranks[r].seconds_per_block = 0.004;  // about 6 s of stream: room for both changes
    ranks[r].timeout_s = 60;
    test_rank_start(&ranks[r]);
  }
  CHECK(test_wait_progress(ranks, kRanks, kBlocks / 5, 20), "a fifth of the stream came from teacher-a alone");

  write_hosts(hosts, addr[0], addr[1]);
  double t0 = dl_now_seconds();
  int added = wait_for(log[1], "event=welcome", kRanks, 10);
  uint64_t at_added = test_progress(ranks, kRanks);
  CHECK(added && at_added < kBlocks, "both ranks joined teacher-b %.2f s after it was added to the name, "
        "at %llu of %d blocks", dl_now_seconds() - t0, (unsigned long long)at_added, kBlocks);

  CHECK(test_wait_progress(ranks, kRanks, kBlocks / 2, 20), "the stream went on to half with both teachers");
  // Teacher-a logs peer_lost when a rank says BYE (or falls silent).
  const int lost_before = test_count_lines(log[0], "event=peer_lost");
  write_hosts(hosts, addr[1], NULL);
  t0 = dl_now_seconds();
  int removed = wait_for(log[0], "event=peer_lost", lost_before + kRanks, 10);
  uint64_t at_removed = test_progress(ranks, kRanks);
  CHECK(removed && at_removed < kBlocks, "both ranks left teacher-a %.2f s after it was removed from the name, "
        "at %llu of %d blocks", dl_now_seconds() - t0, (unsigned long long)at_removed, kBlocks);

  for (int r = 0; r < kRanks; r++) test_rank_join(&ranks[r]);
  long computed_a = test_teacher_terminate(pid[0], out[0]);  // teacher-a ran to the end, unused
  long computed_b = test_teacher_terminate(pid[1], out[1]);
  printf("teacher-a computed %ld blocks, teacher-b %ld\n", computed_a, computed_b);

  uint64_t added_n = 0, removed_n = 0, deaths = 0, from_b = 0;
  for (int r = 0; r < kRanks; r++) {
    test_rank_check(&ranks[r]);
    dl_student_metrics_print(&ranks[r].metrics, "vits", (uint32_t)r, stdout);
    added_n += ranks[r].metrics.teachers_added;
    removed_n += ranks[r].metrics.teachers_removed;
    deaths += ranks[r].metrics.teacher_deaths;
    from_b += ranks[r].metrics.per_teacher_received[1];  // teacher-b took the second slot
  }
  CHECK(added_n == 2 * kRanks && removed_n == kRanks, "each rank added 2 teachers and removed 1 (%llu, %llu)",
        (unsigned long long)added_n, (unsigned long long)removed_n);
  CHECK(deaths == 0, "no teacher was declared dead: removal is not a failure (%llu)", (unsigned long long)deaths);
  // Teacher-a serves nothing once the ranks dropped it: at most the requests
  // in flight (a window per rank) beyond what was delivered by then.
  CHECK(computed_a > 0 && computed_a <= (long)at_removed + kRanks * 8,
        "teacher-a computed %ld blocks, none after its removal (%llu delivered by then)", computed_a,
        (unsigned long long)at_removed);
  CHECK(computed_b >= (long)(kBlocks - at_removed), "teacher-b served the rest (%ld >= %llu)", computed_b,
        (unsigned long long)(kBlocks - at_removed));
  CHECK(from_b > (uint64_t)(kBlocks - at_removed), "teacher-b also served blocks while teacher-a was there "
        "(%llu received from it, %llu after the removal)", (unsigned long long)from_b,
        (unsigned long long)(kBlocks - at_removed));
  for (int i = 0; i < 2; i++) {
    unlink(out[i]);
    unlink(log[i]);
  }
  unlink(hosts);
  return dl_test_summary("transport_discovery");
}
