#include "transport/student_client.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/timing.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/rendezvous.h"
#include "transport/teacher_discovery.h"
#include "transport/wire.h"

// Threads. The I/O thread (io_main) owns every ZeroMQ socket: the named
// teachers' sockets are made in create before it starts, discovered ones on
// it, and all are closed in destroy after it has joined. The caller's thread
// only takes ready blocks (dl_student_client_next) and wakes the I/O thread
// through an eventfd when it freed a window position. Everything both threads
// touch (the window, next_k, the teacher table's flags, the metrics, the fatal
// error) is guarded by one mutex; payloads are checksummed and decoded
// outside it.

// SLOT_UNAVAILABLE: the teacher cannot produce it; fatal once it is next in line.
typedef enum { SLOT_FREE, SLOT_REQUESTED, SLOT_READY, SLOT_UNAVAILABLE } slot_state;

// One position of the window: the rank's k-th block.
typedef struct slot {
  uint64_t k;
  slot_state state;
  int teacher;
  double sent_at;     // of the request, or of the latest HOLD naming it: the time-out counts from here
  bool held;          // a HOLD named it since it was requested (meaningful while SLOT_REQUESTED)
  bool asked_before;
  dl_target_block blk;
  char *unavailable;  // the teacher's reason, for SLOT_UNAVAILABLE
} slot;

// A slot of the teacher table. Slots of teachers named on the command line
// stay in use; those of discovered teachers (dns:) come and go.
typedef struct teacher {
  char endpoint[DL_ENDPOINT_MAX];
  void *sock;
  bool in_use, discovered;
  bool live;
  char id[256];
  uint64_t incarnation;
  bool seen;             // welcomed at least once
  double last_heard, last_hello, last_heartbeat;
} teacher;

struct dl_student_client {
  // Set by create, read-only afterwards. cfg's pointers point at the copies
  // below: the caller's memory may go away while the I/O thread runs.
  dl_student_config cfg;
  char group[DL_GROUP_NAME_MAX];
  char *stream_text;
  char *heads_path;  // cfg.heads_path's copy
  dl_plan_phase plan[DL_PLAN_MAX_PHASES];
  int nplan;
  dl_curve_key curve_secret, curve_public, teacher_public[DL_MAX_TEACHERS];
  void *ctx;
  int wake_fd;               // eventfd in the I/O thread's poll
  atomic_bool wake_pending;  // a wake-up is written and not yet read: no need for another

  // The I/O thread's own; it changes the table under mu (the metrics read it).
  teacher teachers[DL_MAX_TEACHERS];
  dl_discovery *discovery;  // NULL without dns: sources
  uint64_t discovery_gen;
  bool warned_full;

  // Shared, under mu.
  pthread_mutex_t mu;
  pthread_cond_t changed;  // a slot changed state, or a fatal error: next() looks again
  slot *slots;       // window entries, slot of k at k % window
  uint64_t next_k;   // the next block to hand out is rank + next_k * world
  uint64_t weights_hash;
  bool fatal;
  bool refused;      // the fatal condition is a teacher's REJECT or a heads mismatch: the student's configuration, not a fault
  dl_err fatal_err;
  bool stopping;     // destroy asks the I/O thread to end
  bool waiting;      // the caller waits in next() for the block at the cursor (until it gets it)
  bool waiting_told; // the teachers were told the current value of waiting
  dl_student_metrics m;

  pthread_t io;
  bool io_started;
};

void dl_student_config_defaults(dl_student_config *c) {
  memset(c, 0, sizeof *c);
  c->group = "student";
  c->world = 1;
  c->resolution = 224;
  c->end_block = UINT64_MAX;
  c->window = 16;
  c->heartbeat_ms = 1000;
  c->dead_after_ms = 5000;
  c->request_timeout_ms = 30000;
  c->resolve_interval_ms = 10000;
}

static void lock(const dl_student_client *c) { pthread_mutex_lock((pthread_mutex_t *)&c->mu); }
static void unlock(const dl_student_client *c) { pthread_mutex_unlock((pthread_mutex_t *)&c->mu); }

// Under mu: next() re-examines the window.
static void notify(dl_student_client *c) { pthread_cond_broadcast(&c->changed); }

static void slog(dl_student_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(dl_student_client *c, const char *fmt, ...) {
  if (c->cfg.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "student group=%s rank=%u ", c->cfg.group, c->cfg.rank);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

// Under mu.
static void fail_fatal(dl_student_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_fatal(dl_student_client *c, const char *fmt, ...) {
  if (c->fatal) return;
  c->fatal = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->fatal_err.msg, sizeof c->fatal_err.msg, fmt, ap);
  va_end(ap);
  notify(c);
}

static uint64_t block_of(const dl_student_client *c, uint64_t k) {
  return c->cfg.rank + k * c->cfg.world;
}

static bool k_in_stream(const dl_student_client *c, uint64_t k) {
  uint64_t b = block_of(c, k);
  return b < c->cfg.end_block && (b - c->cfg.rank) / c->cfg.world == k;  // no wrap-around
}

// Under mu: the block id of the next block this rank hands to its caller;
// every block of the rank before it has been taken.
static uint64_t cursor(const dl_student_client *c) { return block_of(c, c->next_k); }

// Under mu: the block id past the ready blocks that follow the cursor: every
// block of the rank before it has reached this rank (some teacher computed
// it), which lets a teacher count a block it computes again after rendezvous
// moved it (docs/protocol.md, "Teacher side").
static uint64_t received_frontier(const dl_student_client *c) {
  uint64_t k = c->next_k;
  while (k < c->next_k + (uint64_t)c->cfg.window && c->slots[k % (uint64_t)c->cfg.window].state == SLOT_READY) k++;
  return block_of(c, k);
}

static bool done_locked(const dl_student_client *c) { return !k_in_stream(c, c->next_k); }

// ---- sockets (I/O thread, or create/destroy while it does not run)

static int open_socket(dl_student_client *c, int i, dl_err *err) {
  teacher *t = &c->teachers[i];
  t->sock = zmq_socket(c->ctx, ZMQ_DEALER);
  if (!t->sock) return dl_fail(err, "cannot make a socket for %s: %s", t->endpoint, zmq_strerror(zmq_errno()));
  int one = 1, zero = 0, ivl = 100;
  zmq_setsockopt(t->sock, ZMQ_IMMEDIATE, &one, sizeof one);
  zmq_setsockopt(t->sock, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(t->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
  int rcvbuf = 4 << 20;  // see the teacher's SNDBUF
  zmq_setsockopt(t->sock, ZMQ_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (strchr(t->endpoint, '[')) zmq_setsockopt(t->sock, ZMQ_IPV6, &one, sizeof one);
  const dl_student_config *cfg = &c->cfg;
  if (cfg->curve_secret) {
    const dl_curve_key *server = &cfg->teacher_public[cfg->nteacher_keys > 1 ? i : 0];
    zmq_setsockopt(t->sock, ZMQ_CURVE_SERVERKEY, server->z85, DL_Z85_KEY_LEN);
    zmq_setsockopt(t->sock, ZMQ_CURVE_PUBLICKEY, cfg->curve_public->z85, DL_Z85_KEY_LEN);
    zmq_setsockopt(t->sock, ZMQ_CURVE_SECRETKEY, cfg->curve_secret->z85, DL_Z85_KEY_LEN);
  }
  if (zmq_connect(t->sock, t->endpoint) != 0)
    return dl_fail(err, "cannot connect to %s: %s", t->endpoint, zmq_strerror(zmq_errno()));
  t->live = false;
  t->last_hello = -1e9;
  return 0;
}

static int send_env(teacher *t, dl_envelope *e) {
  return dl_wire_send_envelope(t->sock, NULL, 0, e);
}

// Under mu (reads the cursor).
static void send_hello(dl_student_client *c, teacher *t) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Hello h = DISTILL__HELLO__INIT;
  Distill__Codec codecs[DL_NUM_CODECS] = {DISTILL__CODEC__CODEC_F32, DISTILL__CODEC__CODEC_F16,
                                          DISTILL__CODEC__CODEC_BF16, DISTILL__CODEC__CODEC_INT8_ROW};
  Distill__Phase phases[DL_PLAN_MAX_PHASES], *plan[DL_PLAN_MAX_PHASES];
  for (int i = 0; i < c->nplan; i++) {
    distill__phase__init(&phases[i]);
    phases[i].first_block = c->plan[i].first_block;
    phases[i].end_block = c->plan[i].end_block;
    phases[i].resolution = c->plan[i].resolution;
    plan[i] = &phases[i];
  }
  h.protocol_version = DL_PROTOCOL_VERSION;
  h.group = c->group;
  h.rank = c->cfg.rank;
  h.world = c->cfg.world;
  h.recipe_hash = c->cfg.recipe_hash;
  h.n_codecs = DL_NUM_CODECS;
  h.codecs = codecs;
  h.stream = c->stream_text;
  h.n_plan = (size_t)c->nplan;
  h.plan = plan;
  h.cursor = cursor(c);
  e.body_case = DISTILL__ENVELOPE__BODY_HELLO;
  e.hello = &h;
  send_env(t, &e);
  t->last_hello = dl_now_seconds();
}

static void send_heartbeat(dl_student_client *c, teacher *t) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Heartbeat h = DISTILL__HEARTBEAT__INIT;
  h.cursor = cursor(c);
  h.received = received_frontier(c);
  h.waiting = c->waiting;
  e.body_case = DISTILL__ENVELOPE__BODY_HEARTBEAT;
  e.heartbeat = &h;
  send_env(t, &e);
}

// Sends BYE and lets it leave for a moment (bounded) when the socket closes,
// so the teacher frees the session now instead of after dead_after.
static void send_bye(dl_student_client *c, teacher *t) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Bye bye = DISTILL__BYE__INIT;
  bye.finished = done_locked(c);
  bye.cursor = cursor(c);
  e.body_case = DISTILL__ENVELOPE__BODY_BYE;
  e.bye = &bye;
  int linger = 200;
  zmq_setsockopt(t->sock, ZMQ_LINGER, &linger, sizeof linger);
  send_env(t, &e);
}

// Every request this teacher held goes back to the pool, to be asked again
// from whichever teacher rendezvous hashing picks now.
static void release_requests(dl_student_client *c, int ti, uint64_t *counter) {
  bool any = false;
  for (int i = 0; i < c->cfg.window; i++)
    if (c->slots[i].state == SLOT_REQUESTED && c->slots[i].teacher == ti) {
      c->slots[i].state = SLOT_FREE;
      (*counter)++;
      any = true;
    }
  if (any) notify(c);  // a held block may no longer be held
}

// A discovered teacher whose name no longer resolves to it leaves like a
// dead one: its outstanding requests go to the others. It is told BYE so it
// frees our session now.
static void teacher_removed(dl_student_client *c, int ti) {
  teacher *t = &c->teachers[ti];
  slog(c, "event=teacher_removed teacher=%s", t->endpoint);
  c->m.teachers_removed++;
  release_requests(c, ti, &c->m.failovers);
  if (t->live) send_bye(c, t);
  zmq_close(t->sock);
  memset(t, 0, sizeof *t);
}

static void teacher_lost(dl_student_client *c, int ti, const char *why) {
  teacher *t = &c->teachers[ti];
  slog(c, "event=teacher_lost teacher=%s why=%s", t->endpoint, why);
  c->m.teacher_deaths++;
  release_requests(c, ti, &c->m.failovers);
  // A fresh socket drops whatever the old connection still had queued.
  zmq_close(t->sock);
  dl_err err;
  if (open_socket(c, ti, &err)) fail_fatal(c, "%s", err.msg);
}

// ---- incoming messages (I/O thread)

// Under mu.
static slot *slot_for_block(dl_student_client *c, uint64_t block, uint32_t res) {
  if (res != c->cfg.resolution || block < c->cfg.rank || (block - c->cfg.rank) % c->cfg.world)
    return NULL;
  uint64_t k = (block - c->cfg.rank) / c->cfg.world;
  if (k < c->next_k || k >= c->next_k + (uint64_t)c->cfg.window) return NULL;
  slot *s = &c->slots[k % (uint64_t)c->cfg.window];
  return s->k == k ? s : NULL;
}

static bool slot_held(const slot *s) { return s->state == SLOT_REQUESTED && s->held; }

static void on_welcome(dl_student_client *c, int ti, const Distill__Welcome *w) {
  teacher *t = &c->teachers[ti];
  uint64_t expect = c->cfg.weights_hash ? c->cfg.weights_hash : c->weights_hash;
  if (expect && w->weights_hash != expect) {
    fail_fatal(c, "teacher %s (%s) serves weights %016" PRIx64 ", expected %016" PRIx64,
               w->teacher_id, t->endpoint, w->weights_hash, expect);
    return;
  }
  if (c->cfg.heads_hash && w->heads_hash && w->heads_hash != c->cfg.heads_hash) {
    if (!c->fatal) c->refused = true;  // the student's configuration (its heads file), not a fault
    fail_fatal(c, "the teacher's heads (last layers %016" PRIx64 ") differ from train.teacher_heads %s (%016" PRIx64 ")",
               w->heads_hash, c->cfg.heads_path ? c->cfg.heads_path : "(unnamed)", c->cfg.heads_hash);
    return;
  }
  c->weights_hash = w->weights_hash;
  if (t->seen && w->incarnation != t->incarnation) c->m.teacher_restarts++;
  t->seen = true;
  t->incarnation = w->incarnation;
  snprintf(t->id, sizeof t->id, "%s", w->teacher_id);
  t->live = true;
  // The targets' widths, for the log (the blocks' shapes are checked when
  // they arrive); a teacher from before patch_dim sends 0: one width.
  slog(c, "event=welcome teacher=%s id=%s incarnation=%016" PRIx64 " cls_dim=%u patch_dim=%u", t->endpoint, t->id,
       t->incarnation, w->embed_dim, w->patch_dim ? w->patch_dim : w->embed_dim);
}

static void on_reject(dl_student_client *c, int ti, const Distill__Reject *r) {
  teacher *t = &c->teachers[ti];
  if (r->code == DISTILL__REJECT__CODE__NO_SESSION) {
    // The teacher restarted or forgot us: introduce ourselves again.
    if (t->live) release_requests(c, ti, &c->m.failovers);
    t->live = false;
    send_hello(c, t);
    return;
  }
  if (r->code == DISTILL__REJECT__CODE__UNAVAILABLE) {
    // Blocks before it may still come: fail only when it is the next one due.
    slot *s = slot_for_block(c, r->block, c->cfg.resolution);
    if (s && s->state != SLOT_READY) {
      char msg[1024];
      snprintf(msg, sizeof msg, "teacher %s cannot produce block %" PRIu64 ": %s", t->endpoint,
               r->block, r->reason);
      free(s->unavailable);
      s->unavailable = strdup(msg);
      s->state = SLOT_UNAVAILABLE;
      notify(c);
    }
  } else {
    if (!c->fatal) c->refused = true;
    fail_fatal(c, "teacher %s rejected this student: %s", t->endpoint, r->reason);
  }
}

// The teacher holds these requested blocks back (pacing): they stay requested
// from it, and their time-out starts again, so they are not asked twice.
static void on_hold(dl_student_client *c, int ti, const Distill__Hold *h) {
  c->m.holds++;
  double now = dl_now_seconds();
  bool marked = false;
  for (size_t i = 0; i < h->n_blocks; i++) {
    slot *s = slot_for_block(c, h->blocks[i], h->resolution);
    if (!s || s->state != SLOT_REQUESTED || s->teacher != ti) continue;
    s->held = true;
    s->sent_at = now;
    marked = true;
  }
  if (marked) notify(c);
}

static void release_frame(void *frame) {
  zmq_msg_close(frame);
  free(frame);
}

// A BLOCK's payload checked and decoded, off the lock: it depends only on the
// message. Returns 0 with *blk filled (owning the payload frame when tensors
// borrow it), or -1 with err.
static int decode_block(const Distill__Block *b, dl_wire_msg *m, dl_target_block *blk, size_t *wire_bytes,
                        dl_err *err) {
  memset(blk, 0, sizeof *blk);
  *wire_bytes = 0;
  if (m->nframes != 2) return dl_fail(err, "BLOCK without its payload frame");
  const uint8_t *payload = dl_wire_frame(m, 1, wire_bytes);
  int borrowed = dl_decode_block_msg_borrowing(b, payload, *wire_bytes, blk, err);
  if (borrowed < 0) return -1;
  if (borrowed > 0) {
    // Plain float32 tensors stay in the received frame: the block owns it now.
    zmq_msg_t *keep = dl_malloc(sizeof *keep);
    zmq_msg_init(keep);
    zmq_msg_move(keep, &m->frames[1]);
    blk->owner = keep;
    blk->release_owner = release_frame;
  }
  return 0;
}

// Under mu: puts a decoded block (decoded 0) or a failed one (-1) into its
// window position. *blk is taken (zeroed) when it went into the window.
static void accept_block(dl_student_client *c, int ti, const Distill__Block *b, int decoded,
                         dl_target_block *blk, size_t wire_bytes, const dl_err *err) {
  slot *s = slot_for_block(c, b->block, b->resolution);
  if (!s || s->state == SLOT_READY) {
    c->m.duplicates++;  // delivered already, held already, or never asked
    return;
  }
  if (decoded < 0) {
    c->m.checksum_failures++;
    slog(c, "event=bad_block block=%" PRIu64 " error=\"%s\"", b->block, err->msg);
    s->state = SLOT_FREE;  // asked again on the next round
    return;
  }
  s->blk = *blk;
  memset(blk, 0, sizeof *blk);
  s->state = SLOT_READY;
  c->m.received++;
  c->m.per_teacher_received[ti]++;
  c->m.bytes_wire += wire_bytes;
  for (int i = 0; i < s->blk.ntensors; i++)
    c->m.bytes_raw += (uint64_t)s->blk.tensors[i].rows * s->blk.tensors[i].cols * sizeof(float);
  notify(c);
}

// Under mu: everything but the BLOCK payload's decoding.
static void apply_message(dl_student_client *c, int ti, const dl_envelope *e, int decoded,
                          dl_target_block *blk, size_t wire_bytes, const dl_err *err) {
  c->teachers[ti].last_heard = dl_now_seconds();
  switch (e->body_case) {
    case DISTILL__ENVELOPE__BODY_WELCOME: on_welcome(c, ti, e->welcome); break;
    case DISTILL__ENVELOPE__BODY_REJECT: on_reject(c, ti, e->reject); break;
    case DISTILL__ENVELOPE__BODY_BLOCK: accept_block(c, ti, e->block, decoded, blk, wire_bytes, err); break;
    case DISTILL__ENVELOPE__BODY_HOLD: on_hold(c, ti, e->hold); break;
    case DISTILL__ENVELOPE__BODY_HEARTBEAT: break;
    default: c->m.bad_messages++; break;
  }
}

// One message from teacher ti. The envelope and a BLOCK's payload (checksum,
// codecs) are decoded without the lock, so next() can take ready blocks
// meanwhile; only the window's update holds it.
static void receive_message(dl_student_client *c, int ti, dl_wire_msg *m) {
  size_t n;
  const uint8_t *data = dl_wire_frame(m, 0, &n);
  dl_envelope *e = NULL;
  dl_err err = {{0}};
  if (m->overflow || m->nframes > 2 || dl_envelope_decode(data, n, &e, &err)) {
    lock(c);
    c->m.bad_messages++;
    unlock(c);
    return;
  }
  dl_target_block blk = {0};
  size_t wire_bytes = 0;
  int decoded = 0;
  if (e->body_case == DISTILL__ENVELOPE__BODY_BLOCK) decoded = decode_block(e->block, m, &blk, &wire_bytes, &err);
  lock(c);
  apply_message(c, ti, e, decoded, &blk, wire_bytes, &err);
  unlock(c);
  dl_target_block_free(&blk);  // a block nobody waited for (zeroed when it was kept)
  dl_envelope_free(e);
}

// ---- outgoing requests (I/O thread, under mu)

static void send_requests(dl_student_client *c) {
  if (c->fatal) return;  // the caller is told and stops: nothing more to ask for
  const char *ids[DL_MAX_TEACHERS];
  bool live[DL_MAX_TEACHERS];
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    ids[i] = c->teachers[i].id;
    live[i] = c->teachers[i].in_use && c->teachers[i].live;
  }
  uint64_t blocks[DL_MAX_TEACHERS][DL_REQUEST_MAX_BLOCKS];
  size_t counts[DL_MAX_TEACHERS] = {0};
  slot *chosen[DL_MAX_TEACHERS][DL_REQUEST_MAX_BLOCKS];
  // In the rank's order, so a teacher computes the block needed first first.
  for (int j = 0; j < c->cfg.window; j++) {
    slot *s = &c->slots[(c->next_k + (uint64_t)j) % (uint64_t)c->cfg.window];
    if (s->state != SLOT_FREE || !k_in_stream(c, s->k)) continue;
    uint64_t b = block_of(c, s->k);
    int ti = dl_rendezvous_pick(ids, live, DL_MAX_TEACHERS, b);
    if (ti < 0) return;  // no live teacher yet
    if (counts[ti] == DL_REQUEST_MAX_BLOCKS) continue;
    chosen[ti][counts[ti]] = s;
    blocks[ti][counts[ti]++] = b;
  }
  double now = dl_now_seconds();
  for (int ti = 0; ti < DL_MAX_TEACHERS; ti++) {
    if (!counts[ti]) continue;
    dl_envelope e;
    dl_envelope_init(&e);
    Distill__Request r = DISTILL__REQUEST__INIT;
    r.n_blocks = counts[ti];
    r.blocks = blocks[ti];
    r.resolution = c->cfg.resolution;
    r.cursor = cursor(c);
    r.received = received_frontier(c);
    r.waiting = c->waiting;
    e.body_case = DISTILL__ENVELOPE__BODY_REQUEST;
    e.request = &r;
    if (send_env(&c->teachers[ti], &e) != DL_WIRE_SENT) continue;  // not connected: next round
    for (size_t j = 0; j < counts[ti]; j++) {
      slot *s = chosen[ti][j];
      s->state = SLOT_REQUESTED;
      s->teacher = ti;
      s->sent_at = now;
      s->held = false;
      c->m.requested++;
      if (s->asked_before) c->m.rerequested++;
      s->asked_before = true;
    }
  }
}

// ---- timers (I/O thread, under mu)

static void run_timers(dl_student_client *c) {
  double now = dl_now_seconds();
  double hb = c->cfg.heartbeat_ms / 1000.0, dead = c->cfg.dead_after_ms / 1000.0;
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    teacher *t = &c->teachers[i];
    if (!t->in_use) continue;
    if (t->live && now - t->last_heard > dead) {
      teacher_lost(c, i, "silent");
      continue;
    }
    // HELLO again often (every 10 ms) until welcomed: a connection that was
    // not up yet (IMMEDIATE) took no message, and a family welcomed late finds
    // the others ahead of it (blocks they took may have to be recomputed).
    if (!t->live && now - t->last_hello >= (hb < 0.01 ? hb : 0.01)) send_hello(c, t);
    // A change of waiting goes out at once: teachers count a paced family's
    // time by it (held back only while its caller really waits).
    if (t->live && (now - t->last_heartbeat >= hb || c->waiting_told != c->waiting)) {
      send_heartbeat(c, t);
      t->last_heartbeat = now;
    }
  }
  c->waiting_told = c->waiting;
  double timeout = c->cfg.request_timeout_ms / 1000.0;
  bool freed = false;
  for (int i = 0; i < c->cfg.window; i++) {
    slot *s = &c->slots[i];
    if (s->state == SLOT_REQUESTED && now - s->sent_at > timeout) {
      s->state = SLOT_FREE;
      c->m.timeouts++;
      freed = true;
    }
  }
  if (freed) notify(c);
}

// ---- discovery (I/O thread, under mu; or create before it starts)

static int find_endpoint(const dl_student_client *c, const char *endpoint) {
  for (int i = 0; i < DL_MAX_TEACHERS; i++)
    if (c->teachers[i].in_use && !strcmp(c->teachers[i].endpoint, endpoint)) return i;
  return -1;
}

static int add_teacher(dl_student_client *c, const char *endpoint, bool discovered, dl_err *err) {
  int ti = 0;
  while (ti < DL_MAX_TEACHERS && c->teachers[ti].in_use) ti++;
  if (ti == DL_MAX_TEACHERS) return dl_fail(err, "more than %d teachers", DL_MAX_TEACHERS);
  teacher *t = &c->teachers[ti];
  memset(t, 0, sizeof *t);
  snprintf(t->endpoint, sizeof t->endpoint, "%s", endpoint);
  snprintf(t->id, sizeof t->id, "%s", endpoint);  // until its WELCOME names it
  t->in_use = true;
  t->discovered = discovered;
  if (open_socket(c, ti, err)) {
    if (t->sock) zmq_close(t->sock);
    memset(t, 0, sizeof *t);
    return -1;
  }
  return ti;
}

// Takes the discovery thread's latest set, if it changed: teachers no longer
// in it leave, new ones join (and are greeted by run_timers' HELLO).
static void apply_discovery(dl_student_client *c) {
  char eps[DL_MAX_DISCOVERED][DL_ENDPOINT_MAX];
  int n = 0;
  if (!c->discovery || !dl_discovery_poll(c->discovery, &c->discovery_gen, eps, &n)) return;
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    teacher *t = &c->teachers[i];
    if (!t->in_use || !t->discovered) continue;
    bool kept = false;
    for (int j = 0; j < n && !kept; j++) kept = !strcmp(eps[j], t->endpoint);
    if (!kept) teacher_removed(c, i);
  }
  for (int j = 0; j < n; j++) {
    if (find_endpoint(c, eps[j]) >= 0) continue;
    dl_err err;
    if (add_teacher(c, eps[j], true, &err) < 0) {
      if (!c->warned_full) slog(c, "event=teacher_not_added teacher=%s why=\"%s\"", eps[j], err.msg);
      c->warned_full = true;
      continue;
    }
    c->m.teachers_added++;
    slog(c, "event=teacher_added teacher=%s", eps[j]);
  }
}

// ---- the I/O thread

static bool any_live(const dl_student_client *c) {
  for (int i = 0; i < DL_MAX_TEACHERS; i++)
    if (c->teachers[i].in_use && c->teachers[i].live) return true;
  return false;
}

// Under mu: how long the next poll may wait before the timers are due.
static int poll_interval_ms(const dl_student_client *c) {
  int tick = c->cfg.heartbeat_ms / 4 > 0 ? c->cfg.heartbeat_ms / 4 : 1;
  if (tick > 5 && !any_live(c)) tick = 5;  // HELLO retries need a finer clock
  return tick;
}

// Wakes the I/O thread's poll (from any thread). One pending wake-up is enough.
static void wake_io(dl_student_client *c) {
  if (atomic_exchange(&c->wake_pending, true)) return;
  uint64_t one = 1;
  ssize_t rc = write(c->wake_fd, &one, sizeof one);
  (void)rc;  // cannot fail short of a counter overflow; the poll tick would follow anyway
}

static void drain_wake(dl_student_client *c) {
  // Cleared before reading, so a wake-up written after this is not lost.
  atomic_store(&c->wake_pending, false);
  uint64_t v;
  ssize_t rc = read(c->wake_fd, &v, sizeof v);
  (void)rc;  // EAGAIN: nothing was pending
}

// Waits up to wait_ms for messages or a wake-up, then handles every waiting
// message (at most 256 per teacher per round). Without the lock. Returns -1
// on a socket error.
static int poll_and_receive(dl_student_client *c, int wait_ms) {
  zmq_pollitem_t items[DL_MAX_TEACHERS + 1];
  int slot_of[DL_MAX_TEACHERS], n_items = 0;
  for (int i = 0; i < DL_MAX_TEACHERS; i++)
    if (c->teachers[i].in_use && c->teachers[i].sock) {
      slot_of[n_items] = i;
      items[n_items++] = (zmq_pollitem_t){c->teachers[i].sock, 0, ZMQ_POLLIN, 0};
    }
  items[n_items] = (zmq_pollitem_t){NULL, c->wake_fd, ZMQ_POLLIN, 0};
  int rc = zmq_poll(items, n_items + 1, wait_ms);
  if (rc < 0) return zmq_errno() == EINTR ? 0 : -1;
  if (items[n_items].revents & ZMQ_POLLIN) drain_wake(c);
  for (int j = 0; j < n_items; j++) {
    if (!(items[j].revents & ZMQ_POLLIN)) continue;
    const int i = slot_of[j];
    for (int n = 0; n < 256; n++) {
      dl_wire_msg m;
      if (dl_wire_recv(c->teachers[i].sock, &m) <= 0) break;
      receive_message(c, i, &m);
      dl_wire_msg_close(&m);
    }
  }
  return 0;
}

// Requests free positions, waits for messages, runs the timers and takes the
// discovered teacher set, until destroy says stop (or a socket fails).
static void *io_main(void *arg) {
  dl_student_client *c = arg;
  lock(c);
  while (!c->stopping) {
    send_requests(c);
    int wait_ms = poll_interval_ms(c);
    unlock(c);
    int rc = poll_and_receive(c, wait_ms);
    lock(c);
    if (rc < 0) {
      fail_fatal(c, "socket error: %s", zmq_strerror(zmq_errno()));
      break;
    }
    run_timers(c);
    apply_discovery(c);
  }
  unlock(c);
  return NULL;
}

// ---- the caller's side

bool dl_student_client_refused(const dl_student_client *c) {
  lock(c);
  const bool refused = c->refused;
  unlock(c);
  return refused;
}

bool dl_student_client_done(const dl_student_client *c) {
  lock(c);
  bool done = done_locked(c);
  unlock(c);
  return done;
}

// Under mu: hands out the next block if it is here, and opens its slot for
// k + window.
static bool take_next(dl_student_client *c, dl_target_block *out) {
  slot *s = &c->slots[c->next_k % (uint64_t)c->cfg.window];
  if (s->state == SLOT_UNAVAILABLE) fail_fatal(c, "%s", s->unavailable);
  if (s->state != SLOT_READY) return false;
  *out = s->blk;
  memset(&s->blk, 0, sizeof s->blk);
  s->state = SLOT_FREE;
  s->asked_before = false;
  s->held = false;
  s->k = c->next_k + (uint64_t)c->cfg.window;
  c->next_k++;
  c->m.delivered++;
  return true;
}

enum { NOT_YET = 2 };

// Under mu: 1 took a block, -1 fatal, 0 the stream is done, NOT_YET.
static int try_take(dl_student_client *c, dl_target_block *out) {
  if (!c->fatal && take_next(c, out)) return 1;
  if (c->fatal) return -1;
  return done_locked(c) ? 0 : NOT_YET;
}

// Under mu: waits on `changed` until deadline (monotonic seconds).
static void wait_changed(dl_student_client *c, double deadline) {
  struct timespec ts = {(time_t)deadline, (long)((deadline - (double)(time_t)deadline) * 1e9)};
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  pthread_cond_timedwait(&c->changed, &c->mu, &ts);
}

int dl_student_client_next(dl_student_client *c, dl_target_block *out, int timeout_ms,
                           dl_err *err) {
  memset(out, 0, sizeof *out);
  double deadline = dl_now_seconds() + timeout_ms / 1000.0;
  lock(c);
  int rc = try_take(c, out);
  if (rc == NOT_YET) {
    // The block is not here: wait, counting how long, and how long of that
    // the teacher held it back.
    double began = dl_now_seconds(), now = began;
    if (!c->waiting) {
      c->waiting = true;
      wake_io(c);
    }
    while (rc == NOT_YET && now < deadline) {
      bool held = slot_held(&c->slots[c->next_k % (uint64_t)c->cfg.window]);
      wait_changed(c, deadline);
      double after = dl_now_seconds();
      if (held) c->m.held_seconds += after - now;
      now = after;
      rc = try_take(c, out);
    }
    c->m.wait_seconds += now - began;
    if (rc == NOT_YET) rc = 0;
  }
  if (rc < 0 && err) *err = c->fatal_err;
  if (rc == 1) c->waiting = false;  // a time-out leaves it set: the caller still waits for this block
  unlock(c);
  if (rc == 1) wake_io(c);  // its window position is free: request it now
  return rc;
}

// ---- create, metrics, destroy

static int validate_plan(const dl_student_config *cfg, dl_err *err) {
  if (cfg->nplan < 0 || cfg->nplan > DL_PLAN_MAX_PHASES || (cfg->nplan > 0 && !cfg->plan))
    return dl_fail(err, "a plan of %d phases (0..%d allowed, and the phases given)", cfg->nplan, DL_PLAN_MAX_PHASES);
  for (int i = 0; i < cfg->nplan; i++) {
    const dl_plan_phase *p = &cfg->plan[i];
    if (p->first_block >= p->end_block)
      return dl_fail(err, "plan phase %d is blocks [%" PRIu64 ", %" PRIu64 "): it must start before it ends", i,
                     p->first_block, p->end_block);
    if (p->resolution == 0 || p->resolution > 65536)
      return dl_fail(err, "plan phase %d has resolution %u (1..65536 allowed)", i, p->resolution);
    if (i > 0 && p->first_block < cfg->plan[i - 1].end_block)
      return dl_fail(err, "plan phase %d starts at block %" PRIu64 ", before phase %d ends (%" PRIu64
                     "): phases must ascend without overlapping", i, p->first_block, i - 1, cfg->plan[i - 1].end_block);
  }
  return 0;
}

static int validate_config(const dl_student_config *cfg, dl_err *err) {
  if (cfg->nteachers < 1 || cfg->nteachers > DL_MAX_TEACHERS)
    return dl_fail(err, "a student needs 1 to %d teachers, got %d", DL_MAX_TEACHERS, cfg->nteachers);
  if (cfg->world == 0 || cfg->world > DL_MAX_WORLD || cfg->rank >= cfg->world)
    return dl_fail(err, "rank %u is not in a world of %u (1..%d ranks)", cfg->rank, cfg->world, DL_MAX_WORLD);
  if (cfg->window < 1 || cfg->window > DL_REQUEST_MAX_BLOCKS)
    return dl_fail(err, "window %d (1..%d allowed)", cfg->window, DL_REQUEST_MAX_BLOCKS);
  if (!cfg->group || strnlen(cfg->group, DL_GROUP_NAME_MAX) >= DL_GROUP_NAME_MAX)
    return dl_fail(err, "group name missing or longer than %d", DL_GROUP_NAME_MAX - 1);
  if (cfg->resolution == 0 || cfg->resolution > 65536)
    return dl_fail(err, "resolution %u (1..65536 allowed)", cfg->resolution);
  if (cfg->curve_secret && (!cfg->curve_public || !cfg->teacher_public || cfg->nteacher_keys < 1))
    return dl_fail(err, "CURVE needs the student's key pair and the teachers' public keys");
  if (cfg->curve_secret && cfg->nteacher_keys > 1 && cfg->nteacher_keys != cfg->nteachers)
    return dl_fail(err, "CURVE: one teacher public key for all teachers or one per teacher; got %d keys for %d teachers",
                   cfg->nteacher_keys, cfg->nteachers);
  if (cfg->stream_text && strnlen(cfg->stream_text, DL_STREAM_TEXT_MAX) >= DL_STREAM_TEXT_MAX)
    return dl_fail(err, "stream text longer than %d bytes", DL_STREAM_TEXT_MAX - 1);
  for (int i = 0; i < cfg->nteachers; i++)
    if (strlen(cfg->teachers[i]) >= DL_ENDPOINT_MAX)
      return dl_fail(err, "teacher endpoint too long: %.60s...", cfg->teachers[i]);
  return validate_plan(cfg, err);
}

// Copies what cfg points at into c (the caller's memory may go away) and
// points c->cfg at the copies. The teacher list is used by create only.
static void copy_config(dl_student_client *c, const dl_student_config *cfg) {
  c->cfg = *cfg;
  snprintf(c->group, sizeof c->group, "%s", cfg->group);
  c->cfg.group = c->group;
  c->cfg.teachers = NULL;
  const char *text = cfg->stream_text ? cfg->stream_text : "";
  c->stream_text = dl_malloc(strlen(text) + 1);
  memcpy(c->stream_text, text, strlen(text) + 1);
  c->cfg.stream_text = c->stream_text;
  c->heads_path = cfg->heads_path ? strdup(cfg->heads_path) : NULL;
  c->cfg.heads_path = c->heads_path;
  c->nplan = cfg->nplan;
  if (cfg->nplan > 0) {
    memcpy(c->plan, cfg->plan, (size_t)cfg->nplan * sizeof *c->plan);
  } else if (cfg->end_block != UINT64_MAX && cfg->end_block > 0) {
    c->plan[0] = (dl_plan_phase){0, cfg->end_block, cfg->resolution};
    c->nplan = 1;
  }
  c->cfg.plan = c->plan;
  c->cfg.nplan = c->nplan;
  if (cfg->curve_secret) {
    c->curve_secret = *cfg->curve_secret;
    c->curve_public = *cfg->curve_public;
    for (int i = 0; i < cfg->nteacher_keys; i++) c->teacher_public[i] = cfg->teacher_public[i];
    c->cfg.curve_secret = &c->curve_secret;
    c->cfg.curve_public = &c->curve_public;
    c->cfg.teacher_public = c->teacher_public;
  }
}

static int init_threading(dl_student_client *c, dl_err *err) {
  pthread_mutex_init(&c->mu, NULL);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);  // deadlines are dl_now_seconds()
  pthread_cond_init(&c->changed, &attr);
  pthread_condattr_destroy(&attr);
  atomic_init(&c->wake_pending, false);
  c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (c->wake_fd < 0) return dl_fail(err, "cannot make the student's wake-up eventfd: %s", strerror(errno));
  return 0;
}

dl_student_client *dl_student_client_create(const dl_student_config *cfg, dl_err *err) {
  if (validate_config(cfg, err)) return NULL;
  const char *dns[DL_MAX_TEACHERS];
  int ndns = 0;
  for (int i = 0; i < cfg->nteachers; i++)
    if (dl_is_dns_spec(cfg->teachers[i])) dns[ndns++] = cfg->teachers[i];
  if (ndns && cfg->curve_secret && cfg->nteacher_keys > 1) {
    dl_fail(err, "discovered teachers (dns:) share one CURVE public key; got %d", cfg->nteacher_keys);
    return NULL;
  }
  dl_student_client *c = dl_calloc(1, sizeof *c);
  c->wake_fd = -1;
  copy_config(c, cfg);
  if (init_threading(c, err)) {
    dl_student_client_destroy(c);
    return NULL;
  }
  c->next_k = cfg->start_index;
  c->slots = dl_calloc((size_t)cfg->window, sizeof *c->slots);
  for (uint64_t k = c->next_k; k < c->next_k + (uint64_t)cfg->window; k++)
    c->slots[k % (uint64_t)cfg->window].k = k;
  c->ctx = zmq_ctx_new();
  // Named teachers take the first slots, in order (a per-teacher CURVE key
  // is found by slot).
  for (int i = 0; i < cfg->nteachers; i++) {
    if (dl_is_dns_spec(cfg->teachers[i])) continue;
    if (add_teacher(c, cfg->teachers[i], false, err) < 0) {
      dl_student_client_destroy(c);
      return NULL;
    }
  }
  if (ndns) {
    c->discovery = dl_discovery_start(dns, ndns, cfg->resolve_interval_ms, cfg->resolve, cfg->resolve_ctx, err);
    if (!c->discovery) {
      dl_student_client_destroy(c);
      return NULL;
    }
    apply_discovery(c);
  }
  int rc = pthread_create(&c->io, NULL, io_main, c);
  if (rc != 0) {
    dl_fail(err, "cannot start the student's I/O thread: %s", strerror(rc));
    dl_student_client_destroy(c);
    return NULL;
  }
  c->io_started = true;
  return c;
}

dl_student_metrics dl_student_client_metrics(const dl_student_client *c) {
  lock(c);
  dl_student_metrics m = c->m;
  m.live_teachers = 0;
  for (int i = 0; i < DL_MAX_TEACHERS; i++) m.live_teachers += c->teachers[i].in_use && c->teachers[i].live;
  unlock(c);
  if (c->discovery) m.resolve_failures = dl_discovery_failures(c->discovery);
  return m;
}

void dl_student_metrics_print(const dl_student_metrics *m, const char *group, uint32_t rank,
                              void *file) {
  fprintf(file,
          "student_metrics group=%s rank=%u requested=%" PRIu64 " rerequested=%" PRIu64
          " received=%" PRIu64 " delivered=%" PRIu64 " duplicates=%" PRIu64
          " checksum_failures=%" PRIu64 " bad_messages=%" PRIu64 " timeouts=%" PRIu64
          " failovers=%" PRIu64 " teacher_deaths=%" PRIu64 " teacher_restarts=%" PRIu64
          " bytes_raw=%" PRIu64 " bytes_wire=%" PRIu64 " live_teachers=%" PRIu64 " teachers_added=%" PRIu64
          " teachers_removed=%" PRIu64 " resolve_failures=%" PRIu64 " holds=%" PRIu64
          " held_seconds=%.3f wait_seconds=%.3f\n",
          group, rank, m->requested, m->rerequested, m->received, m->delivered, m->duplicates,
          m->checksum_failures, m->bad_messages, m->timeouts, m->failovers, m->teacher_deaths,
          m->teacher_restarts, m->bytes_raw, m->bytes_wire, m->live_teachers, m->teachers_added,
          m->teachers_removed, m->resolve_failures, m->holds, m->held_seconds, m->wait_seconds);
}

// Ends the I/O thread; afterwards this thread may use its sockets.
static void stop_io(dl_student_client *c) {
  if (!c->io_started) return;
  lock(c);
  c->stopping = true;
  unlock(c);
  wake_io(c);
  pthread_join(c->io, NULL);
  c->io_started = false;
}

void dl_student_client_destroy(dl_student_client *c) {
  if (!c) return;
  stop_io(c);
  dl_discovery_stop(c->discovery);
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    teacher *t = &c->teachers[i];
    if (!t->in_use || !t->sock) continue;
    if (t->live) send_bye(c, t);
    zmq_close(t->sock);
  }
  if (c->slots)
    for (int i = 0; i < c->cfg.window; i++) {
      dl_target_block_free(&c->slots[i].blk);
      free(c->slots[i].unavailable);
    }
  free(c->slots);
  if (c->ctx) zmq_ctx_term(c->ctx);
  if (c->wake_fd >= 0) close(c->wake_fd);
  pthread_cond_destroy(&c->changed);
  pthread_mutex_destroy(&c->mu);
  free(c->stream_text);
  free(c->heads_path);
  free(c);
}
