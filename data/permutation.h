// A seeded permutation of [0, n) evaluated one index at a time, with no
// table: a 4-round Feistel network on the smallest even-bit domain >= n,
// cycle-walking outputs >= n back in. Any process can find item perm(i) of
// any epoch in O(1) memory, which the sample stream needs.
#ifndef DISTILL_DATA_PERMUTATION_H
#define DISTILL_DATA_PERMUTATION_H

#include <stdint.h>

int64_t dl_permute_index(int64_t i, int64_t n, uint64_t key);

#endif
