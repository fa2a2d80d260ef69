#include "tests/transport/stream_helpers.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/timing.h"
#include "tests/harness.h"

dl_synthetic_spec test_stream_spec(void) {
  return (dl_synthetic_spec){.dim = 16, .patches = 4, .crops = 2, .block_size = 4};
}

void test_sleep(double seconds) {
  struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  nanosleep(&ts, NULL);
}

void test_rank_init(test_rank *r, const char *const *teachers, int nteachers, const char *group,
                    uint32_t rank, uint32_t world, uint64_t nblocks) {
  memset(r, 0, sizeof *r);
  dl_student_config_defaults(&r->cfg);
  r->cfg.teachers = teachers;
  r->cfg.nteachers = nteachers;
  r->cfg.group = group;
  r->cfg.rank = rank;
  r->cfg.world = world;
  r->cfg.end_block = nblocks;
  r->cfg.resolution = 224;
  r->cfg.window = 8;
  r->cfg.heartbeat_ms = 100;
  r->cfg.dead_after_ms = 500;
  r->cfg.request_timeout_ms = 1000;
  r->cfg.quiet = true;
  r->spec = test_stream_spec();
  r->timeout_s = 40;
  r->expected = nblocks > rank ? (nblocks - rank + world - 1) / world : 0;
}

static void *rank_main(void *arg) {
  test_rank *r = arg;
  dl_err err = {{0}};
  dl_student_client *c = dl_student_client_create(&r->cfg, &err);
  if (!c) {
    r->fatal = 1;
    snprintf(r->error, sizeof r->error, "%s", err.msg);
    return NULL;
  }
  double deadline = dl_now_seconds() + r->timeout_s;
  uint64_t k = 0;
  while (!dl_student_client_done(c) && dl_now_seconds() < deadline) {
    dl_target_block b;
    int rc = dl_student_client_next(c, &b, 200, &err);
    if (rc < 0) {
      r->fatal = 1;
      snprintf(r->error, sizeof r->error, "%s", err.msg);
      break;
    }
    if (rc == 0) continue;
    uint64_t want = r->cfg.rank + k * r->cfg.world;
    if (b.block != want) r->out_of_order++;
    dl_err verr;
    if (dl_synthetic_verify(&r->spec, &b, want, r->cfg.resolution, r->tolerance, 1, &verr)) {
      if (r->bad_content++ == 0) snprintf(r->error, sizeof r->error, "%s", verr.msg);
    }
    dl_target_block_free(&b);
    k++;
    r->delivered++;
    atomic_fetch_add(&r->progress, 1);
    if (r->seconds_per_block > 0) test_sleep(r->seconds_per_block);
  }
  r->metrics = dl_student_client_metrics(c);
  dl_student_client_destroy(c);
  return NULL;
}

void test_rank_start(test_rank *r) { pthread_create(&r->thread, NULL, rank_main, r); }
void test_rank_join(test_rank *r) { pthread_join(r->thread, NULL); }

int test_rank_check(const test_rank *r) {
  int before = dl_test_failures;
  CHECK(!r->fatal, "group %s rank %u/%u: no fatal error (%s)", r->cfg.group, r->cfg.rank,
        r->cfg.world, r->fatal ? r->error : "none");
  CHECK(r->delivered == r->expected, "group %s rank %u/%u: %llu blocks delivered, %llu expected",
        r->cfg.group, r->cfg.rank, r->cfg.world, (unsigned long long)r->delivered,
        (unsigned long long)r->expected);
  CHECK(r->out_of_order == 0 && r->bad_content == 0,
        "group %s rank %u/%u: every block in order (%llu not) and equal to the teacher's (%llu not) %s",
        r->cfg.group, r->cfg.rank, r->cfg.world, (unsigned long long)r->out_of_order,
        (unsigned long long)r->bad_content, r->bad_content ? r->error : "");
  return dl_test_failures == before;
}

uint64_t test_progress(test_rank *ranks, int n) {
  uint64_t s = 0;
  for (int i = 0; i < n; i++) s += atomic_load(&ranks[i].progress);
  return s;
}

void test_teacher_config(dl_teacher_config *cfg, dl_synthetic_spec *spec) {
  dl_teacher_config_defaults(cfg);
  *spec = test_stream_spec();
  cfg->bind = "tcp://127.0.0.1:*";
  cfg->compute_block = dl_synthetic_compute;
  cfg->compute_user = spec;
  cfg->heartbeat_ms = 100;
  cfg->dead_after_ms = 500;
  cfg->cache_bytes = 64u << 20;
  cfg->quiet = true;
}

static void *teacher_main(void *arg) {
  test_teacher *t = arg;
  t->rc = dl_teacher_server_run(t->server);
  return NULL;
}

int test_teacher_start(test_teacher *t, const dl_teacher_config *cfg) {
  dl_err err;
  t->server = dl_teacher_server_create(cfg, &err);
  if (!t->server) {
    printf("teacher: %s\n", err.msg);
    return -1;
  }
  pthread_create(&t->thread, NULL, teacher_main, t);
  return 0;
}

void test_teacher_stop(test_teacher *t, dl_teacher_metrics *m) {
  dl_teacher_server_stop(t->server);
  pthread_join(t->thread, NULL);
  if (m) *m = dl_teacher_server_metrics(t->server);
  dl_teacher_server_destroy(t->server);
}

int test_wait_progress(test_rank *ranks, int n, uint64_t target, double timeout_s) {
  double end = dl_now_seconds() + timeout_s;
  while (test_progress(ranks, n) < target)
    if (dl_now_seconds() > end) return 0; else test_sleep(0.005);
  return 1;
}
