#include "transport/teacher_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/timing.h"
#include "transport/block_cache.h"
#include "transport/target_store.h"
#include "transport/wire.h"

#define RID_MAX 256

// A message ZeroMQ refused with "again": kept in order and retried.
typedef struct pending_send {
  uint8_t *env;
  size_t env_len;
  dl_encoded_block *payload;  // a reference, or NULL
  struct pending_send *next;
} pending_send;

typedef struct peer {
  uint8_t rid[RID_MAX];
  size_t rid_len;
  char group[DL_GROUP_NAME_MAX];
  uint32_t rank, world;
  double last_heard;
  pending_send *queue_head, *queue_tail;
} peer;

typedef struct waiter {
  uint8_t rid[RID_MAX];
  size_t rid_len;
} waiter;

// A block to compute and the peers waiting for it.
typedef struct job {
  uint64_t block;
  uint32_t resolution;
  int nwaiters, cap;
  waiter *waiters;
  struct job *next;
} job;

struct dl_teacher_server {
  dl_teacher_config cfg;
  char teacher_id[256];
  char endpoint[256];
  void *ctx, *router;
  dl_zap_handler *zap;
  dl_block_cache *cache;
  dl_store_reader *store_in;
  dl_store_writer *store_out;
  peer *peers;
  int npeers, cap_peers;
  job *jobs_head, *jobs_tail;
  double next_heartbeat;
  atomic_bool stop;
  dl_teacher_metrics m;
};

void dl_teacher_config_defaults(dl_teacher_config *c) {
  memset(c, 0, sizeof *c);
  c->bind = "tcp://127.0.0.1:5555";
  c->codecs.default_codec = DL_CODEC_F32;
  c->zstd_level = 0;
  c->cache_bytes = 1u << 30;
  c->heartbeat_ms = 1000;
  c->dead_after_ms = 5000;
  c->max_msg_bytes = 1 << 20;
  c->send_hwm = 1000;
  c->io_threads = 1;
}

static void logf_(dl_teacher_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void logf_(dl_teacher_server *s, const char *fmt, ...) {
  if (s->cfg.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "teacher id=%s ", s->teacher_id);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

// ---- peers

static peer *find_peer(dl_teacher_server *s, const uint8_t *rid, size_t n) {
  for (int i = 0; i < s->npeers; i++)
    if (s->peers[i].rid_len == n && memcmp(s->peers[i].rid, rid, n) == 0) return &s->peers[i];
  return NULL;
}

static void free_queue(peer *p) {
  for (pending_send *q = p->queue_head, *next; q; q = next) {
    next = q->next;
    free(q->env);
    dl_encoded_block_unref(q->payload);
    free(q);
  }
  p->queue_head = p->queue_tail = NULL;
}

static void forget_peer(dl_teacher_server *s, peer *p, const char *why) {
  logf_(s, "event=peer_lost group=%s rank=%u why=%s", p->group, p->rank, why);
  free_queue(p);
  *p = s->peers[--s->npeers];
  s->m.peers_lost++;
}

static peer *add_peer(dl_teacher_server *s, const uint8_t *rid, size_t n) {
  if (s->npeers == s->cap_peers) {
    s->cap_peers = s->cap_peers ? 2 * s->cap_peers : 16;
    s->peers = realloc(s->peers, (size_t)s->cap_peers * sizeof *s->peers);
    if (!s->peers) dl_die_input("out of memory");
  }
  peer *p = &s->peers[s->npeers++];
  memset(p, 0, sizeof *p);
  memcpy(p->rid, rid, n);
  p->rid_len = n;
  return p;
}

// ---- sending (never a silent drop: a full queue keeps the message for later)

static void enqueue(peer *p, uint8_t *env, size_t env_len, dl_encoded_block *payload) {
  pending_send *q = dl_calloc(1, sizeof *q);
  q->env = env;
  q->env_len = env_len;
  q->payload = payload ? dl_encoded_block_ref(payload) : NULL;
  if (p->queue_tail) p->queue_tail->next = q; else p->queue_head = q;
  p->queue_tail = q;
}

// Takes ownership of env. Returns 0, or -1 when the peer turned out to be gone
// (it is then forgotten: p is no longer valid).
static int send_to_peer(dl_teacher_server *s, peer *p, uint8_t *env, size_t env_len,
                        dl_encoded_block *payload) {
  if (p->queue_head) {
    enqueue(p, env, env_len, payload);
    return 0;
  }
  int rc = dl_wire_send(s->router, p->rid, p->rid_len, env, env_len, payload);
  if (rc == DL_WIRE_SENT) {
    free(env);
    return 0;
  }
  if (rc == DL_WIRE_AGAIN) {
    enqueue(p, env, env_len, payload);
    return 0;
  }
  free(env);
  forget_peer(s, p, "unreachable");
  return -1;
}

static void flush_queues(dl_teacher_server *s) {
  for (int i = 0; i < s->npeers; i++) {
    peer *p = &s->peers[i];
    while (p->queue_head) {
      pending_send *q = p->queue_head;
      int rc = dl_wire_send(s->router, p->rid, p->rid_len, q->env, q->env_len, q->payload);
      if (rc == DL_WIRE_AGAIN) break;
      if (rc != DL_WIRE_SENT) {
        forget_peer(s, p, "unreachable");
        i--;
        break;
      }
      s->m.resent++;
      p->queue_head = q->next;
      if (!p->queue_head) p->queue_tail = NULL;
      free(q->env);
      dl_encoded_block_unref(q->payload);
      free(q);
    }
  }
}

static int send_envelope(dl_teacher_server *s, peer *p, const dl_envelope *e) {
  size_t n;
  uint8_t *buf = dl_envelope_pack(e, &n);
  return send_to_peer(s, p, buf, n, NULL);
}

// Rejections to peers without a session go straight out (nothing to queue on).
static void reject_rid(dl_teacher_server *s, const uint8_t *rid, size_t n, int code,
                       const char *reason, uint64_t block) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Reject r = DISTILL__REJECT__INIT;
  r.code = code;
  r.reason = (char *)reason;
  r.block = block;
  e.body_case = DISTILL__ENVELOPE__BODY_REJECT;
  e.reject = &r;
  dl_wire_send_envelope(s->router, rid, n, &e);
}

// Returns -1 when the peer is gone (p is then invalid).
static int send_block(dl_teacher_server *s, peer *p, dl_encoded_block *b) {
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(b, &n);
  s->m.blocks_served++;
  s->m.bytes_raw += b->raw_bytes;
  s->m.bytes_wire += b->payload_bytes;
  return send_to_peer(s, p, env, n, b);
}

// ---- sessions

static int codec_offered(const Distill__Hello *h, int codec) {
  if (h->n_codecs == 0) return 1;  // a student that lists none takes any
  for (size_t i = 0; i < h->n_codecs; i++)
    if ((int)h->codecs[i] == codec) return 1;
  return 0;
}

static const char *hello_problem(dl_teacher_server *s, const dl_envelope *e, int *code,
                                 char *buf, size_t n) {
  const Distill__Hello *h = e->hello;
  if (e->version != DL_PROTOCOL_VERSION || h->protocol_version != DL_PROTOCOL_VERSION) {
    *code = DISTILL__REJECT__CODE__PROTOCOL;
    snprintf(buf, n, "protocol version %u, this teacher speaks %d", h->protocol_version,
             DL_PROTOCOL_VERSION);
    return buf;
  }
  if (s->cfg.recipe_hash && h->recipe_hash != s->cfg.recipe_hash) {
    *code = DISTILL__REJECT__CODE__RECIPE;
    snprintf(buf, n, "recipe hash %016" PRIx64 " differs from the teacher's %016" PRIx64,
             h->recipe_hash, s->cfg.recipe_hash);
    return buf;
  }
  const dl_codec_spec *c = &s->cfg.codecs;
  for (int i = -1; i < c->n; i++) {
    dl_codec k = i < 0 ? c->default_codec : c->overrides[i].codec;
    if (!codec_offered(h, k)) {
      *code = DISTILL__REJECT__CODE__OTHER;
      snprintf(buf, n, "student cannot decode codec %s", dl_codec_name(k));
      return buf;
    }
  }
  return NULL;
}

static void on_hello(dl_teacher_server *s, const uint8_t *rid, size_t rid_len, const dl_envelope *e) {
  char buf[256];
  int code = 0;
  const char *why = hello_problem(s, e, &code, buf, sizeof buf);
  if (why) {
    s->m.rejected++;
    logf_(s, "event=reject group=%s rank=%u reason=\"%s\"", e->hello->group, e->hello->rank, why);
    reject_rid(s, rid, rid_len, code, why, 0);
    return;
  }
  peer *p = find_peer(s, rid, rid_len);
  if (!p) p = add_peer(s, rid, rid_len);
  snprintf(p->group, sizeof p->group, "%s", e->hello->group);
  p->rank = e->hello->rank;
  p->world = e->hello->world;
  p->last_heard = dl_now_seconds();
  s->m.peers_welcomed++;
  dl_envelope out;
  dl_envelope_init(&out);
  Distill__Welcome w = DISTILL__WELCOME__INIT;
  // target_kind 2: both (features and prototypes tensors in every block).
  Distill__TargetKind kinds[2] = {DISTILL__TARGET_KIND__TARGET_FEATURES, DISTILL__TARGET_KIND__TARGET_PROTOTYPES};
  Distill__TargetKind kind = (Distill__TargetKind)s->cfg.target_kind;
  w.teacher_id = s->teacher_id;
  w.incarnation = s->m.incarnation;
  w.embed_dim = s->cfg.embed_dim;
  w.patch_tokens = s->cfg.patch_tokens;
  w.n_target_kinds = s->cfg.target_kind == 2 ? 2 : 1;
  w.target_kinds = s->cfg.target_kind == 2 ? kinds : &kind;
  w.weights_hash = s->cfg.weights_hash;
  w.heartbeat_ms = (uint32_t)s->cfg.heartbeat_ms;
  out.body_case = DISTILL__ENVELOPE__BODY_WELCOME;
  out.welcome = &w;
  logf_(s, "event=welcome group=%s rank=%u world=%u", p->group, p->rank, p->world);
  send_envelope(s, p, &out);
}

// ---- requests, coalescing and the compute queue

static job *find_job(dl_teacher_server *s, uint64_t block, uint32_t res) {
  for (job *j = s->jobs_head; j; j = j->next)
    if (j->block == block && j->resolution == res) return j;
  return NULL;
}

static void add_waiter(job *j, const peer *p) {
  if (j->nwaiters == j->cap) {
    j->cap = j->cap ? 2 * j->cap : 4;
    j->waiters = realloc(j->waiters, (size_t)j->cap * sizeof *j->waiters);
    if (!j->waiters) dl_die_input("out of memory");
  }
  memcpy(j->waiters[j->nwaiters].rid, p->rid, p->rid_len);
  j->waiters[j->nwaiters++].rid_len = p->rid_len;
}

static void queue_job(dl_teacher_server *s, const peer *p, uint64_t block, uint32_t res) {
  // Without a cache there is nothing to share: each request is its own job.
  job *j = s->cfg.cache_bytes ? find_job(s, block, res) : NULL;
  if (j) {
    s->m.coalesced++;
  } else {
    j = dl_calloc(1, sizeof *j);
    j->block = block;
    j->resolution = res;
    if (s->jobs_tail) s->jobs_tail->next = j; else s->jobs_head = j;
    s->jobs_tail = j;
    if (s->cfg.job_queued) s->cfg.job_queued(s->cfg.compute_user, block, res);
  }
  add_waiter(j, p);
}

// The block from the cache or the store, as a new reference; NULL if neither has it.
static dl_encoded_block *lookup_ready(dl_teacher_server *s, uint64_t block, uint32_t res) {
  dl_encoded_block *b = dl_block_cache_get(s->cache, block, res);
  if (b) {
    s->m.cache_hits++;
    return b;
  }
  if (!s->store_in) return NULL;
  dl_err err;
  int rc = dl_store_reader_get_encoded(s->store_in, block, res, &b, &err);
  if (rc < 0) logf_(s, "event=store_corrupt block=%" PRIu64 " error=\"%s\"", block, err.msg);
  if (rc <= 0) return NULL;
  s->m.store_hits++;
  dl_block_cache_put(s->cache, b);
  return b;
}

static void on_request(dl_teacher_server *s, peer *p, const Distill__Request *r) {
  s->m.requests++;
  for (size_t i = 0; i < r->n_blocks; i++) {
    s->m.blocks_requested++;
    dl_encoded_block *b = lookup_ready(s, r->blocks[i], r->resolution);
    if (b) {
      int gone = send_block(s, p, b) < 0;
      dl_encoded_block_unref(b);
      if (gone) return;
    } else if (!s->cfg.compute_block) {
      s->m.unavailable++;
      reject_rid(s, p->rid, p->rid_len, DISTILL__REJECT__CODE__UNAVAILABLE,
                 "block not in the target store and no model loaded", r->blocks[i]);
    } else {
      queue_job(s, p, r->blocks[i], r->resolution);
    }
  }
}

static void finish_job(dl_teacher_server *s, job *j, dl_encoded_block *b, const char *error) {
  for (int i = 0; i < j->nwaiters; i++) {
    peer *p = find_peer(s, j->waiters[i].rid, j->waiters[i].rid_len);
    if (!p) continue;  // forgotten since it asked
    if (b) send_block(s, p, b);
    else reject_rid(s, p->rid, p->rid_len, DISTILL__REJECT__CODE__UNAVAILABLE, error, j->block);
  }
}

static void run_one_job(dl_teacher_server *s) {
  job *j = s->jobs_head;
  if (!j) return;
  s->jobs_head = j->next;
  if (!s->jobs_head) s->jobs_tail = NULL;
  dl_target_block tb;
  memset(&tb, 0, sizeof tb);
  dl_err err = {{0}};
  dl_encoded_block *b = NULL;
  if (s->cfg.compute_block(s->cfg.compute_user, j->block, j->resolution, &tb, &err) == 0) {
    tb.block = j->block;
    tb.resolution = j->resolution;
    b = dl_encode_block_take(&tb, &s->cfg.codecs, s->cfg.zstd_level, &err);
  }
  dl_target_block_free(&tb);
  if (b) {
    s->m.computed++;
    dl_block_cache_put(s->cache, b);
    if (s->store_out) {
      if (dl_store_writer_add(s->store_out, b, &err))
        logf_(s, "event=store_write_failed error=\"%s\"", err.msg);
      else
        s->m.store_written++;
    }
  } else {
    s->m.unavailable++;
    logf_(s, "event=compute_failed block=%" PRIu64 " error=\"%s\"", j->block, err.msg);
  }
  finish_job(s, j, b, err.msg);
  dl_encoded_block_unref(b);
  free(j->waiters);
  free(j);
}

// ---- dispatch

static void bad_message(dl_teacher_server *s, const uint8_t *rid, size_t rid_len, const char *why) {
  s->m.bad_messages++;
  peer *p = find_peer(s, rid, rid_len);
  logf_(s, "event=bad_message group=%s error=\"%s\"", p ? p->group : "?", why);
  // A peer that breaks the protocol loses its session; a well-behaved student
  // hit by a corrupted frame just says HELLO again when told NO_SESSION.
  if (p) forget_peer(s, p, "bad message");
}

static void handle_message(dl_teacher_server *s, dl_wire_msg *m) {
  size_t rid_len, env_len;
  const uint8_t *rid = dl_wire_frame(m, 0, &rid_len);
  if (m->nframes != 2 || m->overflow || rid_len == 0 || rid_len > RID_MAX) {
    if (rid_len > 0 && rid_len <= RID_MAX) bad_message(s, rid, rid_len, "wrong number of frames");
    else s->m.bad_messages++;
    return;
  }
  const uint8_t *env_bytes = dl_wire_frame(m, 1, &env_len);
  dl_envelope *e;
  dl_err err;
  if (dl_envelope_decode(env_bytes, env_len, &e, &err)) {
    bad_message(s, rid, rid_len, err.msg);
    return;
  }
  peer *p = find_peer(s, rid, rid_len);
  if (p) p->last_heard = dl_now_seconds();
  switch (e->body_case) {
    case DISTILL__ENVELOPE__BODY_HELLO: on_hello(s, rid, rid_len, e); break;
    case DISTILL__ENVELOPE__BODY_REQUEST:
    case DISTILL__ENVELOPE__BODY_HEARTBEAT:
      if (!p)
        reject_rid(s, rid, rid_len, DISTILL__REJECT__CODE__NO_SESSION, "say HELLO first", 0);
      else if (e->body_case == DISTILL__ENVELOPE__BODY_REQUEST)
        on_request(s, p, e->request);
      break;
    case DISTILL__ENVELOPE__BODY_BYE:
      if (p) forget_peer(s, p, "bye");
      break;
    default: bad_message(s, rid, rid_len, "message a student never sends"); break;
  }
  dl_envelope_free(e);
}

// ---- timers

static void run_timers(dl_teacher_server *s) {
  double now = dl_now_seconds();
  double dead = s->cfg.dead_after_ms / 1000.0;
  for (int i = 0; i < s->npeers; i++)
    if (now - s->peers[i].last_heard > dead) {
      s->m.peers_silent++;
      forget_peer(s, &s->peers[i--], "silent");
    }
  if (now < s->next_heartbeat) return;
  s->next_heartbeat = now + s->cfg.heartbeat_ms / 1000.0;
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Heartbeat hb = DISTILL__HEARTBEAT__INIT;
  e.body_case = DISTILL__ENVELOPE__BODY_HEARTBEAT;
  e.heartbeat = &hb;
  for (int i = 0; i < s->npeers; i++)
    if (send_envelope(s, &s->peers[i], &e) < 0) i--;
}

int dl_teacher_server_step(dl_teacher_server *s, int timeout_ms) {
  if (s->jobs_head) timeout_ms = 0;
  zmq_pollitem_t it = {s->router, 0, ZMQ_POLLIN, 0};
  // A ROUTER's POLLOUT says nothing about one peer: with queued sends, wake
  // up often to retry them instead.
  for (int i = 0; i < s->npeers; i++)
    if (s->peers[i].queue_head && timeout_ms > 1) timeout_ms = 1;
  if (zmq_poll(&it, 1, timeout_ms) < 0 && zmq_errno() != EINTR) return -1;
  // Bounded, so a flood of requests cannot starve compute and heartbeats.
  for (int n = 0; n < 256; n++) {
    dl_wire_msg m;
    int rc = dl_wire_recv(s->router, &m);
    if (rc < 0) return zmq_errno() == EINTR ? 0 : -1;
    if (rc == 0) break;
    handle_message(s, &m);
    dl_wire_msg_close(&m);
  }
  run_one_job(s);
  flush_queues(s);
  run_timers(s);
  return 0;
}

int dl_teacher_server_run(dl_teacher_server *s) {
  while (!atomic_load(&s->stop))
    if (dl_teacher_server_step(s, 50) < 0) return -1;
  return 0;
}

const char *dl_teacher_server_endpoint(const dl_teacher_server *s) { return s->endpoint; }

void dl_teacher_server_stop(dl_teacher_server *s) { atomic_store(&s->stop, true); }

dl_teacher_metrics dl_teacher_server_metrics(const dl_teacher_server *s) {
  dl_teacher_metrics m = s->m;
  m.live_peers = (uint64_t)s->npeers;
  m.auth_refused = s->zap ? dl_zap_refused(s->zap) : 0;
  return m;
}

void dl_teacher_metrics_print(const dl_teacher_metrics *m, void *file) {
  uint64_t served = m->blocks_served;
  fprintf(file,
          "teacher_metrics requests=%" PRIu64 " blocks_requested=%" PRIu64 " blocks_served=%" PRIu64
          " computed=%" PRIu64 " cache_hits=%" PRIu64 " cache_hit_rate=%.3f coalesced=%" PRIu64
          " store_hits=%" PRIu64 " store_written=%" PRIu64 " resent=%" PRIu64
          " unavailable=%" PRIu64 " bytes_raw=%" PRIu64 " bytes_wire=%" PRIu64
          " bad_messages=%" PRIu64 " rejected=%" PRIu64 " peers_welcomed=%" PRIu64
          " peers_lost=%" PRIu64 " peers_silent=%" PRIu64 " live_peers=%" PRIu64 " auth_refused=%" PRIu64 "\n",
          m->requests, m->blocks_requested, served, m->computed, m->cache_hits,
          m->blocks_requested ? (double)m->cache_hits / (double)m->blocks_requested : 0.0,
          m->coalesced, m->store_hits, m->store_written, m->resent, m->unavailable, m->bytes_raw,
          m->bytes_wire, m->bad_messages, m->rejected, m->peers_welcomed, m->peers_lost,
          m->peers_silent, m->live_peers, m->auth_refused);
}

// ---- life cycle

static int setup_socket(dl_teacher_server *s, dl_err *err) {
  const dl_teacher_config *c = &s->cfg;
  s->router = zmq_socket(s->ctx, ZMQ_ROUTER);
  int one = 1, zero = 0;
  int64_t maxmsg = c->max_msg_bytes;
  zmq_setsockopt(s->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_setsockopt(s->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
  zmq_setsockopt(s->router, ZMQ_SNDHWM, &c->send_hwm, sizeof c->send_hwm);
  zmq_setsockopt(s->router, ZMQ_LINGER, &zero, sizeof zero);
  // Room for a few 1 MiB blocks per connection in the kernel: fewer, larger
  // writes and fewer wake-ups on both ends (capped by net.core.wmem_max).
  int sndbuf = 4 << 20;
  zmq_setsockopt(s->router, ZMQ_SNDBUF, &sndbuf, sizeof sndbuf);
  if (c->curve_secret) {
    if (c->nallow > 0 && !(s->zap = dl_zap_start(s->ctx, c->allow, c->nallow, err))) return -1;
    zmq_setsockopt(s->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(s->router, ZMQ_CURVE_SECRETKEY, c->curve_secret->z85, DL_Z85_KEY_LEN);
  }
  if (zmq_bind(s->router, c->bind) != 0)
    return dl_fail(err, "cannot bind %s: %s", c->bind, zmq_strerror(zmq_errno()));
  size_t n = sizeof s->endpoint;
  zmq_getsockopt(s->router, ZMQ_LAST_ENDPOINT, s->endpoint, &n);
  if (!c->teacher_id) snprintf(s->teacher_id, sizeof s->teacher_id, "%s", s->endpoint);
  return 0;
}

static int open_store(dl_teacher_server *s, dl_err *err) {
  const char *dir = s->cfg.store_dir;
  if (!dir) return 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/index.dlti", dir);
  if (access(path, F_OK) == 0 && !(s->store_in = dl_store_reader_open(dir, err))) return -1;
  if (s->cfg.store_write && !(s->store_out = dl_store_writer_open(dir, 0, err))) return -1;
  if (!s->store_in && !s->cfg.compute_block)
    return dl_fail(err, "%s: no target store there, and no model to compute blocks", dir);
  return 0;
}

dl_teacher_server *dl_teacher_server_create(const dl_teacher_config *cfg, dl_err *err) {
  if (!cfg->compute_block && !cfg->store_dir) {
    dl_fail(err, "a teacher needs a model (compute_block) or a target store");
    return NULL;
  }
  dl_teacher_server *s = dl_calloc(1, sizeof *s);
  s->cfg = *cfg;
  snprintf(s->teacher_id, sizeof s->teacher_id, "%s", cfg->teacher_id ? cfg->teacher_id : cfg->bind);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  // Differs at every start, so students notice a restart behind the same id.
  s->m.incarnation = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
                     ((uint64_t)getpid() << 32);
  s->cache = dl_block_cache_create(cfg->cache_bytes);
  s->ctx = zmq_ctx_new();
  if (zmq_ctx_set(s->ctx, ZMQ_IO_THREADS, cfg->io_threads > 0 ? cfg->io_threads : 1) != 0) {
    dl_fail(err, "cannot use %d ZeroMQ I/O threads", cfg->io_threads);
    dl_teacher_server_destroy(s);
    return NULL;
  }
  if (open_store(s, err) || setup_socket(s, err)) {
    dl_teacher_server_destroy(s);
    return NULL;
  }
  logf_(s, "event=listening bind=%s incarnation=%016" PRIx64, cfg->bind, s->m.incarnation);
  return s;
}

void dl_teacher_server_destroy(dl_teacher_server *s) {
  if (!s) return;
  for (job *j = s->jobs_head, *next; j; j = next) {
    next = j->next;
    free(j->waiters);
    free(j);
  }
  for (int i = 0; i < s->npeers; i++) free_queue(&s->peers[i]);
  free(s->peers);
  if (s->router) zmq_close(s->router);
  dl_zap_stop(s->zap);
  if (s->ctx) zmq_ctx_term(s->ctx);
  dl_block_cache_destroy(s->cache);
  dl_store_reader_close(s->store_in);
  dl_err err;
  if (s->store_out && dl_store_writer_close(s->store_out, &err))
    logf_(s, "event=store_close_failed error=\"%s\"", err.msg);
  free(s);
}
