// Counter-based random streams: every value is a pure function of a key and a
// position, so any process can redraw sample s's augmentation from (seed, s)
// alone, independent of thread scheduling. The mixer is SplitMix64's
// finaliser, which passes BigCrush on counter input.
#ifndef DISTILL_DATA_RNG_H
#define DISTILL_DATA_RNG_H

#include <math.h>
#include <stdint.h>

static inline uint64_t dl_mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// A key derived from a parent key and one more coordinate (sample, crop, ...).
static inline uint64_t dl_key_derive(uint64_t key, uint64_t coordinate) {
  return dl_mix64(key ^ dl_mix64(coordinate + 0x632be59bd9b4e019ull));
}

// A stream: the n-th draw is mix(key, n).
typedef struct dl_rng {
  uint64_t key;
  uint64_t counter;
} dl_rng;

static inline dl_rng dl_rng_make(uint64_t key) { return (dl_rng){key, 0}; }

static inline uint64_t dl_rng_next(dl_rng *r) { return dl_key_derive(r->key, r->counter++); }

// Uniform in [0, 1) with 53 random bits.
static inline double dl_rng_unit(dl_rng *r) { return (double)(dl_rng_next(r) >> 11) * 0x1.0p-53; }

static inline double dl_rng_uniform(dl_rng *r, double lo, double hi) {
  return lo + (hi - lo) * dl_rng_unit(r);
}

// Standard normal by Box-Muller (two draws).
static inline double dl_rng_normal(dl_rng *r) {
  double u = dl_rng_unit(r), v = dl_rng_unit(r);
  return sqrt(-2.0 * log(u + 0x1.0p-60)) * cos(6.283185307179586 * v);
}

// timm's / torch's trunc_normal_(std, a=-2, b=2): absolute bounds, so with
// std 0.02 it only cuts draws beyond 100 standard deviations (the official
// Linear-layer init of the backbone and of the DINO head's MLP).
static inline float dl_rng_trunc_normal(dl_rng *r, double std) {
  double x;
  do x = std * dl_rng_normal(r);
  while (x < -2.0 || x > 2.0);
  return (float)x;
}

// Uniform integer in [0, n), n >= 1 (the modulo bias is below 2^-40 for n < 2^24).
static inline int64_t dl_rng_below(dl_rng *r, int64_t n) {
  return (int64_t)(dl_rng_next(r) % (uint64_t)n);
}

#endif
