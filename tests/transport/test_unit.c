// Unit tests of the transport's pieces: xxHash64, CRC32C, codecs, codec specs,
// envelopes, block checksums, the LRU cache, rendezvous hashing.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "tests/harness.h"
#include "transport/block_cache.h"
#include "transport/codec.h"
#include "transport/crc32c.h"
#include "transport/curve.h"
#include "transport/encoded_block.h"
#include "transport/envelope.h"
#include "transport/rendezvous.h"
#include "transport/synthetic.h"
#include "transport/wire.h"
#include "transport/xxhash64.h"

// zstd stores the low 32 bits of XXH64(content, seed 0) at the end of a frame
// written with a checksum: an independent implementation to compare with.
static uint32_t zstd_xxh64_low32(const uint8_t *data, size_t n) {
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  size_t cap = ZSTD_compressBound(n);
  uint8_t *out = malloc(cap);
  size_t z = ZSTD_compress2(cc, out, cap, data, n);
  uint32_t v;
  memcpy(&v, out + z - 4, 4);
  free(out);
  ZSTD_freeCCtx(cc);
  return v;
}

static void test_xxhash64(void) {
  CHECK(dl_xxhash64("", 0, 0) == 0xEF46DB3751D8E999ULL, "xxh64(\"\") = %016llx",
        (unsigned long long)dl_xxhash64("", 0, 0));
  CHECK(dl_xxhash64("abc", 3, 0) == 0x44BC2CF5AD770999ULL, "xxh64(\"abc\") = %016llx",
        (unsigned long long)dl_xxhash64("abc", 3, 0));
  uint8_t buf[1000];
  for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i * 37 + 11);
  int agree = 0, lens = 0;
  for (size_t n = 1; n <= sizeof buf; n += 13, lens++)
    agree += (uint32_t)dl_xxhash64(buf, n, 0) == zstd_xxh64_low32(buf, n);
  CHECK(agree == lens, "xxh64 agrees with zstd's frame checksum on %d of %d lengths", agree, lens);
}

// The fast paths (folding, the crc32 instruction) against the bit-at-a-time
// definition: every length up to 1200 at three alignments (the folding paths
// start at 128 and 256 bytes), a 1 MiB buffer, a message checksummed in
// pieces, and pieces checksummed apart and joined (dl_crc32c_shift).
static void test_crc32c(void) {
  CHECK(dl_crc32c(0, "123456789", 9) == 0xE3069283u, "crc32c(\"123456789\") = %08x (check value e3069283)",
        dl_crc32c(0, "123456789", 9));
  size_t big = 1 << 20;
  uint8_t *buf = malloc(big + 3);
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < big + 3; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    buf[i] = (uint8_t)x;
  }
  uint32_t whole = dl_crc32c_reference(7, buf + 1, big);
  // Every implementation this CPU has (the one in use is the fastest), so the
  // slower paths other machines take are checked here too.
  static const char *const impls[] = {"table", "crc32", "clmul", "vpclmul"};
  for (int k = 0; k < 4; k++) {
    uint32_t got;
    if (dl_crc32c_named(impls[k], 0, "", 0, &got)) {
      printf("crc32c: this CPU has no %s implementation (not checked)\n", impls[k]);
      continue;
    }
    int agree = 0, cases = 0;
    for (size_t n = 0; n <= 1200; n++)
      for (size_t off = 0; off < 3; off++, cases++) {
        dl_crc32c_named(impls[k], (uint32_t)n, buf + off, n, &got);
        agree += got == dl_crc32c_reference((uint32_t)n, buf + off, n);
      }
    CHECK(agree == cases, "crc32c (%s) agrees with the reference on %d of %d lengths and alignments",
          impls[k], agree, cases);
    dl_crc32c_named(impls[k], 7, buf + 1, big, &got);
    CHECK(got == whole, "crc32c (%s) of 1 MiB agrees with the reference (%08x)", impls[k], got);
  }
  printf("crc32c in use: %s\n", dl_crc32c_implementation());
  CHECK(dl_crc32c(7, buf + 1, big) == whole, "dl_crc32c of 1 MiB agrees with the reference");
  // A piece checksummed alone and moved past its length takes any seed later.
  int joined = 0, tries = 0;
  for (size_t n = 0; n <= 1100; n += 13, tries++)
    joined += (dl_crc32c(0, buf + 2, n) ^ dl_crc32c_shift((uint32_t)(n * 2654435761u), n)) ==
              dl_crc32c((uint32_t)(n * 2654435761u), buf + 2, n);
  CHECK(joined == tries, "crc32c_shift joins a piece to any seed (%d of %d lengths)", joined, tries);
  uint32_t head = dl_crc32c(7, buf + 1, 300000), tail = dl_crc32c(0, buf + 300001, big - 300000);
  CHECK((tail ^ dl_crc32c_shift(head, big - 300000)) == whole,
        "crc32c of 1 MiB joined from two pieces checksummed apart equals the whole");
  uint32_t pieces = dl_crc32c(dl_crc32c(dl_crc32c(7, buf + 1, 1000), buf + 1001, 300000), buf + 301001, big - 301000);
  CHECK(pieces == whole, "crc32c in three pieces equals crc32c of the whole");
  buf[12345] ^= 4;
  CHECK(dl_crc32c(7, buf + 1, big) != whole, "a one-bit change in 1 MiB changes it");
  free(buf);
}

static void test_codecs(void) {
  enum { R = 37, C = 129 };
  float *x = malloc(R * C * sizeof(float)), *y = malloc(R * C * sizeof(float));
  for (int i = 0; i < R * C; i++) x[i] = dl_synthetic_value(7, 224, 0, (uint64_t)i) * (1 + (float)(i % C) / 10);
  x[5] = 0;
  const float max_rel[DL_NUM_CODECS] = {0, 1.0f / 2048, 1.0f / 256, 1.0f / 254};
  for (int c = 0; c < DL_NUM_CODECS; c++)
    for (int level = 0; level <= 3; level += 3) {
      size_t cap = dl_tensor_encode_bound((dl_codec)c, R, C);
      uint8_t *buf = malloc(cap);
      dl_tensor_wire w;
      dl_err err;
      int ok = dl_tensor_encode((dl_codec)c, level, x, R, C, buf, cap, &w, &err) == 0 &&
               dl_tensor_decode(&w, buf, y, &err) == 0;
      double worst = 0;
      for (int r = 0; r < R && ok; r++) {
        float rowmax = 0;
        for (int j = 0; j < C; j++) rowmax = fmaxf(rowmax, fabsf(x[r * C + j]));
        for (int j = 0; j < C; j++) {
          // int8 errors scale with the row's largest value; f16 and bf16 with
          // the value itself, plus a floor for values in f16's subnormal range.
          float ref = c == DL_CODEC_INT8_ROW ? rowmax : fabsf(x[r * C + j]) + 1e-4f;
          double e = fabs(y[r * C + j] - x[r * C + j]) / (ref > 0 ? ref : 1);
          if (e > worst) worst = e;
        }
      }
      CHECK(ok && worst <= max_rel[c], "%s zstd %d: round trip, worst relative error %.2e (bound %.2e), %zu bytes",
            dl_codec_name((dl_codec)c), level, worst, (double)max_rel[c], w.wire_bytes);
      // A decoder never believes sizes: one byte short must fail cleanly.
      dl_tensor_wire cut = w;
      cut.wire_bytes--;
      CHECK(dl_tensor_decode(&cut, buf, y, &err) != 0, "%s zstd %d: a short buffer is refused (%s)",
            dl_codec_name((dl_codec)c), level, err.msg);
      free(buf);
    }
  dl_tensor_wire bad = {.codec = (dl_codec)9, .rows = 2, .cols = 2, .wire_bytes = 16};
  uint8_t junk[16] = {0};
  dl_err err;
  CHECK(dl_tensor_decode(&bad, junk, y, &err) != 0, "an unknown codec is refused (%s)", err.msg);
  CHECK(dl_codec_quantized_bytes(DL_CODEC_F32, 1u << 20, 1u << 20) == 0, "a 2^40-value tensor is refused");
  free(x);
  free(y);
}

static void test_codec_spec(void) {
  dl_codec_spec s;
  dl_err err;
  CHECK(dl_codec_spec_parse("f16,patch=int8", &s, &err) == 0 && s.default_codec == DL_CODEC_F16 &&
            dl_codec_spec_for(&s, "patch") == DL_CODEC_INT8_ROW && dl_codec_spec_for(&s, "cls") == DL_CODEC_F16,
        "codec spec f16,patch=int8");
  CHECK(dl_codec_spec_parse("f17", &s, &err) != 0, "codec spec f17 refused: %s", err.msg);
  CHECK(dl_codec_spec_parse("f32,patch", &s, &err) != 0, "codec spec f32,patch refused: %s", err.msg);
}

static dl_encoded_block *synthetic_block(uint64_t b) {
  dl_synthetic_spec spec = {.dim = 8, .patches = 2, .crops = 1, .block_size = 2};
  dl_target_block tb;
  memset(&tb, 0, sizeof tb);
  dl_synthetic_compute(&spec, b, 224, &tb, NULL);
  dl_codec_spec cs = {.default_codec = DL_CODEC_F32};
  dl_encoded_block *e = dl_encode_block(&tb, &cs, 0, NULL);
  dl_target_block_free(&tb);
  return e;
}

// Two encodings of the same synthetic block: copied (dl_encode_block) and,
// when the arena is the payload, adopted (dl_encode_block_take).
static int same_encoding(const dl_encoded_block *a, const dl_encoded_block *b) {
  if (a->payload_bytes != b->payload_bytes || a->checksum != b->checksum || a->ntensors != b->ntensors ||
      a->raw_bytes != b->raw_bytes || memcmp(a->payload, b->payload, a->payload_bytes) != 0)
    return 0;
  for (int i = 0; i < a->ntensors; i++)
    if (strcmp(a->tensors[i].name, b->tensors[i].name) || a->tensors[i].offset != b->tensors[i].offset ||
        a->tensors[i].wire.wire_bytes != b->tensors[i].wire.wire_bytes || a->tensors[i].wire.codec != b->tensors[i].wire.codec)
      return 0;
  return 1;
}

static void check_take(const char *codecs, int zstd_level, int expect_adopted) {
  dl_synthetic_spec spec = {.dim = 8, .patches = 3, .crops = 2, .block_size = 2};
  dl_codec_spec cs;
  dl_err err;
  dl_codec_spec_parse(codecs, &cs, &err);
  dl_target_block tb;
  memset(&tb, 0, sizeof tb);
  dl_synthetic_compute(&spec, 5, 224, &tb, NULL);
  const uint8_t *arena = tb.arena;
  dl_encoded_block *copied = dl_encode_block(&tb, &cs, zstd_level, &err);
  dl_encoded_block *taken = dl_encode_block_take(&tb, &cs, zstd_level, &err);
  int adopted = taken && taken->payload == arena && tb.arena == NULL;
  dl_target_block_free(&tb);  // must not free an adopted payload (ASan would see it)
  CHECK(copied && taken && adopted == expect_adopted && same_encoding(copied, taken),
        "codec %s, zstd %d: the arena %s the payload, and the block equals the copying encoder's", codecs,
        zstd_level, adopted ? "became" : "did not become");
  dl_encoded_block_unref(copied);
  dl_encoded_block_unref(taken);
}

static void test_encode_take(void) {
  check_take("f32", 0, 1);
  check_take("f16", 0, 0);
  check_take("f32,patch=int8", 0, 0);
  check_take("f32", 3, 0);
  // A tensor that did not fit the arena has its own buffer: copied.
  dl_target_block tb;
  memset(&tb, 0, sizeof tb);
  dl_target_block_reserve(&tb, 16 * sizeof(float));
  float *a = dl_target_block_add(&tb, "cls", 2, 8), *b = dl_target_block_add(&tb, "patch", 2, 8);
  CHECK(a && b && (uint8_t *)a == tb.arena && !tb.tensors[0].data[3] && (uint8_t *)b != tb.arena + 64,
        "the arena holds what fits (a zeroed cls) and the next tensor gets its own buffer");
  CHECK(dl_target_block_reserve(&tb, 64) != 0, "a second arena is refused");
  dl_codec_spec cs = {.default_codec = DL_CODEC_F32};
  dl_err err;
  dl_encoded_block *e = dl_encode_block_take(&tb, &cs, 0, &err);
  CHECK(e && tb.arena != NULL && e->payload_bytes == 2 * 16 * sizeof(float),
        "a block only partly in its arena is copied (%zu bytes)", e ? e->payload_bytes : 0);
  dl_encoded_block_unref(e);
  dl_target_block_free(&tb);
}

// Checksums computed while the bytes are hot (piece by piece as tensors are
// quantized and dequantized, the seed joined at the end) equal the one-pass
// definition, decode to exactly what the plain decoder gives, and catch a
// changed byte anywhere: the first tensor, int8's scales, the last byte.
static void check_hot(const char *codec_text, int zstd_level) {
  dl_synthetic_spec spec = {.dim = 1024, .patches = 63, .crops = 1, .block_size = 4};  // 1 MiB of float32
  dl_target_block tb = {0};
  dl_synthetic_compute(&spec, 5, 224, &tb, NULL);
  dl_codec_spec cs;
  dl_err err;
  dl_codec_spec_parse(codec_text, &cs, &err);
  dl_encoded_block *e = dl_encode_block(&tb, &cs, zstd_level, &err);
  dl_target_block_free(&tb);
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(e, &n);
  dl_envelope *d = NULL;
  dl_envelope_decode(env, n, &d, &err);
  const Distill__Block *msg = d->block;
  CHECK(e->checksum == dl_block_checksum(msg, e->payload, e->payload_bytes),
        "%s zstd %d: the checksum made while encoding equals the one-pass CRC32C (%08llx)", codec_text,
        zstd_level, (unsigned long long)e->checksum);
  dl_target_block hot;
  int same = dl_decode_block_msg(msg, e->payload, e->payload_bytes, &hot, &err) == 0 && hot.ntensors == (int)msg->n_tensors;
  for (size_t i = 0; same && i < msg->n_tensors; i++) {
    const Distill__TensorInfo *t = msg->tensors[i];
    dl_tensor_wire w = {.codec = (dl_codec)t->codec, .rows = t->rows, .cols = t->cols, .zstd = t->zstd,
                        .wire_bytes = (size_t)t->wire_bytes};
    float *plain = malloc((size_t)t->rows * t->cols * sizeof(float));
    same = dl_tensor_decode(&w, e->payload + t->offset, plain, &err) == 0 &&
           memcmp(plain, hot.tensors[i].data, (size_t)t->rows * t->cols * sizeof(float)) == 0;
    free(plain);
  }
  CHECK(same, "%s zstd %d: decoding while checksumming gives the plain decoder's values", codec_text, zstd_level);
  dl_target_block_free(&hot);
  size_t spots[3] = {7, (size_t)msg->tensors[msg->n_tensors - 1]->offset + 3, e->payload_bytes - 1};
  int caught = 0;
  char last[600] = "";
  for (int k = 0; k < 3; k++) {
    e->payload[spots[k]] ^= 0x40;
    if (dl_decode_block_msg(msg, e->payload, e->payload_bytes, &hot, &err) != 0 && strstr(err.msg, "checksum"))
      caught++;
    else
      dl_target_block_free(&hot);
    snprintf(last, sizeof last, "%s", err.msg);
    dl_encoded_block *copy = dl_encoded_block_from_msg(msg, e->payload, e->payload_bytes, &err);
    caught += copy == NULL;
    dl_encoded_block_unref(copy);
    e->payload[spots[k]] ^= 0x40;
  }
  CHECK(caught == 6, "%s zstd %d: a changed byte at 3 places is caught by the decoder and the store's copy "
        "(%d of 6: %s)", codec_text, zstd_level, caught, last);
  dl_envelope_free(d);
  free(env);
  dl_encoded_block_unref(e);
}

static void test_hot_checksums(void) {
  check_hot("f32", 0);
  check_hot("f16", 0);
  check_hot("bf16", 0);
  check_hot("int8", 0);
  check_hot("f16,patch=int8", 3);
}

static void test_envelopes(void) {
  dl_encoded_block *e = synthetic_block(3);
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(e, &n);
  dl_envelope *d;
  dl_err err;
  CHECK(dl_envelope_decode(env, n, &d, &err) == 0 && d->body_case == DISTILL__ENVELOPE__BODY_BLOCK,
        "a BLOCK envelope round-trips (%zu bytes)", n);
  dl_target_block tb;
  CHECK(dl_decode_block_msg(d->block, e->payload, e->payload_bytes, &tb, &err) == 0 && tb.block == 3,
        "its payload decodes and passes the checksum");
  dl_target_block_free(&tb);
  // The checksum covers the metadata: another block id with this payload fails.
  d->block->block = 4;
  CHECK(dl_decode_block_msg(d->block, e->payload, e->payload_bytes, &tb, &err) != 0,
        "the same payload under another block id fails: %s", err.msg);
  d->block->block = 3;
  CHECK(d->block->checksum_kind == DISTILL__CHECKSUM_KIND__CHECKSUM_CRC32C && d->block->checksum >> 32 == 0,
        "blocks are encoded with a CRC32C checksum (%016llx)", (unsigned long long)d->block->checksum);
  // A block stored before CRC32C (kind xxHash64) still verifies, and only under its own kind.
  d->block->checksum_kind = DISTILL__CHECKSUM_KIND__CHECKSUM_XXHASH64;
  CHECK(dl_decode_block_msg(d->block, e->payload, e->payload_bytes, &tb, &err) != 0,
        "the CRC32C value presented as xxHash64 fails: %s", err.msg);
  d->block->checksum = dl_block_checksum(d->block, e->payload, e->payload_bytes);
  CHECK(dl_decode_block_msg(d->block, e->payload, e->payload_bytes, &tb, &err) == 0,
        "a block checksummed with xxHash64 decodes");
  dl_target_block_free(&tb);
  e->payload[1] ^= 1;
  CHECK(dl_decode_block_msg(d->block, e->payload, e->payload_bytes, &tb, &err) != 0,
        "and fails with one payload bit changed: %s", err.msg);
  e->payload[1] ^= 1;
  dl_envelope_free(d);
  int caught = 0;
  for (size_t i = 0; i < n; i++) {
    env[i] ^= 0x10;
    if (dl_envelope_decode(env, n, &d, &err) != 0) caught++; else dl_envelope_free(d);
    env[i] ^= 0x10;
  }
  CHECK(caught == (int)n, "every one-bit change of the envelope is refused (%d of %zu)", caught, n);
  CHECK(dl_envelope_decode((const uint8_t *)"\xff\xff\xff", 3, &d, &err) != 0, "garbage refused: %s", err.msg);
  free(env);
  dl_encoded_block_unref(e);
}

// WELCOME carries one width per target (ViT-g/14's heads: DINO 384, iBOT
// 256); a width beyond DL_TARGET_DIM_MAX is refused.
static void test_welcome_widths(void) {
  Distill__Welcome w = DISTILL__WELCOME__INIT;
  w.teacher_id = "t0", w.embed_dim = 384, w.patch_dim = 256, w.heads_hash = 0x1234;
  dl_envelope e;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_WELCOME, e.welcome = &w;
  size_t n;
  uint8_t *env = dl_envelope_pack(&e, &n);
  dl_envelope *d;
  dl_err err;
  int rc = dl_envelope_decode(env, n, &d, &err);
  CHECK(rc == 0 && d->welcome->embed_dim == 384 && d->welcome->patch_dim == 256,
        "a WELCOME with cls width 384 and patch width 256 round-trips (%u, %u)", rc ? 0 : d->welcome->embed_dim,
        rc ? 0 : d->welcome->patch_dim);
  if (rc == 0) dl_envelope_free(d);
  free(env);
  w.patch_dim = DL_TARGET_DIM_MAX + 1;
  env = dl_envelope_pack(&e, &n);
  rc = dl_envelope_decode(env, n, &d, &err);
  CHECK(rc != 0, "a WELCOME with a patch width of %d is refused: %s", DL_TARGET_DIM_MAX + 1, rc ? err.msg : "decoded");
  if (rc == 0) dl_envelope_free(d);
  free(env);
}

static void test_cache(void) {
  dl_encoded_block *b[4];
  for (int i = 0; i < 4; i++) b[i] = synthetic_block((uint64_t)i);
  size_t one = b[0]->payload_bytes;
  dl_block_cache *c = dl_block_cache_create(3 * one);
  for (int i = 0; i < 3; i++) dl_block_cache_put(c, b[i]);
  dl_encoded_block *hit = dl_block_cache_get(c, 0, 224);
  dl_encoded_block_unref(hit);
  CHECK(hit == b[0] && dl_block_cache_oldest(c) == b[0] && dl_block_cache_newest(c) == b[2],
        "a hit returns the cached block and does not reorder: block 0 stays the oldest");
  dl_block_cache_put(c, b[3]);  // over the budget: the cache keeps it, the server's policy decides
  CHECK(dl_block_cache_count(c) == 4 && dl_block_cache_over_budget(c) && dl_block_cache_newer(c, b[0]) == b[1] &&
            dl_block_cache_older(c, b[3]) == b[2],
        "put never drops on its own (4 blocks over a budget of 3, in insertion order)");
  CHECK(dl_block_cache_remove(c, 1, 224) && !dl_block_cache_remove(c, 1, 224) && !dl_block_cache_has(c, 1, 224) &&
            dl_block_cache_bytes(c) == 3 * one && !dl_block_cache_over_budget(c),
        "remove drops one entry once and its bytes");
  dl_encoded_block *g3 = dl_block_cache_get(c, 3, 224);
  CHECK(g3 == b[3] && dl_block_cache_oldest(c) == b[0] && dl_block_cache_newer(c, b[0]) == b[2],
        "the others stay, in insertion order");
  dl_encoded_block_unref(g3);
  dl_block_cache *none = dl_block_cache_create(0);
  dl_block_cache_put(none, b[0]);
  CHECK(dl_block_cache_get(none, 0, 224) == NULL, "a zero budget keeps nothing");
  dl_block_cache_destroy(none);
  dl_block_cache_destroy(c);
  for (int i = 0; i < 4; i++) {
    CHECK(atomic_load(&b[i]->refs) == 1, "block %d: the cache dropped its references", i);
    dl_encoded_block_unref(b[i]);
  }
}

static void test_rendezvous(void) {
  const char *ids[3] = {"t0", "t1", "t2"};
  bool all[3] = {true, true, true}, two[3] = {true, false, true};
  int count[3] = {0}, moved_wrongly = 0;
  for (uint64_t b = 0; b < 30000; b++) {
    int w = dl_rendezvous_pick(ids, all, 3, b);
    count[w]++;
    int w2 = dl_rendezvous_pick(ids, two, 3, b);
    if (w != 1 && w2 != w) moved_wrongly++;
  }
  CHECK(count[0] > 9000 && count[1] > 9000 && count[2] > 9000, "3 teachers share 30000 blocks: %d %d %d",
        count[0], count[1], count[2]);
  CHECK(moved_wrongly == 0, "removing t1 moves only t1's blocks (%d others moved)", moved_wrongly);
  bool none[3] = {false, false, false};
  CHECK(dl_rendezvous_pick(ids, none, 3, 1) == -1, "no live teacher: no pick");
}

// One encoded block sent to three peers over inproc, where ZeroMQ hands
// messages over by reference: every receiver sees the teacher's own buffer,
// and the references come back to one when the frames are gone.
static void test_shared_payload(void) {
  void *ctx = zmq_ctx_new();
  void *router = zmq_socket(ctx, ZMQ_ROUTER);
  int one = 1;
  zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_bind(router, "inproc://shared-payload");
  void *peers[3];
  uint8_t rid[3][4];
  for (int i = 0; i < 3; i++) {
    peers[i] = zmq_socket(ctx, ZMQ_DEALER);
    memcpy(rid[i], "peer", 4);
    rid[i][3] = (uint8_t)('0' + i);
    zmq_setsockopt(peers[i], ZMQ_ROUTING_ID, rid[i], 4);
    zmq_connect(peers[i], "inproc://shared-payload");
  }
  dl_encoded_block *b = synthetic_block(9);
  size_t n;
  uint8_t *env = dl_encoded_block_pack_envelope(b, &n);
  int sent = 0;
  for (int i = 0; i < 3; i++) sent += dl_wire_send(router, rid[i], 4, env, n, b) == DL_WIRE_SENT;
  int refs_in_flight = atomic_load(&b->refs);
  int same_buffer = 0;
  for (int i = 0; i < 3; i++) {
    zmq_pollitem_t it = {peers[i], 0, ZMQ_POLLIN, 0};
    zmq_poll(&it, 1, 1000);
    dl_wire_msg m;
    if (dl_wire_recv(peers[i], &m) == 1 && m.nframes == 2) {
      size_t len;
      same_buffer += dl_wire_frame(&m, 1, &len) == b->payload && len == b->payload_bytes;
    }
    dl_wire_msg_close(&m);
  }
  CHECK(sent == 3 && refs_in_flight == 4, "one block sent to 3 peers: 1 + 3 references while in flight (%d)",
        refs_in_flight);
  CHECK(same_buffer == 3, "all 3 peers received the teacher's own payload buffer, not copies (%d)", same_buffer);
  CHECK(atomic_load(&b->refs) == 1, "the frames' references were dropped after delivery (%d left)",
        (int)atomic_load(&b->refs));
  uint8_t unknown[4] = {'n', 'o', 'n', 'e'};
  CHECK(dl_wire_send(router, unknown, 4, env, n, b) == DL_WIRE_UNREACHABLE && atomic_load(&b->refs) == 1,
        "a send to an unknown peer reports it unreachable and leaks no reference");
  free(env);
  dl_encoded_block_unref(b);
  for (int i = 0; i < 3; i++) zmq_close(peers[i]);
  zmq_close(router);
  zmq_ctx_term(ctx);
}

// '#' is a z85 digit: keys holding it are keys, not comments.
static void test_allow_list(void) {
  const char *path = "/tmp/distill-allow-list-test.txt";
  const char *with_hash = "Y5OBYWU{Na3g}%gAApG@R#P$mtB041ErpMnD-mDh", *hash_end = "La4y>1:438fv1xp-l}T%3SJtn)UhaupR(0*i}z0#";
  FILE *f = fopen(path, "w");
  fprintf(f, "# students of the vits14 group\n\n  %s\n%s   # a trailing comment\n#short comment\n", with_hash, hash_end);
  fclose(f);
  dl_curve_key *keys = NULL;
  int n = 0;
  dl_err err;
  int rc = dl_curve_read_allow_list(path, &keys, &n, &err);
  CHECK(rc == 0 && n == 2 && !strcmp(keys[0].z85, with_hash) && !strcmp(keys[1].z85, hash_end),
        "allow-list: keys holding '#' read as keys, comments skipped (%d keys%s%s)", n,
        rc ? ": " : "", rc ? err.msg : "");
  free(keys);
  f = fopen(path, "w");
  fprintf(f, "%.39s\n", with_hash);
  fclose(f);
  rc = dl_curve_read_allow_list(path, &keys, &n, &err);
  CHECK(rc == -1, "allow-list: a 39-digit key is refused (%s)", rc ? err.msg : "accepted");
  remove(path);
}

int main(void) {
  test_allow_list();
  test_shared_payload();
  test_xxhash64();
  test_crc32c();
  test_hot_checksums();
  test_codecs();
  test_codec_spec();
  test_envelopes();
  test_welcome_widths();
  test_encode_take();
  test_cache();
  test_rendezvous();
  return dl_test_summary("transport_unit");
}
