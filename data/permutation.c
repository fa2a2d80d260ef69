#include "data/permutation.h"

#include "common/err.h"
#include "data/rng.h"

int64_t dl_permute_index(int64_t i, int64_t n, uint64_t key) {
  DL_ASSERT(n > 0 && i >= 0 && i < n);
  if (n == 1) return 0;
  int half_bits = 1;
  while (((uint64_t)1 << (2 * half_bits)) < (uint64_t)n) half_bits++;
  uint64_t mask = ((uint64_t)1 << half_bits) - 1;
  uint64_t x = (uint64_t)i;
  // The domain is under 4n, so cycle-walking takes a few rounds on average;
  // it terminates because the Feistel network is a bijection on the domain.
  do {
    uint64_t left = x >> half_bits, right = x & mask;
    for (int round = 0; round < 4; round++) {
      uint64_t f = dl_key_derive(key, (uint64_t)round << 32 ^ right) & mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = left << half_bits | right;
  } while (x >= (uint64_t)n);
  return (int64_t)x;
}
