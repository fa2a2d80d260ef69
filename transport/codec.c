#include "transport/codec.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const char *const kNames[DL_NUM_CODECS] = {"f32", "f16", "bf16", "int8"};

const char *dl_codec_name(dl_codec c) {
  return (unsigned)c < DL_NUM_CODECS ? kNames[c] : "invalid";
}

int dl_codec_parse(const char *s, dl_codec *out, dl_err *err) {
  for (int i = 0; i < DL_NUM_CODECS; i++)
    if (strcmp(s, kNames[i]) == 0) {
      *out = (dl_codec)i;
      return 0;
    }
  return dl_fail(err, "unknown codec '%s' (expected f32, f16, bf16 or int8)", s);
}

size_t dl_codec_quantized_bytes(int codec, uint64_t rows, uint64_t cols) {
  if (rows == 0 || cols == 0 || rows > DL_CODEC_MAX_VALUES || cols > DL_CODEC_MAX_VALUES ||
      rows * cols > DL_CODEC_MAX_VALUES)
    return 0;
  // The per-row scales (int8), then the rows; 0 for an unknown codec.
  const size_t row = dl_codec_row_bytes(codec, (uint32_t)cols);
  return row ? dl_codec_prefix_bytes(codec, (uint32_t)rows) + (size_t)rows * row : 0;
}

size_t dl_tensor_encode_bound(dl_codec codec, uint32_t rows, uint32_t cols) {
  size_t q = dl_codec_quantized_bytes(codec, rows, cols);
  return q ? ZSTD_compressBound(q) : 0;
}

// float <-> half through the F16C instructions (round to nearest even).
static void f32_to_f16(const float *x, size_t n, uint8_t *dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128((__m128i *)(dst + 2 * i), h);
  }
  for (; i < n; i++) {
    uint16_t h = (uint16_t)_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
    memcpy(dst + 2 * i, &h, 2);
  }
}

static void f16_to_f32(const uint8_t *src, size_t n, float *dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
  for (; i < n; i++) {
    uint16_t h;
    memcpy(&h, src + 2 * i, 2);
    dst[i] = _cvtsh_ss(h);
  }
}

// bfloat16 keeps the top 16 bits; round to nearest even, keep NaNs NaN.
static void f32_to_bf16(const float *x, size_t n, uint8_t *dst) {
  for (size_t i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    uint16_t b;
    if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu))
      b = (uint16_t)((u >> 16) | 0x40);
    else
      b = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    memcpy(dst + 2 * i, &b, 2);
  }
}

static void bf16_to_f32(const uint8_t *src, size_t n, float *dst) {
  for (size_t i = 0; i < n; i++) {
    uint16_t b;
    memcpy(&b, src + 2 * i, 2);
    uint32_t u = (uint32_t)b << 16;
    memcpy(&dst[i], &u, 4);
  }
}

// Layout: rows float32 scales, then rows*cols int8 values.
static float row_maxabs(const float *row, uint32_t cols) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 acc = _mm256_setzero_ps();
  uint32_t c = 0;
  for (; c + 8 <= cols; c += 8) acc = _mm256_max_ps(acc, _mm256_andnot_ps(sign, _mm256_loadu_ps(row + c)));
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  float m = 0;
  for (int i = 0; i < 8; i++) m = fmaxf(m, lanes[i]);
  for (; c < cols; c++) m = fmaxf(m, fabsf(row[c]));
  return m;
}

// Rounds to nearest even (the MXCSR default, as lrintf) after clamping to
// [-127, 127]; the operand order of max/min sends a NaN to -127, as the
// scalar tail does, so every conversion is defined.
static void quantize_row(const float *row, uint32_t cols, float inv, int8_t *q) {
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  uint32_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(row + c), vinv);
    v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
    __m256i i32 = _mm256_cvtps_epi32(v);
    __m256i i16 = _mm256_packs_epi32(i32, i32);
    __m256i i8 = _mm256_packs_epi16(i16, i16);
    int32_t a = _mm256_extract_epi32(i8, 0), b = _mm256_extract_epi32(i8, 4);
    memcpy(q + c, &a, 4);
    memcpy(q + c + 4, &b, 4);
  }
  for (; c < cols; c++) q[c] = (int8_t)lrintf(fminf(127.0f, fmaxf(-127.0f, row[c] * inv)));
}

// Rows [r0, r1) of the whole tensor's layout (scales first, then values).
static void f32_to_int8_rows(const float *x, uint32_t rows, uint32_t cols, uint32_t r0, uint32_t r1,
                             uint8_t *dst) {
  int8_t *q = (int8_t *)(dst + 4 * (size_t)rows);
  for (uint32_t r = r0; r < r1; r++) {
    const float *row = x + (size_t)r * cols;
    float maxabs = row_maxabs(row, cols);
    float scale = maxabs / 127.0f;
    float inv = maxabs > 0 && isfinite(maxabs) ? 127.0f / maxabs : 0.0f;
    memcpy(dst + 4 * (size_t)r, &scale, 4);
    quantize_row(row, cols, inv, q + (size_t)r * cols);
  }
}

static void int8_rows_to_f32(const uint8_t *src, uint32_t rows, uint32_t cols, uint32_t r0, uint32_t r1,
                             float *dst) {
  const int8_t *q = (const int8_t *)(src + 4 * (size_t)rows);
  for (uint32_t r = r0; r < r1; r++) {
    float scale;
    memcpy(&scale, src + 4 * (size_t)r, 4);
    const int8_t *qr = q + (size_t)r * cols;
    float *out = dst + (size_t)r * cols;
    for (uint32_t c = 0; c < cols; c++) out[c] = (float)qr[c] * scale;
  }
}

void dl_codec_quantize(dl_codec codec, const float *x, uint32_t rows, uint32_t cols, uint8_t *dst) {
  dl_codec_quantize_rows(codec, x, rows, cols, 0, rows, dst);
}

size_t dl_codec_prefix_bytes(int codec, uint32_t rows) {
  return codec == DL_CODEC_INT8_ROW ? 4 * (size_t)rows : 0;
}

size_t dl_codec_row_bytes(int codec, uint32_t cols) {
  switch (codec) {
    case DL_CODEC_F32: return 4 * (size_t)cols;
    case DL_CODEC_F16:
    case DL_CODEC_BF16: return 2 * (size_t)cols;
    case DL_CODEC_INT8_ROW: return cols;
    default: return 0;
  }
}

void dl_codec_quantize_rows(dl_codec codec, const float *x, uint32_t rows, uint32_t cols, uint32_t r0,
                            uint32_t r1, uint8_t *dst) {
  size_t n = (size_t)(r1 - r0) * cols, first = (size_t)r0 * cols;
  switch (codec) {
    case DL_CODEC_F32: memcpy(dst + 4 * first, x + first, 4 * n); break;
    case DL_CODEC_F16: f32_to_f16(x + first, n, dst + 2 * first); break;
    case DL_CODEC_BF16: f32_to_bf16(x + first, n, dst + 2 * first); break;
    case DL_CODEC_INT8_ROW: f32_to_int8_rows(x, rows, cols, r0, r1, dst); break;
  }
}

void dl_codec_dequantize_rows(int codec, const uint8_t *src, uint32_t rows, uint32_t cols, uint32_t r0,
                              uint32_t r1, float *dst) {
  size_t n = (size_t)(r1 - r0) * cols, first = (size_t)r0 * cols;
  switch (codec) {
    case DL_CODEC_F32: memcpy(dst + first, src + 4 * first, 4 * n); break;
    case DL_CODEC_F16: f16_to_f32(src + 2 * first, n, dst + first); break;
    case DL_CODEC_BF16: bf16_to_f32(src + 2 * first, n, dst + first); break;
    case DL_CODEC_INT8_ROW: int8_rows_to_f32(src, rows, cols, r0, r1, dst); break;
  }
}

int dl_codec_dequantize(int codec, const uint8_t *src, size_t n, uint32_t rows, uint32_t cols,
                        float *dst, dl_err *err) {
  size_t want = dl_codec_quantized_bytes(codec, rows, cols);
  if (want == 0) return dl_fail(err, "invalid tensor: codec %d, %u x %u", codec, rows, cols);
  if (n != want)
    return dl_fail(err, "tensor of %u x %u %s needs %zu bytes, got %zu", rows, cols,
                   dl_codec_name((dl_codec)codec), want, n);
  dl_codec_dequantize_rows(codec, src, rows, cols, 0, rows, dst);
  return 0;
}

int dl_tensor_encode(dl_codec codec, int zstd_level, const float *x, uint32_t rows, uint32_t cols,
                     uint8_t *dst, size_t dst_cap, dl_tensor_wire *out, dl_err *err) {
  size_t q = dl_codec_quantized_bytes(codec, rows, cols);
  if (q == 0) return dl_fail(err, "cannot encode a %u x %u tensor as codec %d", rows, cols, codec);
  if (dst_cap < dl_tensor_encode_bound(codec, rows, cols))
    return dl_fail(err, "encode buffer too small");
  *out = (dl_tensor_wire){.codec = codec, .rows = rows, .cols = cols, .zstd = false, .wire_bytes = q};
  if (zstd_level <= 0) {
    dl_codec_quantize(codec, x, rows, cols, dst);
    return 0;
  }
  uint8_t *tmp = dl_malloc(q);
  dl_codec_quantize(codec, x, rows, cols, tmp);
  size_t z = ZSTD_compress(dst, dst_cap, tmp, q, zstd_level);
  if (!ZSTD_isError(z) && z < q) {
    out->zstd = true;
    out->wire_bytes = z;
  } else {
    memcpy(dst, tmp, q);
  }
  free(tmp);
  return 0;
}

int dl_tensor_decode(const dl_tensor_wire *w, const uint8_t *src, float *dst, dl_err *err) {
  size_t q = dl_codec_quantized_bytes(w->codec, w->rows, w->cols);
  if (q == 0) return dl_fail(err, "invalid tensor: codec %d, %u x %u", w->codec, w->rows, w->cols);
  if (!w->zstd) return dl_codec_dequantize(w->codec, src, w->wire_bytes, w->rows, w->cols, dst, err);
  unsigned long long size = ZSTD_getFrameContentSize(src, w->wire_bytes);
  if (size != q) return dl_fail(err, "zstd frame holds %llu bytes, expected %zu", size, q);
  uint8_t *tmp = dl_malloc(q);
  size_t got = ZSTD_decompress(tmp, q, src, w->wire_bytes);
  int rc;
  if (ZSTD_isError(got))
    rc = dl_fail(err, "zstd: %s", ZSTD_getErrorName(got));
  else if (got != q)
    rc = dl_fail(err, "zstd frame decoded to %zu bytes, expected %zu", got, q);
  else
    rc = dl_codec_dequantize(w->codec, tmp, q, w->rows, w->cols, dst, err);
  free(tmp);
  return rc;
}
