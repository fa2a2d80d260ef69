// Rendezvous (highest random weight) hashing: every student picks, for block
// b, the live teacher whose id scores highest with b. All groups agree without
// talking to each other, and when a teacher leaves only its blocks move.
#ifndef DISTILL_TRANSPORT_RENDEZVOUS_H
#define DISTILL_TRANSPORT_RENDEZVOUS_H

#include <stdbool.h>
#include <stdint.h>

uint64_t dl_rendezvous_score(const char *teacher_id, uint64_t block);
// Index of the winner among ids[i] with live[i]; -1 when none is live.
int dl_rendezvous_pick(const char *const *ids, const bool *live, int n, uint64_t block);

#endif
