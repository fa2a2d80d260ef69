// Shared by the transport tests: student ranks and teachers on threads, a
// synthetic stream, and checks that every rank got exactly its blocks, in
// order, with the right content.
#ifndef DISTILL_TESTS_TRANSPORT_STREAM_HELPERS_H
#define DISTILL_TESTS_TRANSPORT_STREAM_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "transport/student_client.h"
#include "transport/synthetic.h"
#include "transport/teacher_server.h"

// The synthetic stream every transport test uses (small blocks: 640 floats).
dl_synthetic_spec test_stream_spec(void);

typedef struct test_rank {
  dl_student_config cfg;       // filled by the test (teachers, group, rank, world, end_block...)
  dl_synthetic_spec spec;
  float tolerance;             // largest codec error allowed per value
  double seconds_per_block;    // throttle, to keep a stream running while a test acts
  double timeout_s;            // give up after this
  // results
  atomic_uint_fast64_t progress;  // blocks delivered so far (readable while running)
  uint64_t delivered, expected;
  uint64_t out_of_order, bad_content;
  int fatal;
  char error[512];
  dl_student_metrics metrics;
  pthread_t thread;
} test_rank;

// Fills the defaults: fast heartbeats, 0.5 s dead time, short request timeout.
void test_rank_init(test_rank *r, const char *const *teachers, int nteachers, const char *group,
                    uint32_t rank, uint32_t world, uint64_t nblocks);
void test_rank_start(test_rank *r);
void test_rank_join(test_rank *r);
// CHECKs exactly-once, in-order, content; returns 1 when everything held.
int test_rank_check(const test_rank *r);

typedef struct test_teacher {
  dl_teacher_server *server;
  pthread_t thread;
  int rc;
} test_teacher;

// A synthetic teacher on tcp://127.0.0.1:* (its port in endpoint()).
void test_teacher_config(dl_teacher_config *cfg, dl_synthetic_spec *spec);
int test_teacher_start(test_teacher *t, const dl_teacher_config *cfg);
void test_teacher_stop(test_teacher *t, dl_teacher_metrics *m);

// Sum of progress over ranks.
uint64_t test_progress(test_rank *ranks, int n);
// Waits until the n ranks delivered target blocks together: 1, or 0 after timeout_s.
int test_wait_progress(test_rank *ranks, int n, uint64_t target, double timeout_s);
void test_sleep(double seconds);

#endif
