// The student side of the protocol: one rank of a student group, connected
// to every teacher (one DEALER each). It asks for the rank's blocks
// (r, r + W, r + 2W, ...) with at most `window` outstanding, sends each block
// to the teacher chosen by rendezvous hashing over the live teachers, moves
// outstanding requests when a teacher dies, re-requests blocks that arrive
// corrupt or not at all, ignores duplicates, and hands blocks to the trainer
// strictly in the rank's order.
//
// An I/O thread owns the ZeroMQ sockets: it receives, requests free window
// positions, heartbeats (with the rank's cursor) and fails over on its own,
// so a trainer that spends seconds in one step keeps its session.
// dl_student_client_next waits for the I/O thread to make the next block
// ready and takes it.
//
//   dl_student_config cfg;
//   dl_student_config_defaults(&cfg);
//   cfg.teachers = endpoints; cfg.nteachers = n;
//   cfg.group = "vits14"; cfg.rank = r; cfg.world = W;
//   dl_student_client *c = dl_student_client_create(&cfg, &err);
//   dl_target_block b;
//   while (dl_student_client_next(c, &b, 1000, &err) >= 0) {  // 1: got one, 0: not yet
//     ... train on b ..., dl_target_block_free(&b);
//   }                                                          // -1: fatal, see err
//   dl_student_client_destroy(c);                              // says BYE
//
// dl_student_client_next and dl_student_client_destroy belong to one thread
// (the trainer's); dl_student_client_metrics and dl_student_client_done may
// be called from any thread.
#ifndef DISTILL_TRANSPORT_STUDENT_CLIENT_H
#define DISTILL_TRANSPORT_STUDENT_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "transport/curve.h"
#include "transport/family_plan.h"
#include "transport/target_block.h"
#include "transport/teacher_discovery.h"

#define DL_MAX_TEACHERS 16

typedef struct dl_student_config {
  const char *const *teachers;  // endpoints, e.g. "tcp://10.0.0.5:5555", or dns:NAME:PORT for every
                                // address of NAME, resolved again every resolve_interval_ms
  int nteachers;
  const char *group;            // the student model's name; its ranks share it
  uint32_t rank, world;
  uint64_t recipe_hash;
  uint64_t weights_hash;        // expected; 0: take the first teacher's, then all must agree
  uint64_t heads_hash;          // the last layers this student applies (WELCOME heads_hash); 0: don't check.
                                // A teacher announcing another nonzero hash is a refusal; one announcing 0 is not checked
  const char *heads_path;       // where they came from (train.teacher_heads), for that refusal's message
  uint32_t resolution;          // crop size the targets are for
  uint64_t start_index;         // first block is rank + start_index * world (resume)
  uint64_t end_block;           // blocks >= this are never asked (UINT64_MAX: endless)
  int window;                   // credit: most blocks requested and not yet delivered
  int heartbeat_ms;             // default 1000
  int dead_after_ms;            // default 5000
  int request_timeout_ms;       // re-request a block not received within this
  int resolve_interval_ms;      // dns: sources are resolved again this often (default 10000)
  dl_resolve_fn resolve;        // NULL: getaddrinfo (tests pass a stub)
  void *resolve_ctx;
  const dl_curve_key *curve_secret;        // this student's key pair (CURVE on when set)
  const dl_curve_key *curve_public;
  const dl_curve_key *teacher_public;      // one per teacher, or one for all (nteacher_keys)
  int nteacher_keys;
  const char *stream_text;      // the stream identity as "key=value;..." text, sent in HELLO (NULL: none)
  // The family's whole plan, sent in HELLO (copied; at most DL_PLAN_MAX_PHASES
  // phases, ascending, not overlapping). nplan 0: one phase [0, end_block) at
  // resolution, or none when end_block is UINT64_MAX.
  const dl_plan_phase *plan;
  int nplan;
  bool quiet;
} dl_student_config;

void dl_student_config_defaults(dl_student_config *c);

typedef struct dl_student_metrics {
  uint64_t requested;          // block ids sent in REQUESTs (re-requests included)
  uint64_t rerequested;        // of those, asked again (timeout, bad checksum, failover)
  uint64_t received;           // BLOCKs accepted
  uint64_t delivered;          // handed to the caller
  uint64_t duplicates;         // BLOCKs for blocks already held or delivered
  uint64_t checksum_failures;  // payloads that failed the checksum or did not decode
  uint64_t bad_messages;       // undecodable envelopes, wrong frame counts
  uint64_t timeouts;           // requests given up on after request_timeout_ms
  uint64_t failovers;          // requests moved off a dead teacher
  uint64_t teacher_deaths;
  uint64_t teacher_restarts;   // a teacher came back with a new incarnation
  uint64_t bytes_raw, bytes_wire;
  uint64_t live_teachers;
  uint64_t teachers_added;     // discovered (dns:) teachers that joined
  uint64_t teachers_removed;   // discovered teachers whose address left the name: failed over like dead ones
  uint64_t resolve_failures;   // resolutions that failed transiently (the set was kept)
  uint64_t holds;              // HOLD messages received
  double held_seconds;         // next() waited while the block it waited for was held by a teacher
  double wait_seconds;         // next() waited for a block that was not ready when it was called
  uint64_t per_teacher_received[DL_MAX_TEACHERS];
} dl_student_metrics;

typedef struct dl_student_client dl_student_client;

dl_student_client *dl_student_client_create(const dl_student_config *cfg, dl_err *err);
// Waits up to timeout_ms for the rank's next block. Returns 1 with it in *out
// (free with dl_target_block_free), 0 when none came in time or the stream
// reached end_block (see dl_student_client_done), -1 on a fatal condition: a
// teacher REJECTed this student (protocol, recipe, codec), serves other
// weights, or cannot produce a block. err says which. Taking a block frees its
// window position, which the I/O thread requests again at once.
int dl_student_client_next(dl_student_client *c, dl_target_block *out, int timeout_ms, dl_err *err);
bool dl_student_client_done(const dl_student_client *c);
// Whether next()'s fatal condition was a teacher's refusal (protocol, stream,
// codecs) or other heads than the teacher's (heads_hash): the student's
// configuration is at fault (exit status 2).
bool dl_student_client_refused(const dl_student_client *c);
dl_student_metrics dl_student_client_metrics(const dl_student_client *c);
void dl_student_metrics_print(const dl_student_metrics *m, const char *group, uint32_t rank,
                              void *file);
// Stops the I/O thread, says BYE (finished when dl_student_client_done) to
// every live teacher and frees everything.
void dl_student_client_destroy(dl_student_client *c);

#endif
