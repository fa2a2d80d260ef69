#include "tests/transport/fault_relay.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/err.h"
#include "common/timing.h"

enum { kMaxFrames = 4, kMaxHeld = 256 };

typedef struct rmsg {
  int n;
  uint8_t *data[kMaxFrames];
  size_t len[kMaxFrames];
  double release_at;
} rmsg;

struct fault_relay {
  void *ctx, *front, *back;
  char endpoint[256];
  double rate;
  uint64_t rng;
  uint8_t rid[256];
  size_t rid_len;
  rmsg delayed[kMaxHeld];
  int ndelayed;
  rmsg reorder_held;
  bool holding;
  uint64_t blocks_seen;
  fault_counts c;
  atomic_bool stop;
  pthread_t thread;
};

static double uniform(fault_relay *r) {
  r->rng ^= r->rng << 13;
  r->rng ^= r->rng >> 7;
  r->rng ^= r->rng << 17;
  return (double)(r->rng >> 11) / 9007199254740992.0;
}

static int recv_msg(void *sock, rmsg *m) {
  m->n = 0;
  int more = 1;
  while (more) {
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, sock, m->n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
      zmq_msg_close(&f);
      return 0;
    }
    more = zmq_msg_more(&f);
    if (m->n < kMaxFrames) {
      m->len[m->n] = zmq_msg_size(&f);
      m->data[m->n] = dl_malloc(m->len[m->n] + 1);
      memcpy(m->data[m->n], zmq_msg_data(&f), m->len[m->n]);
      m->n++;
    }
    zmq_msg_close(&f);
  }
  return 1;
}

static void free_msg(rmsg *m) {
  for (int i = 0; i < m->n; i++) free(m->data[i]);
  m->n = 0;
}

static void send_frames(void *sock, const uint8_t *prefix, size_t plen, const rmsg *m) {
  if (prefix) zmq_send(sock, prefix, plen, ZMQ_SNDMORE);
  for (int i = 0; i < m->n; i++) zmq_send(sock, m->data[i], m->len[i], i + 1 < m->n ? ZMQ_SNDMORE : 0);
}

static void send_down(fault_relay *r, const rmsg *m) {
  if (r->rid_len) send_frames(r->front, r->rid, r->rid_len, m);
  r->c.forwarded_down++;
}

enum { F_CORRUPT_PAYLOAD, F_CORRUPT_ENVELOPE, F_TRUNCATE, F_DROP_PAYLOAD, F_DELAY, F_REORDER,
       F_DUPLICATE, F_NONE, kKinds = F_NONE };

// Blocks 20..26 get one fault of each kind in turn, so every kind happens in
// every run; after that the kinds are drawn at random at the given rate.
static int pick_down_fault(fault_relay *r, bool block) {
  if (block && r->blocks_seen >= 20 && r->blocks_seen < 20 + kKinds) return (int)(r->blocks_seen - 20);
  double u = uniform(r) / (r->rate > 0 ? r->rate : 1e-300);
  if (u >= 1.0) return F_NONE;
  if (!block) return u < 0.5 ? F_CORRUPT_ENVELOPE : F_DUPLICATE;
  return (int)(u * kKinds);
}

// Teacher -> student: where blocks travel, so where most faults go.
static void on_down(fault_relay *r, rmsg *m) {
  bool block = m->n == 2;
  int kind = pick_down_fault(r, block);
  if (block) r->blocks_seen++;
  switch (kind) {
    case F_CORRUPT_PAYLOAD:
      m->data[1][(size_t)(uniform(r) * (double)m->len[1])] ^= 0x5A;
      r->c.corrupted_payload++;
      break;
    case F_CORRUPT_ENVELOPE:
      m->data[0][(size_t)(uniform(r) * (double)m->len[0])] ^= 0x21;
      r->c.corrupted_envelope++;
      break;
    case F_TRUNCATE:
      m->len[1] /= 2;
      r->c.truncated++;
      break;
    case F_DROP_PAYLOAD:
      free(m->data[1]);
      m->n = 1;
      r->c.dropped_payload_frame++;
      break;
    case F_DELAY:
      if (r->ndelayed < kMaxHeld) {
        m->release_at = dl_now_seconds() + 0.02 + 0.06 * uniform(r);
        r->delayed[r->ndelayed++] = *m;
        r->c.delayed++;
        return;
      }
      break;
    case F_REORDER:
      if (!r->holding) {
        r->reorder_held = *m;  // goes out after the next message
        r->holding = true;
        r->c.reordered++;
        return;
      }
      break;
    case F_DUPLICATE:
      send_down(r, m);
      r->c.duplicated++;
      break;
    default: break;
  }
  send_down(r, m);
  free_msg(m);
  if (r->holding) {
    r->holding = false;
    send_down(r, &r->reorder_held);
    free_msg(&r->reorder_held);
  }
}

// Student -> teacher: requests, heartbeats, HELLO.
static void on_up(fault_relay *r, rmsg *m) {
  if (m->n < 2) {
    free_msg(m);
    return;
  }
  memcpy(r->rid, m->data[0], m->len[0] < sizeof r->rid ? m->len[0] : sizeof r->rid);
  r->rid_len = m->len[0] < sizeof r->rid ? m->len[0] : sizeof r->rid;
  rmsg body = *m;  // without the routing id
  for (int i = 1; i < m->n; i++) {
    body.data[i - 1] = m->data[i];
    body.len[i - 1] = m->len[i];
  }
  body.n = m->n - 1;
  // Messages 10 and 11 are corrupted and duplicated for sure, then at random.
  uint64_t nth = r->c.forwarded_up;
  double u = nth == 10 ? 0.25 : nth == 11 ? 0.75 : uniform(r) / (r->rate > 0 ? r->rate / 2 : 1e-300);
  if (u < 0.5 && body.len[0] > 0) {
    body.data[0][(size_t)(uniform(r) * (double)body.len[0])] ^= 0x44;
    r->c.corrupted_up++;
  } else if (u < 1.0) {
    send_frames(r->back, NULL, 0, &body);
    r->c.duplicated_up++;
  }
  send_frames(r->back, NULL, 0, &body);
  r->c.forwarded_up++;
  free_msg(m);
}

static void release_delayed(fault_relay *r, bool all) {
  double now = dl_now_seconds();
  for (int i = 0; i < r->ndelayed; i++)
    if (all || r->delayed[i].release_at <= now) {
      send_down(r, &r->delayed[i]);
      free_msg(&r->delayed[i]);
      r->delayed[i--] = r->delayed[--r->ndelayed];
    }
}

static void *relay_main(void *arg) {
  fault_relay *r = arg;
  while (!atomic_load(&r->stop)) {
    zmq_pollitem_t it[2] = {{r->front, 0, ZMQ_POLLIN, 0}, {r->back, 0, ZMQ_POLLIN, 0}};
    zmq_poll(it, 2, 5);
    rmsg m;
    while (recv_msg(r->front, &m)) on_up(r, &m);
    while (recv_msg(r->back, &m)) on_down(r, &m);
    release_delayed(r, false);
  }
  release_delayed(r, true);
  if (r->holding) free_msg(&r->reorder_held);
  return NULL;
}

fault_relay *fault_relay_start(const char *teacher_endpoint, double rate, uint64_t seed) {
  fault_relay *r = dl_calloc(1, sizeof *r);
  r->rate = rate;
  r->rng = seed | 1;
  r->ctx = zmq_ctx_new();
  r->front = zmq_socket(r->ctx, ZMQ_ROUTER);
  r->back = zmq_socket(r->ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(r->front, ZMQ_LINGER, &zero, sizeof zero);
  zmq_setsockopt(r->back, ZMQ_LINGER, &zero, sizeof zero);
  zmq_bind(r->front, "tcp://127.0.0.1:*");
  size_t n = sizeof r->endpoint;
  zmq_getsockopt(r->front, ZMQ_LAST_ENDPOINT, r->endpoint, &n);
  zmq_connect(r->back, teacher_endpoint);
  pthread_create(&r->thread, NULL, relay_main, r);
  return r;
}

const char *fault_relay_endpoint(const fault_relay *r) { return r->endpoint; }

fault_counts fault_relay_stop(fault_relay *r) {
  atomic_store(&r->stop, true);
  pthread_join(r->thread, NULL);
  fault_counts c = r->c;
  zmq_close(r->front);
  zmq_close(r->back);
  zmq_ctx_term(r->ctx);
  free(r);
  return c;
}
