// The student client's I/O thread: heartbeats go out while the caller is busy
// elsewhere (a trainer in a long step keeps its session), every REQUEST and
// HEARTBEAT carries the rank's cursor and HELLO its stream text and plan, a
// BYE at the end says finished, and a teacher's HOLD keeps a request alive
// past request_timeout_ms without a second request. The last three are seen
// from a raw ROUTER socket standing in for the teacher.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/timing.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/synthetic.h"
#include "transport/wire.h"

// ---- (a) a busy caller keeps its session with a real teacher

typedef struct metrics_reader {
  dl_student_client *client;
  atomic_bool stop;
  uint64_t reads;
  pthread_t thread;
} metrics_reader;

// Reads the metrics from another thread all the time (they must be safe to
// read there while the I/O thread and the caller run).
static void *read_metrics(void *arg) {
  metrics_reader *r = arg;
  while (!atomic_load(&r->stop)) {
    dl_student_metrics m = dl_student_client_metrics(r->client);
    (void)m;
    (void)dl_student_client_done(r->client);
    r->reads++;
    test_sleep(0.001);
  }
  return NULL;
}

// Waits until the client holds n received blocks; 1, or 0 after timeout_s.
static int wait_received(dl_student_client *c, uint64_t n, double timeout_s) {
  for (double end = dl_now_seconds() + timeout_s; dl_now_seconds() < end; test_sleep(0.01))
    if (dl_student_client_metrics(c).received >= n) return 1;
  return 0;
}

static void busy_caller_keeps_session(void) {
  enum { kBlocks = 8, kWindow = 4, kSlowSteps = 2 };
  dl_teacher_config tcfg;
  dl_synthetic_spec spec;
  test_teacher_config(&tcfg, &spec);  // forgets a student silent for 500 ms
  test_teacher t;
  if (test_teacher_start(&t, &tcfg)) {
    CHECK(0, "busy caller: teacher started");
    return;
  }
  const char *endpoint = dl_teacher_server_endpoint(t.server);
  test_rank r;  // only for its configuration
  test_rank_init(&r, &endpoint, 1, "busy", 0, 1, kBlocks);
  r.cfg.window = kWindow;
  dl_err err;
  dl_student_client *c = dl_student_client_create(&r.cfg, &err);
  if (!c) {
    CHECK(0, "busy caller: client created (%s)", err.msg);
    test_teacher_stop(&t, NULL);
    return;
  }
  metrics_reader reader = {.client = c};
  atomic_init(&reader.stop, false);
  pthread_create(&reader.thread, NULL, read_metrics, &reader);
  CHECK(wait_received(c, kWindow, 10), "busy caller: the window of %d blocks filled before any next()", kWindow);
  uint64_t got = 0, in_order = 0;
  for (int step = 0; step < kBlocks; step++) {
    // A trainer step 4 x dead_after long, with every window position ready.
    if (step < kSlowSteps) test_sleep(2.0);
    dl_target_block b;
    if (dl_student_client_next(c, &b, 10000, &err) != 1) break;
    got++;
    in_order += b.block == (uint64_t)step &&
                dl_synthetic_verify(&spec, &b, (uint64_t)step, r.cfg.resolution, 0, 1, &err) == 0;
    dl_target_block_free(&b);
  }
  atomic_store(&reader.stop, true);
  pthread_join(reader.thread, NULL);
  dl_student_metrics m = dl_student_client_metrics(c);
  dl_student_client_destroy(c);
  test_sleep(0.3);  // the teacher handles the BYE
  dl_teacher_metrics tm;
  test_teacher_stop(&t, &tm);
  dl_teacher_metrics_print(&tm, stdout);
  dl_student_metrics_print(&m, "busy", 0, stdout);
  CHECK(got == kBlocks && in_order == kBlocks, "busy caller: %llu of %d blocks, %llu in order with the right content",
        (unsigned long long)got, kBlocks, (unsigned long long)in_order);
  CHECK(tm.peers_silent == 0 && tm.peers_lost == 1 && tm.peers_welcomed == 1,
        "busy caller: after %d steps of 2 s (teacher dead_after 500 ms) the teacher never found the student silent "
        "(%llu silent, %llu lost: the BYE; %llu welcomed)",
        kSlowSteps, (unsigned long long)tm.peers_silent, (unsigned long long)tm.peers_lost,
        (unsigned long long)tm.peers_welcomed);
  CHECK(m.teacher_deaths == 0 && m.rerequested == 0 && m.timeouts == 0 && m.requested == kBlocks,
        "busy caller: no failover, time-out or second request (%llu deaths, %llu asked again, %llu requested)",
        (unsigned long long)m.teacher_deaths, (unsigned long long)m.rerequested, (unsigned long long)m.requested);
  CHECK(reader.reads > 100, "busy caller: another thread read the metrics %llu times meanwhile",
        (unsigned long long)reader.reads);
}

// ---- a raw ROUTER standing in for the teacher

typedef struct fake_teacher {
  void *ctx, *router;
  char endpoint[128];
  uint8_t rid[256];
  size_t rid_len;
  dl_synthetic_spec spec;
  // every cursor the student sent in REQUEST and HEARTBEAT, in order
  uint64_t cursors[4096];
  int ncursors;
  int requests;  // REQUESTs seen
} fake_teacher;

static int fake_open(fake_teacher *f) {
  memset(f, 0, sizeof *f);
  f->spec = test_stream_spec();
  f->ctx = zmq_ctx_new();
  f->router = zmq_socket(f->ctx, ZMQ_ROUTER);
  int zero = 0;
  zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
  if (zmq_bind(f->router, "tcp://127.0.0.1:*") != 0) return -1;
  size_t n = sizeof f->endpoint;
  zmq_getsockopt(f->router, ZMQ_LAST_ENDPOINT, f->endpoint, &n);
  return 0;
}

static void fake_close(fake_teacher *f) {
  zmq_close(f->router);
  zmq_ctx_term(f->ctx);
}

// The next message from the student within timeout_s, decoded (free with
// dl_envelope_free); NULL when none came. Records the cursors it carries.
static dl_envelope *fake_recv(fake_teacher *f, double timeout_s) {
  zmq_pollitem_t item = {f->router, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&item, 1, (long)(timeout_s * 1000)) <= 0) return NULL;
  dl_wire_msg m;
  if (dl_wire_recv(f->router, &m) <= 0) return NULL;
  dl_envelope *e = NULL;
  dl_err err;
  size_t rid_len, n;
  const uint8_t *rid = dl_wire_frame(&m, 0, &rid_len);
  if (m.nframes == 2 && rid_len <= sizeof f->rid) {
    memcpy(f->rid, rid, rid_len);
    f->rid_len = rid_len;
    const uint8_t *data = dl_wire_frame(&m, 1, &n);
    if (dl_envelope_decode(data, n, &e, &err)) printf("fake teacher: %s\n", err.msg);
  }
  dl_wire_msg_close(&m);
  if (e && f->ncursors < (int)(sizeof f->cursors / sizeof f->cursors[0])) {
    if (e->body_case == DISTILL__ENVELOPE__BODY_REQUEST) f->cursors[f->ncursors++] = e->request->cursor;
    if (e->body_case == DISTILL__ENVELOPE__BODY_HEARTBEAT) f->cursors[f->ncursors++] = e->heartbeat->cursor;
  }
  if (e && e->body_case == DISTILL__ENVELOPE__BODY_REQUEST) f->requests++;
  return e;
}

// The next message of one kind within timeout_s (others are skipped, their
// cursors recorded); NULL when none came.
static dl_envelope *fake_expect(fake_teacher *f, Distill__Envelope__BodyCase kind, double timeout_s) {
  for (double end = dl_now_seconds() + timeout_s; dl_now_seconds() < end;) {
    dl_envelope *e = fake_recv(f, end - dl_now_seconds());
    if (e && e->body_case == kind) return e;
    dl_envelope_free(e);
  }
  return NULL;
}

static void fake_send(fake_teacher *f, dl_envelope *e) {
  dl_wire_send_envelope(f->router, f->rid, f->rid_len, e);
}

static void fake_welcome(fake_teacher *f) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Welcome w = DISTILL__WELCOME__INIT;
  w.teacher_id = "fake";
  w.incarnation = 1;
  w.embed_dim = f->spec.dim;
  w.patch_tokens = f->spec.patches;
  w.weights_hash = 0x5eed;
  w.heartbeat_ms = 100;
  e.body_case = DISTILL__ENVELOPE__BODY_WELCOME;
  e.welcome = &w;
  fake_send(f, &e);
}

static void fake_hold(fake_teacher *f, uint64_t block, uint32_t res) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Hold h = DISTILL__HOLD__INIT;
  h.n_blocks = 1;
  h.blocks = &block;
  h.resolution = res;
  e.body_case = DISTILL__ENVELOPE__BODY_HOLD;
  e.hold = &h;
  fake_send(f, &e);
}

// Sends the synthetic block as the teacher would (f32, CRC32C). 0 or -1.
static int fake_block(fake_teacher *f, uint64_t block, uint32_t res) {
  dl_target_block tb = {0};
  dl_err err;
  dl_codec_spec codecs;
  if (dl_codec_spec_parse("f32", &codecs, &err) || dl_synthetic_compute(&f->spec, block, res, &tb, &err)) {
    printf("fake teacher: %s\n", err.msg);
    return -1;
  }
  dl_encoded_block *eb = dl_encode_block(&tb, &codecs, 0, &err);
  dl_target_block_free(&tb);
  if (!eb) {
    printf("fake teacher: %s\n", err.msg);
    return -1;
  }
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(eb, &n);
  int rc = dl_wire_send(f->router, f->rid, f->rid_len, env, n, eb);
  free(env);
  dl_encoded_block_unref(eb);
  return rc == DL_WIRE_SENT ? 0 : -1;
}

// A student of the fake teacher: no teacher heartbeats needed (long dead time).
static void fake_student_config(dl_student_config *cfg, const char *const *endpoint, uint64_t blocks) {
  dl_student_config_defaults(cfg);
  cfg->teachers = endpoint;
  cfg->nteachers = 1;
  cfg->group = "raw";
  cfg->end_block = blocks;
  cfg->heartbeat_ms = 100;
  cfg->dead_after_ms = 20000;
  cfg->request_timeout_ms = 20000;
  cfg->quiet = true;
}

// HELLO arrives; the fake answers WELCOME. Returns the HELLO.
static dl_envelope *handshake(fake_teacher *f) {
  dl_envelope *hello = fake_expect(f, DISTILL__ENVELOPE__BODY_HELLO, 5);
  if (hello) fake_welcome(f);
  return hello;
}

// ---- (b) the cursor, the stream text, the plan and BYE finished

static bool request_is(const dl_envelope *e, const uint64_t *blocks, size_t n, uint64_t cursor) {
  if (!e || e->request->n_blocks != n || e->request->cursor != cursor || e->request->resolution != 224) return false;
  for (size_t i = 0; i < n; i++)
    if (e->request->blocks[i] != blocks[i]) return false;
  return true;
}

// Takes the next block; it must be `want`.
static bool take(dl_student_client *c, uint64_t want) {
  dl_target_block b;
  dl_err err;
  int rc = dl_student_client_next(c, &b, 5000, &err);
  bool ok = rc == 1 && b.block == want;
  if (rc == 1) dl_target_block_free(&b);
  return ok;
}

static void cursor_and_hello(void) {
  fake_teacher f;
  if (fake_open(&f)) {
    CHECK(0, "cursor: fake teacher bound");
    return;
  }
  const char *ep = f.endpoint;
  // Rank 1 of 2 resuming at its block index 1: blocks 3, 5, 7, 9, 11 (< 12).
  const dl_plan_phase plan[2] = {{0, 8, 224}, {8, 12, 448}};
  const char *stream = "data=synthetic;seed=7;crops=2x224";
  dl_student_config cfg;
  fake_student_config(&cfg, &ep, 12);
  cfg.rank = 1, cfg.world = 2, cfg.start_index = 1, cfg.window = 2;
  cfg.recipe_hash = 0xfeedf00d;
  cfg.stream_text = stream;
  cfg.plan = plan;
  cfg.nplan = 2;
  dl_err err;
  dl_student_client *c = dl_student_client_create(&cfg, &err);
  if (!c) {
    CHECK(0, "cursor: client created (%s)", err.msg);
    fake_close(&f);
    return;
  }
  dl_envelope *hello = handshake(&f);
  const Distill__Hello *h = hello ? hello->hello : NULL;
  CHECK(h && !strcmp(h->stream, stream) && h->recipe_hash == 0xfeedf00d && h->rank == 1 && h->world == 2,
        "HELLO carries the stream text '%s' and hash", h ? h->stream : "(no HELLO)");
  CHECK(h && h->n_plan == 2 && h->plan[0]->first_block == 0 && h->plan[0]->end_block == 8 &&
            h->plan[0]->resolution == 224 && h->plan[1]->first_block == 8 && h->plan[1]->end_block == 12 &&
            h->plan[1]->resolution == 448,
        "HELLO carries the plan [0, 8) at 224, [8, 12) at 448 (%zu phases)", h ? h->n_plan : 0);
  CHECK(h && h->cursor == 3, "HELLO's cursor is the first block of the resumed rank: %llu (3)",
        h ? (unsigned long long)h->cursor : 0ULL);
  dl_envelope_free(hello);

  dl_envelope *r = fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5);
  CHECK(request_is(r, (uint64_t[]){3, 5}, 2, 3), "the first REQUEST is for blocks 3 and 5 with cursor 3");
  dl_envelope_free(r);
  fake_block(&f, 3, 224);
  fake_block(&f, 5, 224);
  // Each block taken frees a window position, requested at once with the new cursor.
  CHECK(take(c, 3), "next() gives block 3");
  r = fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5);
  CHECK(request_is(r, (uint64_t[]){7}, 1, 5), "after block 3 is taken: REQUEST for block 7 with cursor 5");
  dl_envelope_free(r);
  CHECK(take(c, 5), "next() gives block 5");
  r = fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5);
  CHECK(request_is(r, (uint64_t[]){9}, 1, 7), "after block 5 is taken: REQUEST for block 9 with cursor 7");
  dl_envelope_free(r);
  dl_envelope *hb = fake_expect(&f, DISTILL__ENVELOPE__BODY_HEARTBEAT, 2);
  CHECK(hb && hb->heartbeat->cursor == 7, "a HEARTBEAT meanwhile carries cursor %llu (7)",
        hb ? (unsigned long long)hb->heartbeat->cursor : 0ULL);
  dl_envelope_free(hb);
  fake_block(&f, 7, 224);
  fake_block(&f, 9, 224);
  CHECK(take(c, 7), "next() gives block 7");
  r = fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5);
  CHECK(request_is(r, (uint64_t[]){11}, 1, 9), "REQUEST for block 11, the rank's last, with cursor 9");
  dl_envelope_free(r);
  CHECK(take(c, 9), "next() gives block 9 (nothing left to request)");
  // next() waits for block 11 before the fake teacher sends it: the client
  // says so at once (a HEARTBEAT with waiting, cursor 11) and keeps saying it
  // after next()'s time-out (the trainer still waits for that block).
  dl_target_block none;
  dl_err none_err;
  CHECK(dl_student_client_next(c, &none, 300, &none_err) == 0, "next() times out waiting for block 11");
  bool saw_waiting = false;
  for (int i = 0; i < 6 && !saw_waiting; i++) {
    hb = fake_expect(&f, DISTILL__ENVELOPE__BODY_HEARTBEAT, 2);
    if (!hb) break;
    saw_waiting = hb->heartbeat->waiting && hb->heartbeat->cursor == 11;
    dl_envelope_free(hb);
  }
  CHECK(saw_waiting, "while next() waited for block 11 a HEARTBEAT said so (cursor 11, waiting)");
  fake_block(&f, 11, 224);
  CHECK(take(c, 11) && dl_student_client_done(c), "next() gives block 11 and the stream is done");
  // The end of the wait goes out at once, with the new cursor.
  uint64_t last_cursor = 0;
  bool still_waiting = true;
  for (int i = 0; i < 6 && last_cursor != 13; i++) {
    hb = fake_expect(&f, DISTILL__ENVELOPE__BODY_HEARTBEAT, 2);
    if (!hb) break;
    last_cursor = hb->heartbeat->cursor;
    still_waiting = hb->heartbeat->waiting;
    dl_envelope_free(hb);
  }
  CHECK(!still_waiting, "after block 11 the HEARTBEAT says the trainer no longer waits");
  CHECK(last_cursor == 13, "a HEARTBEAT after the last block carries cursor %llu (13: past the end)",
        (unsigned long long)last_cursor);
  dl_student_client_destroy(c);
  dl_envelope *bye = fake_expect(&f, DISTILL__ENVELOPE__BODY_BYE, 2);
  CHECK(bye && bye->bye->finished, "BYE says finished (the rank took its last block)");
  dl_envelope_free(bye);
  bool ascending = true;
  for (int i = 1; i < f.ncursors; i++) ascending &= f.cursors[i] >= f.cursors[i - 1];
  CHECK(ascending && f.ncursors >= 7 && f.cursors[0] == 3 && f.cursors[f.ncursors - 1] == 13,
        "the %d cursors in REQUESTs and HEARTBEATs never went back, from %llu to %llu", f.ncursors,
        (unsigned long long)(f.ncursors ? f.cursors[0] : 0), (unsigned long long)(f.ncursors ? f.cursors[f.ncursors - 1] : 0));
  fake_close(&f);
}

// BYE before the stream's end says not finished.
static void bye_unfinished(void) {
  fake_teacher f;
  if (fake_open(&f)) return;
  const char *ep = f.endpoint;
  dl_student_config cfg;
  fake_student_config(&cfg, &ep, 4);
  cfg.window = 1;
  dl_err err;
  dl_student_client *c = dl_student_client_create(&cfg, &err);
  dl_envelope *hello = c ? handshake(&f) : NULL;
  // The default plan: one phase, the stream [0, end_block) at the resolution.
  CHECK(hello && hello->hello->n_plan == 1 && hello->hello->plan[0]->first_block == 0 &&
            hello->hello->plan[0]->end_block == 4 && hello->hello->plan[0]->resolution == 224 &&
            !strcmp(hello->hello->stream, ""),
        "without a plan HELLO carries [0, 4) at 224, and an empty stream text");
  dl_envelope_free(hello);
  dl_envelope *r = fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5);
  dl_envelope_free(r);
  dl_student_client_destroy(c);
  dl_envelope *bye = fake_expect(&f, DISTILL__ENVELOPE__BODY_BYE, 2);
  CHECK(bye && !bye->bye->finished, "a rank leaving before its last block says BYE, not finished");
  dl_envelope_free(bye);
  fake_close(&f);
}

// ---- (c) HOLD keeps a request alive past request_timeout_ms

typedef struct waiter {
  dl_student_client *c;
  int rc;
  uint64_t block;
  double seconds;
  pthread_t thread;
} waiter;

static void *wait_for_block(void *arg) {
  waiter *w = arg;
  dl_target_block b;
  dl_err err;
  double t0 = dl_now_seconds();
  w->rc = dl_student_client_next(w->c, &b, 10000, &err);
  w->seconds = dl_now_seconds() - t0;
  if (w->rc == 1) w->block = b.block, dl_target_block_free(&b);
  return NULL;
}

// The fake teacher answers the first REQUEST only after 3 x the request
// time-out, sending HOLD every 100 ms meanwhile when `hold`. Returns the
// student's metrics; *extra gets the REQUESTs seen after the first.
static dl_student_metrics held_request(bool hold, int *extra, waiter *w) {
  enum { kTimeoutMs = 300 };
  dl_student_metrics m = {0};
  fake_teacher f;
  if (fake_open(&f)) return m;
  const char *ep = f.endpoint;
  dl_student_config cfg;
  fake_student_config(&cfg, &ep, 1);
  cfg.window = 1;
  cfg.request_timeout_ms = kTimeoutMs;
  dl_err err;
  dl_student_client *c = dl_student_client_create(&cfg, &err);
  if (!c) return m;
  *w = (waiter){.c = c};
  pthread_create(&w->thread, NULL, wait_for_block, w);
  dl_envelope_free(handshake(&f));
  dl_envelope_free(fake_expect(&f, DISTILL__ENVELOPE__BODY_REQUEST, 5));
  int first = f.requests;
  for (double end = dl_now_seconds() + 3 * kTimeoutMs / 1000.0; dl_now_seconds() < end;) {
    if (hold) fake_hold(&f, 0, 224);
    // Listen for 100 ms: a second REQUEST would show here.
    for (double tick = dl_now_seconds() + 0.1; dl_now_seconds() < tick;)
      dl_envelope_free(fake_recv(&f, tick - dl_now_seconds()));
  }
  *extra = f.requests - first;
  fake_block(&f, 0, 224);
  pthread_join(w->thread, NULL);
  m = dl_student_client_metrics(c);
  dl_student_client_destroy(c);
  fake_close(&f);
  return m;
}

static void hold_keeps_request(void) {
  int extra = 0;
  waiter w;
  dl_student_metrics m = held_request(true, &extra, &w);
  dl_student_metrics_print(&m, "raw", 0, stdout);
  CHECK(w.rc == 1 && w.block == 0, "held: block 0 arrived after %.2f s (rc %d)", w.seconds, w.rc);
  CHECK(m.timeouts == 0 && m.requested == 1 && m.rerequested == 0 && extra == 0,
        "held: HOLDs for 0.9 s (3 x the 300 ms time-out) kept the one request (%llu time-outs, %llu requested, "
        "%d more REQUESTs seen)",
        (unsigned long long)m.timeouts, (unsigned long long)m.requested, extra);
  CHECK(m.holds >= 7, "held: %llu HOLDs counted", (unsigned long long)m.holds);
  CHECK(m.held_seconds > 0.45 && m.held_seconds <= m.wait_seconds + 1e-9,
        "held: next() waited %.3f s, %.3f s of it for a held block (> 0.45 s)", m.wait_seconds, m.held_seconds);

  // The control: the same without HOLD times out and asks again.
  m = held_request(false, &extra, &w);
  CHECK(w.rc == 1 && m.timeouts >= 1 && m.rerequested >= 1 && extra >= 1 && m.held_seconds == 0,
        "not held: the request timed out %llu times and was asked again (%d more REQUESTs), held 0 s (%.3f)",
        (unsigned long long)m.timeouts, extra, m.held_seconds);
}

// ---- configuration checks

static void bad_plans(void) {
  const char *ep = "tcp://127.0.0.1:1";
  struct {
    dl_plan_phase plan[2];
    int n;
    const char *what;
  } cases[] = {
      {{{0, 8, 224}, {4, 12, 448}}, 2, "overlapping phases"},
      {{{8, 12, 224}, {0, 8, 448}}, 2, "descending phases"},
      {{{8, 8, 224}}, 1, "an empty phase"},
      {{{0, 8, 0}}, 1, "resolution 0"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dl_student_config cfg;
    fake_student_config(&cfg, &ep, 12);
    cfg.plan = cases[i].plan;
    cfg.nplan = cases[i].n;
    dl_err err = {{0}};
    dl_student_client *c = dl_student_client_create(&cfg, &err);
    CHECK(!c && err.msg[0], "a plan with %s is refused: %s", cases[i].what, err.msg);
    dl_student_client_destroy(c);
  }
}

int main(void) {
  bad_plans();
  cursor_and_hello();
  bye_unfinished();
  hold_keeps_request();
  busy_caller_keeps_session();
  return dl_test_summary("transport_student_io");
}
