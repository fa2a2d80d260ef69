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
#include "transport/teacher_server_impl.h"
#include "transport/wire.h"

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
  c->lead_policy = DL_LEAD_PACE;
  c->family_grace_ms = 30000;
  c->status_every_ms = 10000;
}

#include <stdarg.h>
void ts_log(dl_teacher_server *s, const char *fmt, ...) {
  if (s->cfg.quiet) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "teacher id=%s ", s->teacher_id);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

// ---- peers

peer *ts_find_peer(dl_teacher_server *s, const uint8_t *rid, size_t n) {
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
  ts_log(s, "event=peer_lost group=%s rank=%u why=%s", p->group, p->rank, why);
  if (p->family >= 0) dl_families_peer_gone(&s->families.v[p->family], strcmp(why, "bye") == 0, dl_now_seconds());
  ts_forget_parked_of(s, p);
  free_queue(p);
  *p = s->peers[--s->npeers];
  s->m.peers_lost++;
}

static peer *add_peer(dl_teacher_server *s, const uint8_t *rid, size_t n) {
  s->peers = dl_grow(s->peers, s->npeers, &s->cap_peers, 16, sizeof *s->peers);
  peer *p = &s->peers[s->npeers++];
  memset(p, 0, sizeof *p);
  memcpy(p->rid, rid, n);
  p->rid_len = n;
  p->family = -1;
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

int ts_send_envelope(dl_teacher_server *s, peer *p, const dl_envelope *e) {
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

int ts_send_block(dl_teacher_server *s, peer *p, dl_encoded_block *b) {
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(b, &n);
  s->m.blocks_served++;
  if (p->family >= 0) s->families.v[p->family].served++;
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

// Appends "key=theirs (teacher: mine)" for every key whose value differs
// between two "key=value;..." texts; returns how many.
static int list_differences(const char *theirs, const char *mine, char *buf, size_t n, size_t *len) {
  int count = 0;
  for (const char *t = theirs; *t;) {
    const char *end = strchr(t, ';'), *eq = strchr(t, '=');
    if (!end) end = t + strlen(t);
    if (eq && eq < end) {
      const size_t klen = (size_t)(eq - t) + 1;  // "key="
      const char *m = mine;
      while (m && *m && strncmp(m, t, klen) != 0) m = (m = strchr(m, ';')) ? m + 1 : NULL;
      const char *mv = m && *m ? m + klen : "", *mend = strchr(mv, ';');
      if (!mend) mend = mv + strlen(mv);
      const char *tv = eq + 1;
      if ((size_t)(end - tv) != (size_t)(mend - mv) || strncmp(tv, mv, (size_t)(end - tv)) != 0) {
        if (*len < n)
          *len += (size_t)snprintf(buf + *len, n - *len, "%s%.*s (teacher: %.*s)", count ? "; " : "", (int)(end - t),
                                   t, (int)(mend - mv), m && *m ? mv : "not set");
        count++;
      }
    }
    t = *end ? end + 1 : end;
  }
  return count;
}

// The refusal of a student whose sample stream is not the teacher's, naming
// what differs when both sides sent their stream text.
static const char *stream_difference(dl_teacher_server *s, const Distill__Hello *h, char *buf, size_t n) {
  const char *mine = s->cfg.stream_text ? s->cfg.stream_text : "";
  const char *theirs = h->stream ? h->stream : "";
  size_t len = (size_t)snprintf(buf, n, "the student's sample stream differs from the teacher's: ");
  if (*mine && *theirs && list_differences(theirs, mine, buf, n, &len) > 0) return buf;
  snprintf(buf + len, n - len, "stream hash %016" PRIx64 ", the teacher's %016" PRIx64, h->recipe_hash,
           s->cfg.recipe_hash);
  return buf;
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
    return stream_difference(s, h, buf, n);
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

// The family learns the rank's plan and cursor. A plan that is empty (a
// student with an endless stream) needs nothing kept and holds nobody back.
static void register_family(dl_teacher_server *s, peer *p, const Distill__Hello *h, bool new_peer) {
  dl_plan_phase plan[DL_PLAN_MAX_PHASES];
  const int nplan = (int)h->n_plan;
  for (int i = 0; i < nplan; i++)
    plan[i] = (dl_plan_phase){h->plan[i]->first_block, h->plan[i]->end_block, h->plan[i]->resolution};
  dl_family *f = dl_families_hello(&s->families, h->group, h->world, plan, nplan, h->rank, h->cursor, new_peer);
  p->family = (int)(f - s->families.v);
}

static void on_hello(dl_teacher_server *s, const uint8_t *rid, size_t rid_len, const dl_envelope *e) {
  char buf[1000];  // a REJECT's reason: under the decoder's 1024
  int code = 0;
  const char *why = hello_problem(s, e, &code, buf, sizeof buf);
  if (why) {
    s->m.rejected++;
    ts_log(s, "event=reject group=%s rank=%u reason=\"%s\"", e->hello->group, e->hello->rank, why);
    reject_rid(s, rid, rid_len, code, why, 0);
    return;
  }
  peer *p = ts_find_peer(s, rid, rid_len);
  const bool new_peer = !p || p->family < 0 || strcmp(p->group, e->hello->group) != 0;
  if (p && new_peer && p->family >= 0) dl_families_peer_gone(&s->families.v[p->family], false, dl_now_seconds());
  if (!p) p = add_peer(s, rid, rid_len);
  snprintf(p->group, sizeof p->group, "%s", e->hello->group);
  p->rank = e->hello->rank;
  p->world = e->hello->world;
  p->last_heard = dl_now_seconds();
  register_family(s, p, e->hello, new_peer);
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
  w.patch_dim = s->cfg.patch_dim ? s->cfg.patch_dim : s->cfg.embed_dim;
  w.patch_tokens = s->cfg.patch_tokens;
  w.n_target_kinds = s->cfg.target_kind == 2 ? 2 : 1;
  w.target_kinds = s->cfg.target_kind == 2 ? kinds : &kind;
  w.weights_hash = s->cfg.weights_hash;
  w.heads_hash = s->cfg.heads_hash;
  w.heartbeat_ms = (uint32_t)s->cfg.heartbeat_ms;
  out.body_case = DISTILL__ENVELOPE__BODY_WELCOME;
  out.welcome = &w;
  ts_log(s, "event=welcome group=%s rank=%u world=%u", p->group, p->rank, p->world);
  ts_send_envelope(s, p, &out);
}

// ---- requests, coalescing and the compute queue

static job *find_job(dl_teacher_server *s, uint64_t block, uint32_t res) {
  for (job *j = s->jobs_head; j; j = j->next)
    if (j->block == block && j->resolution == res) return j;
  return NULL;
}

static void add_waiter(job *j, const peer *p) {
  j->waiters = dl_grow(j->waiters, j->nwaiters, &j->cap, 4, sizeof *j->waiters);
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

// The block from the cache, the spill store or the target store, as a new
// reference; NULL if none has it.
static dl_encoded_block *lookup_ready(dl_teacher_server *s, uint64_t block, uint32_t res) {
  dl_encoded_block *b = dl_block_cache_get(s->cache, block, res);
  if (b) {
    s->m.cache_hits++;
    return b;
  }
  if ((b = ts_spill_lookup(s, block, res))) return b;
  dl_err err;
  int rc = 0;
  if (s->store_out) rc = dl_store_writer_get_encoded(s->store_out, block, res, &b, &err);
  if (rc == 0 && s->store_in) rc = dl_store_reader_get_encoded(s->store_in, block, res, &b, &err);
  if (rc < 0) ts_log(s, "event=store_corrupt block=%" PRIu64 " error=\"%s\"", block, err.msg);
  if (rc <= 0) return NULL;
  s->m.store_hits++;
  // Kept in RAM only while a family still needs it (the next round releases it otherwise).
  dl_block_cache_put(s->cache, b);
  return b;
}

int ts_serve_or_queue(dl_teacher_server *s, peer *p, uint64_t block, uint32_t res) {
  dl_encoded_block *b = lookup_ready(s, block, res);
  if (b) {
    const int gone = ts_send_block(s, p, b) < 0;
    dl_encoded_block_unref(b);
    return gone ? -1 : 0;
  }
  if (!s->cfg.compute_block) {
    s->m.unavailable++;
    reject_rid(s, p->rid, p->rid_len, DISTILL__REJECT__CODE__UNAVAILABLE,
               "block not in the target store and no model loaded", block);
  } else {
    queue_job(s, p, block, res);
  }
  return 0;
}

static void note_cursor(dl_teacher_server *s, const peer *p, uint64_t cursor, uint64_t received, bool waiting) {
  if (p->family >= 0) dl_families_cursor(&s->families.v[p->family], p->rank, cursor, received, waiting);
}

static void on_request(dl_teacher_server *s, peer *p, const Distill__Request *r) {
  s->m.requests++;
  note_cursor(s, p, r->cursor, r->received, r->waiting);
  for (size_t i = 0; i < r->n_blocks; i++) {
    s->m.blocks_requested++;
    const uint64_t block = r->blocks[i];
    // A request again for a block it holds already: still held (HOLD is re-sent).
    if (ts_is_parked(s, p, block, r->resolution)) continue;
    if (dl_block_cache_has(s->cache, block, r->resolution) || !ts_park_if_held(s, p, block, r->resolution))
      if (ts_serve_or_queue(s, p, block, r->resolution) < 0) return;
  }
}

static void finish_job(dl_teacher_server *s, job *j, dl_encoded_block *b, const char *error) {
  for (int i = 0; i < j->nwaiters; i++) {
    peer *p = ts_find_peer(s, j->waiters[i].rid, j->waiters[i].rid_len);
    if (!p) continue;  // forgotten since it asked
    if (b) ts_send_block(s, p, b);
    else reject_rid(s, p->rid, p->rid_len, DISTILL__REJECT__CODE__UNAVAILABLE, error, j->block);
  }
}

// The queued job with the smallest block id: a follower's rare miss is not
// stuck behind the leader's prefetch. Unlinked from the queue.
static job *take_first_job(dl_teacher_server *s) {
  job **best = NULL, *prev_best = NULL;
  job *prev = NULL;
  for (job **jp = &s->jobs_head; *jp; prev = *jp, jp = &(*jp)->next)
    if (!best || (*jp)->block < (*best)->block) best = jp, prev_best = prev;
  if (!best) return NULL;
  job *j = *best;
  *best = j->next;
  if (s->jobs_tail == j) s->jobs_tail = prev_best;
  return j;
}

static void run_one_job(dl_teacher_server *s) {
  job *j = take_first_job(s);
  if (!j) return;
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
    ts_account_computed(s, b);
    if (s->store_out) {
      if (dl_store_writer_add(s->store_out, b, &err))
        ts_log(s, "event=store_write_failed error=\"%s\"", err.msg);
      else
        s->m.store_written++;
    }
  } else {
    s->m.unavailable++;
    ts_log(s, "event=compute_failed block=%" PRIu64 " error=\"%s\"", j->block, err.msg);
  }
  finish_job(s, j, b, err.msg);
  dl_encoded_block_unref(b);
  free(j->waiters);
  free(j);
}

// ---- dispatch

static void bad_message(dl_teacher_server *s, const uint8_t *rid, size_t rid_len, const char *why) {
  s->m.bad_messages++;
  peer *p = ts_find_peer(s, rid, rid_len);
  ts_log(s, "event=bad_message group=%s error=\"%s\"", p ? p->group : "?", why);
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
  peer *p = ts_find_peer(s, rid, rid_len);
  if (p) p->last_heard = dl_now_seconds();
  switch (e->body_case) {
    case DISTILL__ENVELOPE__BODY_HELLO: on_hello(s, rid, rid_len, e); break;
    case DISTILL__ENVELOPE__BODY_REQUEST:
    case DISTILL__ENVELOPE__BODY_HEARTBEAT:
      if (!p)
        reject_rid(s, rid, rid_len, DISTILL__REJECT__CODE__NO_SESSION, "say HELLO first", 0);
      else if (e->body_case == DISTILL__ENVELOPE__BODY_REQUEST)
        on_request(s, p, e->request);
      else
        note_cursor(s, p, e->heartbeat->cursor, e->heartbeat->received, e->heartbeat->waiting);
      break;
    case DISTILL__ENVELOPE__BODY_BYE:
      if (p && e->bye->cursor) note_cursor(s, p, e->bye->cursor, 0, false);  // 0: a client that never set it
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
    if (ts_send_envelope(s, &s->peers[i], &e) < 0) i--;
  ts_share_resend_holds(s);
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
  ts_share_round(s);
  run_one_job(s);
  flush_queues(s);
  run_timers(s);
  ts_report_round(s);
  return 0;
}

int dl_teacher_server_run(dl_teacher_server *s) {
  while (!atomic_load(&s->stop))
    if (dl_teacher_server_step(s, 50) < 0) return -1;
  return 0;
}

const char *dl_teacher_server_endpoint(const dl_teacher_server *s) { return s->endpoint; }

void dl_teacher_server_stop(dl_teacher_server *s) { atomic_store(&s->stop, true); }

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

// A writing teacher opens only the writer: it serves every block of the store,
// those there before and those it writes during this run.
static int open_store(dl_teacher_server *s, dl_err *err) {
  const char *dir = s->cfg.store_dir;
  if (!dir) return 0;
  if (s->cfg.store_write) {
    if (!s->cfg.compute_block) return dl_fail(err, "%s: writing a target store needs a model to compute blocks", dir);
    s->store_out = dl_store_writer_open(dir, 0, s->cfg.store_identity, err);
    return s->store_out ? 0 : -1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/index.dlti", dir);
  if (access(path, F_OK) == 0 && !(s->store_in = dl_store_reader_open(dir, s->cfg.store_identity, err))) return -1;
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
  s->started_at = dl_now_seconds();
  dl_families_init(&s->families, cfg->family_grace_ms / 1000.0);
  ts_share_init(s);
  s->ctx = zmq_ctx_new();
  if (zmq_ctx_set(s->ctx, ZMQ_IO_THREADS, cfg->io_threads > 0 ? cfg->io_threads : 1) != 0) {
    dl_fail(err, "cannot use %d ZeroMQ I/O threads", cfg->io_threads);
    dl_teacher_server_destroy(s);
    return NULL;
  }
  if (cfg->lead_policy == DL_LEAD_SPILL && (!cfg->spill_dir || !cfg->spill_bytes)) {
    dl_fail(err, "the spill policy needs a spill folder and a spill budget");
    dl_teacher_server_destroy(s);
    return NULL;
  }
  if (cfg->spill_dir && !(s->spill = dl_spill_open(cfg->spill_dir, cfg->spill_bytes, err))) {
    dl_teacher_server_destroy(s);
    return NULL;
  }
  if (open_store(s, err) || setup_socket(s, err)) {
    dl_teacher_server_destroy(s);
    return NULL;
  }
  ts_log(s, "event=listening bind=%s incarnation=%016" PRIx64, cfg->bind, s->m.incarnation);
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
  ts_share_free(s);
  dl_families_free(&s->families);
  dl_spill_close(s->spill);
  dl_store_reader_close(s->store_in);
  dl_err err;
  if (s->store_out && dl_store_writer_close(s->store_out, &err))
    ts_log(s, "event=store_close_failed error=\"%s\"", err.msg);
  free(s);
}
