// What a teacher knows about the student families it serves (docs/protocol.md,
// "Sharing"): each family's plan (which blocks at which resolution it will
// take), each rank's cursor (every block of that rank before it is taken),
// whether it is attached, and how fast it moves. The server asks three things
// of it: does any family still need block b at resolution r (keep it), which
// families hold a request back (pacing), and how the families compare (sizing).
//
// A family is known by its group name, not by its peers, so it survives a
// rank's restart, the client being recreated at the high-resolution switch,
// and rescaling. States:
//   attached  a rank has a session, or the last one went silent less than
//             grace_s ago: it holds the others back (pace) and keeps its blocks
//   left      every rank said BYE less than grace_s ago: keeps its blocks but
//             holds nobody back
//   detached  silent or gone longer than grace_s: neither
//   finished  every rank's cursor is past the end of the plan: neither
#ifndef DISTILL_TRANSPORT_TEACHER_FAMILIES_H
#define DISTILL_TRANSPORT_TEACHER_FAMILIES_H

#include <stdbool.h>
#include <stdint.h>

#include "transport/envelope.h"
#include "transport/family_plan.h"

typedef enum { DL_FAMILY_ATTACHED, DL_FAMILY_LEFT, DL_FAMILY_DETACHED, DL_FAMILY_FINISHED } dl_family_state;

typedef struct dl_family {
  char name[DL_GROUP_NAME_MAX];
  uint32_t world;
  dl_plan_phase plan[DL_PLAN_MAX_PHASES];
  int nplan;
  uint64_t *cursor;          // per rank: the next block id it hands to its trainer
  uint64_t *received;        // per rank: every block of the rank before it reached the rank
  bool *known;               // per rank: a cursor has arrived
  bool *waiting;             // per rank: its trainer waits for the block at its cursor
  bool *paced_rank;          // per rank: that wait began on a block pacing held
  int live_peers;            // ranks with a session now
  dl_family_state state;
  double gone_at;            // when the last peer went (BYE or silence)
  bool gone_by_bye;
  // pacing and speed
  bool paced_now;            // a rank is waiting for a block held back by pacing
  double paced_seconds;
  double unpaced_seconds;    // attached and not paced: the time its own speed shows
  uint64_t advanced;         // blocks its position moved forward while attached
  uint64_t last_position;
  bool have_position;
  uint64_t served;           // blocks sent to its ranks
} dl_family;

typedef struct dl_families {
  dl_family *v;
  int n, cap;
  double grace_s;
  double last_tick;
} dl_families;

void dl_families_init(dl_families *fs, double grace_s);
void dl_families_free(dl_families *fs);

dl_family *dl_families_find(dl_families *fs, const char *name);
// A rank said HELLO: creates the family or updates its plan and world (a new
// world resets the cursors: the family was rescaled). new_peer: the HELLO
// opened a session (not a repeated HELLO on one).
dl_family *dl_families_hello(dl_families *fs, const char *name, uint32_t world, const dl_plan_phase *plan,
                             int nplan, uint32_t rank, uint64_t cursor, bool new_peer);
// received: 0 when not known (HELLO, BYE).
void dl_families_cursor(dl_family *f, uint32_t rank, uint64_t cursor, uint64_t received, bool waiting);
// One of its peers' sessions ended: by BYE, or by silence or a failed send.
void dl_families_peer_gone(dl_family *f, bool bye, double now);
// State changes by time (grace) and progress (finished), and the speed
// bookkeeping; call once per server round.
void dl_families_tick(dl_families *fs, double now);

// The smallest cursor over the ranks that sent one (0 before any).
uint64_t dl_family_position(const dl_family *f);
bool dl_family_plans(const dl_family *f, uint64_t block, uint32_t resolution);
bool dl_family_taken(const dl_family *f, uint64_t block);
bool dl_family_holds_others(const dl_family *f);
bool dl_family_keeps_blocks(const dl_family *f);
// Its speed if nobody held it back: blocks its position moved over the seconds
// it was attached and not waiting for a held block (0: not measured yet).
double dl_family_rate(const dl_family *f);
const char *dl_family_state_name(dl_family_state s);

// Some family that keeps its blocks plans (block, resolution) and has not taken it.
bool dl_families_need(const dl_families *fs, uint64_t block, uint32_t resolution);
// The same among attached families only (not those that left by BYE).
bool dl_families_need_attached(const dl_families *fs, uint64_t block, uint32_t resolution);
// Some family, in any state, plans the block and has taken or received it
// (it was computed somewhere before).
bool dl_families_received_by_any(const dl_families *fs, uint64_t block, uint32_t resolution);
// The family that would hold back family f's request for (block, resolution):
// attached, behind f, planning the block and not having taken it, with the
// block more than max_lead blocks past its position. NULL: nobody holds it.
const dl_family *dl_families_holder(const dl_families *fs, const dl_family *f, uint64_t block, uint32_t resolution,
                                    uint64_t max_lead);
// Position of f minus that of the slowest attached family (0 if f is it).
uint64_t dl_families_lead(const dl_families *fs, const dl_family *f);

#endif
