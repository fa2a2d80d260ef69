// The teacher server's state, shared by its three source files (not a public
// header): teacher_server.c (sockets, sessions, requests, the compute queue),
// teacher_share.c (which blocks are kept, pacing, the lead policy, the
// computed/unique accounting) and teacher_report.c (metrics, the status line,
// the Prometheus text, the sizing advice).
#ifndef DISTILL_TRANSPORT_TEACHER_SERVER_IMPL_H
#define DISTILL_TRANSPORT_TEACHER_SERVER_IMPL_H

#include <stdatomic.h>

#include "transport/block_cache.h"
#include "transport/envelope.h"
#include "transport/spill_store.h"
#include "transport/target_store.h"
#include "transport/teacher_families.h"
#include "transport/teacher_server.h"

#define RID_MAX 256
#define TS_MAX_RESOLUTIONS 8

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
  int family;                 // index into families (families are never removed)
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

// A request held back by pacing until the family that holds it catches up.
typedef struct parked_req {
  uint8_t rid[RID_MAX];
  size_t rid_len;
  uint64_t block;
  uint32_t resolution;
  int family;
} parked_req;

// Per resolution: which blocks this teacher computed, and which of those it
// dropped while a family still needed them (the reason they come again).
typedef struct res_bits {
  uint32_t resolution;
  uint8_t *computed, *evicted;
  uint64_t nbytes;
  uint64_t block_bytes;       // the largest encoded block seen at this resolution
} res_bits;

typedef struct spilled_key {
  uint64_t block;
  uint32_t resolution;
} spilled_key;

struct dl_teacher_server {
  dl_teacher_config cfg;
  char teacher_id[256];
  char endpoint[256];
  void *ctx, *router;
  dl_zap_handler *zap;
  dl_block_cache *cache;
  dl_store_reader *store_in;
  dl_store_writer *store_out;
  dl_spill_store *spill;
  spilled_key *spilled;
  int nspilled, cap_spilled;
  bool spill_failed_logged;
  peer *peers;
  int npeers, cap_peers;
  job *jobs_head, *jobs_tail;
  dl_families families;
  parked_req *parked;
  int nparked, cap_parked;
  res_bits bits[TS_MAX_RESOLUTIONS];
  int nres;
  double started_at, next_heartbeat, next_status;
  atomic_bool stop;
  dl_teacher_metrics m;
};

void ts_log(dl_teacher_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
peer *ts_find_peer(dl_teacher_server *s, const uint8_t *rid, size_t n);
// Returns -1 when the peer is gone (p is then invalid).
int ts_send_block(dl_teacher_server *s, peer *p, dl_encoded_block *b);
int ts_send_envelope(dl_teacher_server *s, peer *p, const dl_envelope *e);
// Serve (block, res) to p now if it is ready anywhere, else queue its
// computation. Returns -1 when the peer is gone.
int ts_serve_or_queue(dl_teacher_server *s, peer *p, uint64_t block, uint32_t res);

// teacher_share.c
void ts_share_init(dl_teacher_server *s);
void ts_share_free(dl_teacher_server *s);
// A request that pacing holds back is parked (and its peer told HOLD): true.
bool ts_park_if_held(dl_teacher_server *s, peer *p, uint64_t block, uint32_t res);
bool ts_is_parked(const dl_teacher_server *s, const peer *p, uint64_t block, uint32_t res);
// One round's bookkeeping: family states, releases, parked requests that may
// go now, the budget.
void ts_share_round(dl_teacher_server *s);
void ts_share_resend_holds(dl_teacher_server *s);
void ts_forget_parked_of(dl_teacher_server *s, const peer *p);
// A block was computed: counts it as unique or again (with the reason) and
// keeps it.
void ts_account_computed(dl_teacher_server *s, dl_encoded_block *b);
// The block from the spill store (a new reference) or NULL.
dl_encoded_block *ts_spill_lookup(dl_teacher_server *s, uint64_t block, uint32_t res);

// teacher_report.c
void ts_report_round(dl_teacher_server *s);

#endif
