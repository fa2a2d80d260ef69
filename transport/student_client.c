#include "transport/student_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "common/timing.h"
#include "transport/encoded_block.h"
#include "transport/rendezvous.h"
#include "transport/teacher_discovery.h"
#include "transport/wire.h"

// SLOT_UNAVAILABLE: the teacher cannot produce it; fatal once it is next in line.
typedef enum { SLOT_FREE, SLOT_REQUESTED, SLOT_READY, SLOT_UNAVAILABLE } slot_state;

// One position of the window: the rank's k-th block.
typedef struct slot {
  uint64_t k;
  slot_state state;
  int teacher;
  double sent_at;
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
  dl_student_config cfg;
  void *ctx;
  teacher teachers[DL_MAX_TEACHERS];
  dl_discovery *discovery;  // NULL without dns: sources
  uint64_t discovery_gen;
  bool warned_full;
  slot *slots;       // window entries, slot of k at k % window
  uint64_t next_k;   // the next block to hand out is rank + next_k * world
  uint64_t weights_hash;
  bool fatal;
  dl_err fatal_err;
  dl_student_metrics m;
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

static void fail_fatal(dl_student_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_fatal(dl_student_client *c, const char *fmt, ...) {
  if (c->fatal) return;
  c->fatal = true;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->fatal_err.msg, sizeof c->fatal_err.msg, fmt, ap);
  va_end(ap);
}

static uint64_t block_of(const dl_student_client *c, uint64_t k) {
  return c->cfg.rank + k * c->cfg.world;
}

static bool k_in_stream(const dl_student_client *c, uint64_t k) {
  uint64_t b = block_of(c, k);
  return b < c->cfg.end_block && (b - c->cfg.rank) / c->cfg.world == k;  // no wrap-around
}

// ---- sockets

static int open_socket(dl_student_client *c, int i, dl_err *err) {
  teacher *t = &c->teachers[i];
  t->sock = zmq_socket(c->ctx, ZMQ_DEALER);
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

static void send_hello(dl_student_client *c, teacher *t) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Hello h = DISTILL__HELLO__INIT;
  Distill__Codec codecs[DL_NUM_CODECS] = {DISTILL__CODEC__CODEC_F32, DISTILL__CODEC__CODEC_F16,
                                          DISTILL__CODEC__CODEC_BF16, DISTILL__CODEC__CODEC_INT8_ROW};
  h.protocol_version = DL_PROTOCOL_VERSION;
  h.group = (char *)c->cfg.group;
  h.rank = c->cfg.rank;
  h.world = c->cfg.world;
  h.recipe_hash = c->cfg.recipe_hash;
  h.n_codecs = DL_NUM_CODECS;
  h.codecs = codecs;
  e.body_case = DISTILL__ENVELOPE__BODY_HELLO;
  e.hello = &h;
  send_env(t, &e);
  t->last_hello = dl_now_seconds();
}

// Every request this teacher held goes back to the pool, to be asked again
// from whichever teacher rendezvous hashing picks now.
static void release_requests(dl_student_client *c, int ti, uint64_t *counter) {
  for (int i = 0; i < c->cfg.window; i++)
    if (c->slots[i].state == SLOT_REQUESTED && c->slots[i].teacher == ti) {
      c->slots[i].state = SLOT_FREE;
      (*counter)++;
    }
}

// A discovered teacher whose name no longer resolves to it leaves like a
// dead one: its outstanding requests go to the others. It is told BYE so it
// frees our session now.
static void teacher_removed(dl_student_client *c, int ti) {
  teacher *t = &c->teachers[ti];
  slog(c, "event=teacher_removed teacher=%s", t->endpoint);
  c->m.teachers_removed++;
  release_requests(c, ti, &c->m.failovers);
  if (t->live) {
    dl_envelope e;
    dl_envelope_init(&e);
    Distill__Bye bye = DISTILL__BYE__INIT;
    e.body_case = DISTILL__ENVELOPE__BODY_BYE;
    e.bye = &bye;
    int linger = 200;
    zmq_setsockopt(t->sock, ZMQ_LINGER, &linger, sizeof linger);
    send_env(t, &e);
  }
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

// ---- incoming messages

static slot *slot_for_block(dl_student_client *c, uint64_t block, uint32_t res) {
  if (res != c->cfg.resolution || block < c->cfg.rank || (block - c->cfg.rank) % c->cfg.world)
    return NULL;
  uint64_t k = (block - c->cfg.rank) / c->cfg.world;
  if (k < c->next_k || k >= c->next_k + (uint64_t)c->cfg.window) return NULL;
  slot *s = &c->slots[k % (uint64_t)c->cfg.window];
  return s->k == k ? s : NULL;
}

static void on_welcome(dl_student_client *c, int ti, const Distill__Welcome *w) {
  teacher *t = &c->teachers[ti];
  uint64_t expect = c->cfg.weights_hash ? c->cfg.weights_hash : c->weights_hash;
  if (expect && w->weights_hash != expect) {
    fail_fatal(c, "teacher %s (%s) serves weights %016" PRIx64 ", expected %016" PRIx64,
               w->teacher_id, t->endpoint, w->weights_hash, expect);
    return;
  }
  c->weights_hash = w->weights_hash;
  if (t->seen && w->incarnation != t->incarnation) c->m.teacher_restarts++;
  t->seen = true;
  t->incarnation = w->incarnation;
  snprintf(t->id, sizeof t->id, "%s", w->teacher_id);
  t->live = true;
  slog(c, "event=welcome teacher=%s id=%s incarnation=%016" PRIx64, t->endpoint, t->id,
       t->incarnation);
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
    }
  } else {
    fail_fatal(c, "teacher %s rejected this student: %s", t->endpoint, r->reason);
  }
}


static void release_frame(void *frame) {
  zmq_msg_close(frame);
  free(frame);
}

static void on_block(dl_student_client *c, int ti, const Distill__Block *b, dl_wire_msg *m) {
  slot *s = slot_for_block(c, b->block, b->resolution);
  if (!s || s->state == SLOT_READY) {
    c->m.duplicates++;  // delivered already, held already, or never asked
    return;
  }
  if (m->nframes != 2) {
    c->m.checksum_failures++;
    s->state = SLOT_FREE;
    return;
  }
  size_t n;
  const uint8_t *payload = dl_wire_frame(m, 1, &n);
  dl_err err;
  int borrowed = dl_decode_block_msg_borrowing(b, payload, n, &s->blk, &err);
  if (borrowed > 0) {
    // Plain float32 tensors stay in the received frame: the block owns it now.
    zmq_msg_t *keep = dl_malloc(sizeof *keep);
    zmq_msg_init(keep);
    zmq_msg_move(keep, &m->frames[1]);
    s->blk.owner = keep;
    s->blk.release_owner = release_frame;
  }
  if (borrowed < 0) {
    c->m.checksum_failures++;
    slog(c, "event=bad_block block=%" PRIu64 " error=\"%s\"", b->block, err.msg);
    s->state = SLOT_FREE;  // asked again on the next round
    return;
  }
  s->state = SLOT_READY;
  c->m.received++;
  c->m.per_teacher_received[ti]++;
  c->m.bytes_wire += n;
  for (int i = 0; i < s->blk.ntensors; i++)
    c->m.bytes_raw += (uint64_t)s->blk.tensors[i].rows * s->blk.tensors[i].cols * sizeof(float);
}

static void handle_message(dl_student_client *c, int ti, dl_wire_msg *m) {
  teacher *t = &c->teachers[ti];
  size_t n;
  const uint8_t *data = dl_wire_frame(m, 0, &n);
  dl_envelope *e;
  dl_err err;
  if (m->overflow || m->nframes > 2 || dl_envelope_decode(data, n, &e, &err)) {
    c->m.bad_messages++;
    return;
  }
  t->last_heard = dl_now_seconds();
  switch (e->body_case) {
    case DISTILL__ENVELOPE__BODY_WELCOME: on_welcome(c, ti, e->welcome); break;
    case DISTILL__ENVELOPE__BODY_REJECT: on_reject(c, ti, e->reject); break;
    case DISTILL__ENVELOPE__BODY_BLOCK: on_block(c, ti, e->block, m); break;
    case DISTILL__ENVELOPE__BODY_HEARTBEAT: break;
    default: c->m.bad_messages++; break;
  }
  dl_envelope_free(e);
}

// ---- outgoing requests

static void send_requests(dl_student_client *c) {
  const char *ids[DL_MAX_TEACHERS];
  bool live[DL_MAX_TEACHERS];
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    ids[i] = c->teachers[i].id;
    live[i] = c->teachers[i].in_use && c->teachers[i].live;
  }
  uint64_t blocks[DL_MAX_TEACHERS][DL_REQUEST_MAX_BLOCKS];
  size_t counts[DL_MAX_TEACHERS] = {0};
  slot *chosen[DL_MAX_TEACHERS][DL_REQUEST_MAX_BLOCKS];
  for (int i = 0; i < c->cfg.window; i++) {
    slot *s = &c->slots[i];
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
    e.body_case = DISTILL__ENVELOPE__BODY_REQUEST;
    e.request = &r;
    if (send_env(&c->teachers[ti], &e) != DL_WIRE_SENT) continue;  // not connected: next round
    for (size_t j = 0; j < counts[ti]; j++) {
      slot *s = chosen[ti][j];
      s->state = SLOT_REQUESTED;
      s->teacher = ti;
      s->sent_at = now;
      c->m.requested++;
      if (s->asked_before) c->m.rerequested++;
      s->asked_before = true;
    }
  }
}

// ---- timers

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
    // HELLO again often (at most every 100 ms) until welcomed: a connection
    // that was not up yet (IMMEDIATE) took no message.
    if (!t->live && now - t->last_hello >= (hb < 0.1 ? hb : 0.1)) send_hello(c, t);
    if (t->live && now - t->last_heartbeat >= hb) {
      dl_envelope e;
      dl_envelope_init(&e);
      Distill__Heartbeat h = DISTILL__HEARTBEAT__INIT;
      e.body_case = DISTILL__ENVELOPE__BODY_HEARTBEAT;
      e.heartbeat = &h;
      send_env(t, &e);
      t->last_heartbeat = now;
    }
  }
  double timeout = c->cfg.request_timeout_ms / 1000.0;
  for (int i = 0; i < c->cfg.window; i++) {
    slot *s = &c->slots[i];
    if (s->state == SLOT_REQUESTED && now - s->sent_at > timeout) {
      s->state = SLOT_FREE;
      c->m.timeouts++;
    }
  }
}

// ---- discovery

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

// ---- the loop

bool dl_student_client_done(const dl_student_client *c) { return !k_in_stream(c, c->next_k); }

// Hands out the next block if it is here, and opens its slot for k + window.
static bool take_next(dl_student_client *c, dl_target_block *out) {
  slot *s = &c->slots[c->next_k % (uint64_t)c->cfg.window];
  if (s->state == SLOT_UNAVAILABLE) fail_fatal(c, "%s", s->unavailable);
  if (s->state != SLOT_READY) return false;
  *out = s->blk;
  memset(&s->blk, 0, sizeof s->blk);
  s->state = SLOT_FREE;
  s->asked_before = false;
  s->k = c->next_k + (uint64_t)c->cfg.window;
  c->next_k++;
  c->m.delivered++;
  return true;
}

static int poll_teachers(dl_student_client *c, int timeout_ms) {
  zmq_pollitem_t items[DL_MAX_TEACHERS];
  int slot_of[DL_MAX_TEACHERS], n_items = 0;
  for (int i = 0; i < DL_MAX_TEACHERS; i++)
    if (c->teachers[i].in_use) {
      slot_of[n_items] = i;
      items[n_items++] = (zmq_pollitem_t){c->teachers[i].sock, 0, ZMQ_POLLIN, 0};
    }
  if (n_items == 0) {  // every teacher is discovered, and none is there now
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
  }
  int rc = zmq_poll(items, n_items, timeout_ms);
  if (rc < 0) return zmq_errno() == EINTR ? 0 : -1;
  for (int j = 0; j < n_items; j++) {
    if (!(items[j].revents & ZMQ_POLLIN)) continue;
    const int i = slot_of[j];
    for (int n = 0; n < 256; n++) {
      dl_wire_msg m;
      int got = dl_wire_recv(c->teachers[i].sock, &m);
      if (got <= 0) break;
      handle_message(c, i, &m);
      dl_wire_msg_close(&m);
    }
  }
  return 0;
}

static bool any_live(const dl_student_client *c) {
  for (int i = 0; i < DL_MAX_TEACHERS; i++)
    if (c->teachers[i].in_use && c->teachers[i].live) return true;
  return false;
}

int dl_student_client_next(dl_student_client *c, dl_target_block *out, int timeout_ms,
                           dl_err *err) {
  memset(out, 0, sizeof *out);
  double deadline = dl_now_seconds() + timeout_ms / 1000.0;
  for (;;) {
    if (c->fatal) {
      if (err) *err = c->fatal_err;
      return -1;
    }
    if (take_next(c, out)) return 1;
    if (c->fatal) continue;
    if (dl_student_client_done(c)) return 0;
    send_requests(c);
    double left = deadline - dl_now_seconds();
    if (left < 0) return 0;
    int wait_ms = (int)(left * 1000) + 1;
    int tick = c->cfg.heartbeat_ms / 4 > 0 ? c->cfg.heartbeat_ms / 4 : 1;
    if (tick > 20 && !any_live(c)) tick = 20;  // HELLO retries need a finer clock
    if (wait_ms > tick) wait_ms = tick;
    if (poll_teachers(c, wait_ms) < 0) {
      fail_fatal(c, "socket error: %s", zmq_strerror(zmq_errno()));
      continue;
    }
    run_timers(c);
    apply_discovery(c);
  }
}

dl_student_client *dl_student_client_create(const dl_student_config *cfg, dl_err *err) {
  if (cfg->nteachers < 1 || cfg->nteachers > DL_MAX_TEACHERS) {
    dl_fail(err, "a student needs 1 to %d teachers, got %d", DL_MAX_TEACHERS, cfg->nteachers);
    return NULL;
  }
  if (cfg->world == 0 || cfg->rank >= cfg->world) {
    dl_fail(err, "rank %u is not in a world of %u", cfg->rank, cfg->world);
    return NULL;
  }
  if (cfg->window < 1 || cfg->window > DL_REQUEST_MAX_BLOCKS) {
    dl_fail(err, "window %d (1..%d allowed)", cfg->window, DL_REQUEST_MAX_BLOCKS);
    return NULL;
  }
  if (!cfg->group || strnlen(cfg->group, DL_GROUP_NAME_MAX) >= DL_GROUP_NAME_MAX) {
    dl_fail(err, "group name missing or longer than %d", DL_GROUP_NAME_MAX - 1);
    return NULL;
  }
  if (cfg->curve_secret && (!cfg->curve_public || !cfg->teacher_public || cfg->nteacher_keys < 1)) {
    dl_fail(err, "CURVE needs the student's key pair and the teachers' public keys");
    return NULL;
  }
  const char *dns[DL_MAX_TEACHERS];
  int ndns = 0;
  for (int i = 0; i < cfg->nteachers; i++)
    if (dl_is_dns_spec(cfg->teachers[i])) dns[ndns++] = cfg->teachers[i];
  if (ndns && cfg->curve_secret && cfg->nteacher_keys > 1) {
    dl_fail(err, "discovered teachers (dns:) share one CURVE public key; got %d", cfg->nteacher_keys);
    return NULL;
  }
  dl_student_client *c = dl_calloc(1, sizeof *c);
  c->cfg = *cfg;
  c->next_k = cfg->start_index;
  c->slots = dl_calloc((size_t)cfg->window, sizeof *c->slots);
  for (uint64_t k = c->next_k; k < c->next_k + (uint64_t)cfg->window; k++)
    c->slots[k % (uint64_t)cfg->window].k = k;
  c->ctx = zmq_ctx_new();
  // Named teachers take the first slots, in order (a per-teacher CURVE key
  // is found by slot).
  for (int i = 0; i < cfg->nteachers; i++) {
    if (dl_is_dns_spec(cfg->teachers[i])) continue;
    if (strlen(cfg->teachers[i]) >= DL_ENDPOINT_MAX) {
      dl_fail(err, "teacher endpoint too long: %.60s...", cfg->teachers[i]);
      dl_student_client_destroy(c);
      return NULL;
    }
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
  return c;
}

dl_student_metrics dl_student_client_metrics(const dl_student_client *c) {
  dl_student_metrics m = c->m;
  m.live_teachers = 0;
  for (int i = 0; i < DL_MAX_TEACHERS; i++) m.live_teachers += c->teachers[i].in_use && c->teachers[i].live;
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
          " teachers_removed=%" PRIu64 " resolve_failures=%" PRIu64 "\n",
          group, rank, m->requested, m->rerequested, m->received, m->delivered, m->duplicates,
          m->checksum_failures, m->bad_messages, m->timeouts, m->failovers, m->teacher_deaths,
          m->teacher_restarts, m->bytes_raw, m->bytes_wire, m->live_teachers, m->teachers_added,
          m->teachers_removed, m->resolve_failures);
}

void dl_student_client_destroy(dl_student_client *c) {
  if (!c) return;
  dl_discovery_stop(c->discovery);
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Bye bye = DISTILL__BYE__INIT;
  e.body_case = DISTILL__ENVELOPE__BODY_BYE;
  e.bye = &bye;
  for (int i = 0; i < DL_MAX_TEACHERS; i++) {
    if (!c->teachers[i].in_use || !c->teachers[i].sock) continue;
    if (c->teachers[i].live) {
      // Give the BYE a moment to leave (bounded), so the teacher frees the
      // session now instead of after dead_after.
      int linger = 200;
      zmq_setsockopt(c->teachers[i].sock, ZMQ_LINGER, &linger, sizeof linger);
      send_env(&c->teachers[i], &e);
    }
    zmq_close(c->teachers[i].sock);
  }
  for (int i = 0; i < c->cfg.window; i++) {
    dl_target_block_free(&c->slots[i].blk);
    free(c->slots[i].unavailable);
  }
  free(c->slots);
  zmq_ctx_term(c->ctx);
  free(c);
}
