// The teacher side of the protocol: one ROUTER socket serving any number of
// student ranks. The model plugs in through the compute_block callback; the
// server owns everything around it (sessions, credit-limited requests,
// coalescing, the LRU cache, the target store, heartbeats, CURVE).
//
//   dl_teacher_config cfg;
//   dl_teacher_config_defaults(&cfg);
//   cfg.bind = "tcp://*:5555";
//   cfg.compute_block = my_forward;      // or dl_synthetic_compute
//   cfg.compute_user = my_model;
//   dl_teacher_server *s = dl_teacher_server_create(&cfg, &err);
//   dl_teacher_server_run(s);            // until dl_teacher_server_stop(s)
//   dl_teacher_metrics m = dl_teacher_server_metrics(s);
//   dl_teacher_server_destroy(s);
//
// Threading: run/step and everything else run on one thread; only
// dl_teacher_server_stop may be called from another thread or a signal handler.
#ifndef DISTILL_TRANSPORT_TEACHER_SERVER_H
#define DISTILL_TRANSPORT_TEACHER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/curve.h"
#include "transport/encoded_block.h"
#include "transport/target_block.h"
#include "transport/target_store.h"

// Computes the targets of one block at one resolution into out (zeroed on
// entry; add tensors with dl_target_block_add and set first_sample and
// num_samples). Returns 0, or -1 with a message: the requesting students get
// a REJECT UNAVAILABLE for that block. Called on the server's thread.
typedef int (*dl_compute_block_fn)(void *user, uint64_t block, uint32_t resolution,
                                   dl_target_block *out, dl_err *err);

// What the teacher does when a family runs further ahead of a slower one that
// needs the same blocks than the budget allows (docs/operations.md, "Sharing").
typedef enum {
  DL_LEAD_PACE,   // hold the leader's requests back (HOLD) until the slower family is within max_lead
  DL_LEAD_SPILL,  // keep the blocks in the spill store; pace only when it is full
  DL_LEAD_FREE,   // drop the oldest blocks over the budget; a family that needs one again gets it recomputed
} dl_lead_policy;

typedef struct dl_teacher_config {
  const char *bind;         // e.g. "tcp://127.0.0.1:5555", "ipc:///tmp/t.sock"
  const char *teacher_id;   // stable across restarts (rendezvous key); NULL: bind
  uint64_t recipe_hash;     // the stream identity (dl_recipe_stream_hash); 0: accept any student's stream
  const char *stream_text;  // its text (dl_recipe_stream_text): a refusal names the keys that differ
  uint64_t weights_hash;
  uint64_t heads_hash;      // the heads' last layers (dl_heads_last_layer_hash); 0: not announced (features)
  uint32_t embed_dim;        // WELCOME: the "cls" targets' width (prototypes: the DINO head's bottleneck)
  uint32_t patch_dim;        // the "patch" targets' width (prototypes: the iBOT head's bottleneck); 0: embed_dim
  uint32_t patch_tokens;
  int target_kind;          // 0 features, 1 prototypes, 2 both
  dl_codec_spec codecs;
  int zstd_level;           // 0: no zstd
  size_t cache_bytes;       // 0: no cache and no coalescing: every request computes
  dl_lead_policy lead_policy;  // default pace
  size_t max_lead_bytes;    // pacing bound, in bytes of blocks past the slower family (0: half the cache)
  int family_grace_ms;      // a family gone silent still holds the others this long (default 30000)
  const char *spill_dir;    // the spill store's folder (spill policy; optional with the others)
  size_t spill_bytes;       // its budget
  int status_every_ms;      // the status line (and publish) this often; 0: never (default 10000)
  // Optional: called with the status as Prometheus text and as one JSON
  // line every status_every_ms and at stop (on the server's thread).
  void (*publish)(void *user, const char *prometheus, const char *json_line);
  void *publish_user;
  int heartbeat_ms;         // default 1000
  int dead_after_ms;        // default 5000
  int64_t max_msg_bytes;    // largest message a peer may send (ZMQ_MAXMSGSIZE)
  int send_hwm;             // messages queued per peer before sends return "again"
  // ZeroMQ I/O threads (default 1). Each student connection lives on one of
  // them, and that thread's kernel send path (copy, TCP, wake-ups) limits a
  // teacher on a fast network: more threads send to different students on
  // different cores. ZeroMQ spreads connections over the threads unevenly,
  // though, so groups sharing the stream drift apart and blocks that left the
  // cache are computed again; one thread keeps them in step.
  int io_threads;
  dl_compute_block_fn compute_block;  // NULL: serve from the store only
  void *compute_user;
  // Optional: told of each new compute job as it is queued (before its
  // compute_block call), so a model can start decoding and computing ahead
  // on its own threads while this thread encodes and sends. Same user.
  void (*job_queued)(void *user, uint64_t block, uint32_t resolution);
  const char *store_dir;    // read blocks from here when present (NULL: none)
  bool store_write;         // also add every computed block to the store
  // What the store's blocks must be (stream, weights and heads, codec): a
  // store written under another identity is refused. NULL: not checked.
  const dl_store_identity *store_identity;
  const dl_curve_key *curve_secret;   // CURVE server when set
  const dl_curve_key *allow;          // allowed student public keys (with curve_secret)
  int nallow;
  bool quiet;               // no log lines
} dl_teacher_config;

void dl_teacher_config_defaults(dl_teacher_config *c);

typedef struct dl_teacher_metrics {
  uint64_t requests;          // REQUEST messages
  uint64_t blocks_requested;  // block ids in them
  uint64_t blocks_served;     // BLOCK messages handed to ZeroMQ
  uint64_t cache_hits;
  uint64_t coalesced;         // requests that joined a pending computation
  uint64_t computed;          // compute_block calls that succeeded
  uint64_t computed_unique;   // of those, the first computation of a (block, resolution) anywhere
  uint64_t computed_again;    // the rest, by reason:
  uint64_t again_evicted;     //   this teacher dropped it while a family still needed it (free policy, budget)
  uint64_t again_rewind;      //   every family had taken it; one came back for it (resume from a checkpoint)
  uint64_t again_teacher_changed;  // another teacher (or this one before a restart) served it before
  uint64_t released;          // cache entries dropped over the budget after every family that needs them took them
  uint64_t evicted;           // cache entries dropped while a family still needed them
  uint64_t held;              // requests held back by pacing
  uint64_t spilled;           // blocks written to the spill store
  uint64_t spill_hits;        // blocks served from it
  uint64_t cache_bytes, cache_bytes_peak;
  uint64_t families;          // families known (any state)
  uint64_t store_hits;
  uint64_t store_written;
  uint64_t resent;            // sends retried after a full queue
  uint64_t unavailable;
  uint64_t bytes_raw;         // float32 bytes of the blocks served
  uint64_t bytes_wire;        // payload bytes of the blocks served
  uint64_t bad_messages;      // undecodable, malformed, or out of protocol
  uint64_t rejected;          // HELLOs refused
  uint64_t peers_welcomed;
  uint64_t peers_lost;        // silent past dead_after, BYE, bad message, or unreachable
  uint64_t peers_silent;      // of those, silent past dead_after
  uint64_t live_peers;
  uint64_t auth_refused;      // CURVE handshakes refused by the allow-list
  uint64_t incarnation;
} dl_teacher_metrics;

typedef struct dl_teacher_server dl_teacher_server;

dl_teacher_server *dl_teacher_server_create(const dl_teacher_config *cfg, dl_err *err);
// Serves until dl_teacher_server_stop. Returns 0, or -1 on a socket failure.
int dl_teacher_server_run(dl_teacher_server *s);
// One round: waits up to timeout_ms for messages, handles them, computes at
// most one queued block, retries full sends, runs the timers.
int dl_teacher_server_step(dl_teacher_server *s, int timeout_ms);
void dl_teacher_server_stop(dl_teacher_server *s);
// The endpoint actually bound (a "tcp://127.0.0.1:*" bind gets its port here).
const char *dl_teacher_server_endpoint(const dl_teacher_server *s);
dl_teacher_metrics dl_teacher_server_metrics(const dl_teacher_server *s);
// Prints the metrics as one key=value line.
void dl_teacher_metrics_print(const dl_teacher_metrics *m, void *file);
// The summary users look for first, e.g. "computed 2040 unique blocks for 2
// families (4080 served); computed again: 0".
void dl_teacher_sharing_print(const dl_teacher_metrics *m, void *file);

// How the families' speeds compare, e.g. "vitl14 is 3.6x slower than vits14:
// give it 3.6x the ranks, or it paces vits14" (empty when within 25 %).
void dl_teacher_server_sizing_advice(const dl_teacher_server *s, char *buf, size_t n);

// One family as the teacher sees it (for tests, benchmarks and reports).
typedef struct dl_family_report {
  char name[64];
  const char *state;          // attached, left, detached, finished
  uint32_t world;
  uint64_t position, lead;    // blocks; lead over the slowest attached family
  uint64_t served;
  double paced_seconds, rate; // rate: blocks/s of its position while not paced
} dl_family_report;
// Fills up to max reports; returns the number of families.
int dl_teacher_server_families(const dl_teacher_server *s, dl_family_report *out, int max);
// Flushes the store, closes the sockets, frees.
void dl_teacher_server_destroy(dl_teacher_server *s);

#endif
