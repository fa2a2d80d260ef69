#include "transport/rendezvous.h"

#include <string.h>

#include "transport/xxhash64.h"

uint64_t dl_rendezvous_score(const char *teacher_id, uint64_t block) {
  return dl_xxhash64(teacher_id, strlen(teacher_id), block * 0x9E3779B97F4A7C15ULL + 1);
}

int dl_rendezvous_pick(const char *const *ids, const bool *live, int n, uint64_t block) {
  int best = -1;
  uint64_t best_score = 0;
  for (int i = 0; i < n; i++) {
    if (!live[i]) continue;
    uint64_t s = dl_rendezvous_score(ids[i], block);
    // Ties (practically never) go to the smaller id, so every student agrees.
    if (best < 0 || s > best_score || (s == best_score && strcmp(ids[i], ids[best]) < 0)) {
      best = i;
      best_score = s;
    }
  }
  return best;
}
