#include "transport/crc32c.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define DL_CRC32C_X86 1
#endif

#define POLY_NORMAL 0x1EDC6F41u     // bit d: coefficient of x^d
#define POLY_REFLECTED 0x82F63B78u  // the same, bit order reversed

uint32_t dl_crc32c_reference(uint32_t crc, const void *data, size_t n) {
  const uint8_t *p = data;
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (POLY_REFLECTED & (0u - (crc & 1)));
  }
  return ~crc;
}

// ---- portable: one table lookup per byte

static uint32_t table[256];

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n) {
  crc = ~crc;
  while (n--) crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xFF];
  return ~crc;
}

#ifdef DL_CRC32C_X86
// ---- x86-64: the crc32 instruction, and folding with carry-less multiplies
//
// In the reflected convention a 16-byte chunk loaded little-endian is a
// polynomial whose bit j is the coefficient of x^(127-j); a carry-less
// product of two such 64-bit halves comes out multiplied by x once more.
// Folding a chunk D bytes forward multiplies it by x^(8D): its first 8 bytes
// (the x^64..x^127 half) by x^(8D+64) and its last 8 by x^(8D), each replaced
// by a congruent polynomial of degree < 32 mod P. What is left at the end is
// a 16-byte stand-in for everything folded so far, which the crc32
// instruction finishes together with the tail.

static uint64_t fold_128[2], fold_16[2];  // {first-half, second-half} multipliers

static uint32_t xpow_mod_p(unsigned e) {
  uint32_t r = 1;
  while (e--) r = (r << 1) ^ ((r & 0x80000000u) ? POLY_NORMAL : 0);
  return r;
}

// x^e mod P as a 64-bit reflected operand (coefficient of x^d at bit 63-d).
static uint64_t reflected_operand(unsigned e) {
  uint32_t k = xpow_mod_p(e);
  uint64_t v = 0;
  for (int d = 0; d < 32; d++)
    if (k >> d & 1) v |= 1ull << (63 - d);
  return v;
}

static void fold_constants(unsigned d_bytes, uint64_t out[2]) {
  out[0] = reflected_operand(8 * d_bytes + 64 - 1);
  out[1] = reflected_operand(8 * d_bytes - 1);
}

__attribute__((target("sse4.2")))
static uint64_t crc_hw_words(uint64_t s, const uint8_t *p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    s = _mm_crc32_u64(s, v);
  }
  while (n--) s = _mm_crc32_u8((uint32_t)s, *p++);
  return s;
}

__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n) {
  return ~(uint32_t)crc_hw_words(~crc, p, n);
}

__attribute__((target("sse4.2,pclmul")))
static __m128i fold16(__m128i x, __m128i k, __m128i next) {
  __m128i a = _mm_clmulepi64_si128(x, k, 0x00), b = _mm_clmulepi64_si128(x, k, 0x11);
  return _mm_xor_si128(_mm_xor_si128(a, b), next);
}

__attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))
static __m256i fold256(__m256i y, __m256i k, const uint8_t *next) {
  __m256i a = _mm256_clmulepi64_epi128(y, k, 0x00), b = _mm256_clmulepi64_epi128(y, k, 0x11);
  return _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_loadu_si256((const __m256i *)next));
}

// Without VPCLMULQDQ (e.g. Intel before Ice Lake, AMD before Zen 4): four
// 16-byte accumulators, each folded 64 bytes forward per step with the 128-bit
// carry-less multiply that every x86-64 CPU of the last decade has. The serial
// crc32 instruction is several times slower (one 8-byte step per 3 cycles).
static uint64_t fold_64[2];

__attribute__((target("sse4.2,pclmul")))
static uint32_t crc_clmul(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t s = ~crc;
  if (n >= 128) {
    __m128i k = _mm_set_epi64x((long long)fold_64[1], (long long)fold_64[0]);
    __m128i x[4];
    for (int i = 0; i < 4; i++) x[i] = _mm_loadu_si128((const __m128i *)(p + 16 * i));
    x[0] = _mm_xor_si128(x[0], _mm_cvtsi32_si128((int)(uint32_t)s));
    for (p += 64, n -= 64; n >= 64; p += 64, n -= 64)
      for (int i = 0; i < 4; i++) x[i] = fold16(x[i], k, _mm_loadu_si128((const __m128i *)(p + 16 * i)));
    __m128i k16 = _mm_set_epi64x((long long)fold_16[1], (long long)fold_16[0]);
    __m128i y = x[0];
    for (int i = 1; i < 4; i++) y = fold16(y, k16, x[i]);
    uint8_t rest[16];
    _mm_storeu_si128((__m128i *)rest, y);
    s = crc_hw_words(0, rest, sizeof rest);
  }
  return ~(uint32_t)crc_hw_words(s, p, n);
}

// Four 32-byte accumulators, each folded 128 bytes forward per step.
__attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))
static uint32_t crc_fold(uint32_t crc, const uint8_t *p, size_t n) {
  uint64_t s = ~crc;
  if (n >= 256) {
    __m256i k = _mm256_set_epi64x((long long)fold_128[1], (long long)fold_128[0],
                                  (long long)fold_128[1], (long long)fold_128[0]);
    __m256i y[4];
    for (int i = 0; i < 4; i++) y[i] = _mm256_loadu_si256((const __m256i *)(p + 32 * i));
    // The running CRC enters as the xor of the first four message bytes.
    y[0] = _mm256_xor_si256(y[0], _mm256_zextsi128_si256(_mm_cvtsi32_si128((int)(uint32_t)s)));
    for (p += 128, n -= 128; n >= 128; p += 128, n -= 128)
      for (int i = 0; i < 4; i++) y[i] = fold256(y[i], k, p + 32 * i);
    // The eight 16-byte lanes, in message order, folded into one.
    __m128i k16 = _mm_set_epi64x((long long)fold_16[1], (long long)fold_16[0]);
    __m128i x = _mm256_castsi256_si128(y[0]);
    x = fold16(x, k16, _mm256_extracti128_si256(y[0], 1));
    for (int i = 1; i < 4; i++) {
      x = fold16(x, k16, _mm256_castsi256_si128(y[i]));
      x = fold16(x, k16, _mm256_extracti128_si256(y[i], 1));
    }
    uint8_t rest[16];
    _mm_storeu_si128((__m128i *)rest, x);
    s = crc_hw_words(0, rest, sizeof rest);
  }
  return ~(uint32_t)crc_hw_words(s, p, n);
}
#endif

// ---- choosing once

typedef uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);
static crc_fn impl = crc_table;
static const char *impl_name = "table";
static pthread_once_t chosen = PTHREAD_ONCE_INIT;

// The implementations from slowest to fastest; each CPU that has one has the
// ones before it.
enum { DL_CRC32C_IMPLS = 4 };
static const char *const names[DL_CRC32C_IMPLS] = {"table", "crc32", "clmul", "vpclmul"};

static crc_fn available(int i) {
  if (i == 0) return crc_table;
#ifdef DL_CRC32C_X86
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("sse4.2")) return NULL;
  if (i == 1) return crc_hw;
  if (!__builtin_cpu_supports("pclmul")) return NULL;
  if (i == 2) return crc_clmul;
  if (i == 3 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("vpclmulqdq")) return crc_fold;
#endif
  return NULL;
}

// The fastest implementation this CPU has, or the one DISTILL_CRC32C names
// (table, crc32, clmul, vpclmul) when the CPU has it: to measure what a
// slower CPU would pay, on a faster one. All give the same values.
static void choose(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint8_t byte = (uint8_t)i;
    table[i] = ~dl_crc32c_reference(~0u, &byte, 1);  // one byte, no inversions
  }
#ifdef DL_CRC32C_X86
  fold_constants(128, fold_128);
  fold_constants(64, fold_64);
  fold_constants(16, fold_16);
#endif
  const char *want = getenv("DISTILL_CRC32C");
  for (int i = 0; i < DL_CRC32C_IMPLS; i++) {
    crc_fn f = available(i);
    if (!f) break;
    impl = f, impl_name = names[i];
    if (want && !strcmp(want, names[i])) break;
  }
}

uint32_t dl_crc32c(uint32_t crc, const void *data, size_t n) {
  pthread_once(&chosen, choose);
  return impl(crc, data, n);
}

const char *dl_crc32c_implementation(void) {
  pthread_once(&chosen, choose);
  return impl_name;
}

int dl_crc32c_named(const char *name, uint32_t crc, const void *data, size_t n, uint32_t *out) {
  pthread_once(&chosen, choose);
  for (int i = 0; i < DL_CRC32C_IMPLS; i++) {
    if (strcmp(name, names[i])) continue;
    crc_fn f = available(i);
    if (!f) return -1;
    *out = f(crc, data, n);
    return 0;
  }
  return -1;
}

// ---- moving a CRC past n zero bytes (combining pieces)
//
// Without its conditioning the CRC register is linear: over n bytes D from
// register r it ends at r * x^(8n) + R(0, D) (mod P). With the inversions,
// dl_crc32c(c, D) = dl_crc32c(0, D) ^ c * x^(8n) mod P: the CRC of a piece
// checksummed on its own is moved onto whatever came before it.

// a * b mod P, both reflected (bit 31 is the coefficient of x^0).
static uint32_t mul_mod_p(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int d = 0; d < 32; d++) {  // d: the power of x that bit 31 - d of a stands for
    if (a & (0x80000000u >> d)) product ^= b;
    b = (b >> 1) ^ (POLY_REFLECTED & (0u - (b & 1)));  // b * x
  }
  return product;
}

uint32_t dl_crc32c_shift(uint32_t crc, uint64_t n) {
  uint32_t power = 0x80000000u;          // x^0
  uint32_t square = 0x80000000u >> 8;    // x^8, then x^16, x^32, ...: x^(8 * 2^i)
  for (; n; n >>= 1, square = mul_mod_p(square, square))
    if (n & 1) power = mul_mod_p(power, square);
  return mul_mod_p(crc, power);
}
