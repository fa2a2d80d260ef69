// SHA-256 as FIPS 180-4 section 6.2 gives it: 64-byte blocks, a message
// schedule of 64 words, eight working variables; the message padded with
// 0x80, zeros and its bit length (big-endian).
#include "common/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

// The first 32 bits of the fractional parts of the cube roots of the first
// 64 primes (FIPS 180-4, 4.2.2).
static const uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t *p) {
  uint32_t w[64];
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
    const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int i = 0; i < 64; i++) {
    const uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRound[i] + w[i];
    const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void dl_sha256_init(dl_sha256 *s) {
  // The first 32 bits of the fractional parts of the square roots of the first 8 primes.
  static const uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, kInit, sizeof kInit);
  s->length = 0;
  s->fill = 0;
}

void dl_sha256_update(dl_sha256 *s, const void *data, size_t n) {
  const uint8_t *p = data;
  s->length += n;
  if (s->fill) {
    const size_t take = n < 64 - s->fill ? n : 64 - s->fill;
    memcpy(s->block + s->fill, p, take);
    s->fill += take, p += take, n -= take;
    if (s->fill < 64) return;
    compress(s->h, s->block);
    s->fill = 0;
  }
  for (; n >= 64; p += 64, n -= 64) compress(s->h, p);
  memcpy(s->block, p, n);
  s->fill = n;
}

void dl_sha256_final(dl_sha256 *s, uint8_t digest[32]) {
  const uint64_t bits = s->length * 8;
  s->block[s->fill++] = 0x80;
  if (s->fill > 56) {
    memset(s->block + s->fill, 0, 64 - s->fill);
    compress(s->h, s->block);
    s->fill = 0;
  }
  memset(s->block + s->fill, 0, 56 - s->fill);
  for (int i = 0; i < 8; i++) s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
  compress(s->h, s->block);
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void dl_sha256_hex(const uint8_t digest[32], char hex[65]) {
  static const char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) hex[2 * i] = kDigits[digest[i] >> 4], hex[2 * i + 1] = kDigits[digest[i] & 15];
  hex[64] = 0;
}

void dl_sha256_bytes(const void *data, size_t n, char hex[65]) {
  dl_sha256 s;
  uint8_t digest[32];
  dl_sha256_init(&s);
  dl_sha256_update(&s, data, n);
  dl_sha256_final(&s, digest);
  dl_sha256_hex(digest, hex);
}

int dl_sha256_file(const char *path, char hex[65], uint64_t *size, dl_err *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return dl_fail(err, "%s: cannot open (%s)", path, strerror(errno));
  static _Thread_local uint8_t buf[1 << 16];
  dl_sha256 s;
  dl_sha256_init(&s);
  for (size_t n; (n = fread(buf, 1, sizeof buf, f)) > 0;) dl_sha256_update(&s, buf, n);
  const int bad = ferror(f);
  fclose(f);
  if (bad) return dl_fail(err, "%s: read error", path);
  uint8_t digest[32];
  if (size) *size = s.length;
  dl_sha256_final(&s, digest);
  dl_sha256_hex(digest, hex);
  return 0;
}
