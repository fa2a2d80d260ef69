// Writes the fuzzers' starting inputs (tests/transport/fuzz/seeds/*): real
// envelopes, encoded tensors and a small target store. Run by hand when the
// formats change: build/tests/transport_make_fuzz_seeds tests/transport/fuzz/seeds
// (the seeds named xxhash64-* are kept from before CRC32C block checksums:
// BLOCKs of checksum kind xxHash64, as old target stores hold them; store/index
// is a version-2 index with an identity, store/index-v1 the same entries as
// stores were indexed before they recorded their identity).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/file_io.h"
#include "transport/encoded_block.h"
#include "transport/synthetic.h"
#include "transport/target_store.h"

static void put(const char *dir, const char *name, const void *a, size_t na, const void *b, size_t nb) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  dl_chunk c[2] = {{a, na}, {b, nb}};
  dl_err err;
  if (dl_write_file_atomic(path, c, 2, &err)) fprintf(stderr, "%s\n", err.msg);
}

// An envelope without payload, framed as the envelope fuzzer reads it.
static void put_envelope(const char *dir, const char *name, const dl_envelope *e) {
  size_t n;
  uint8_t *env = dl_envelope_pack(e, &n);
  uint8_t hdr[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
  put(dir, name, hdr, 2, env, n);
  free(env);
}

// The student's messages of protocol 2: HELLO with stream text, plan and
// cursor, REQUEST and HEARTBEAT with a cursor, BYE; the teacher's HOLD and
// WELCOME (with the patch targets' own width).
static void put_control_messages(const char *dir) {
  dl_envelope e;
  Distill__Phase p0 = DISTILL__PHASE__INIT, p1 = DISTILL__PHASE__INIT, *plan[2] = {&p0, &p1};
  p0.end_block = 1960, p0.resolution = 224;
  p1.first_block = 1960, p1.end_block = 2000, p1.resolution = 518;
  Distill__Hello h = DISTILL__HELLO__INIT;
  h.protocol_version = DL_PROTOCOL_VERSION, h.group = "vits14", h.rank = 1, h.world = 2;
  h.recipe_hash = 0x1234, h.stream = "data.seed=0;crops.global_size=224", h.n_plan = 2, h.plan = plan, h.cursor = 7;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_HELLO, e.hello = &h;
  put_envelope(dir, "hello-plan", &e);
  uint64_t blocks[3] = {9, 11, 13};
  Distill__Request r = DISTILL__REQUEST__INIT;
  r.n_blocks = 3, r.blocks = blocks, r.resolution = 224, r.cursor = 7;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_REQUEST, e.request = &r;
  put_envelope(dir, "request-cursor", &e);
  Distill__Hold hold = DISTILL__HOLD__INIT;
  hold.n_blocks = 2, hold.blocks = blocks, hold.resolution = 224;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_HOLD, e.hold = &hold;
  put_envelope(dir, "hold", &e);
  Distill__Heartbeat hb = DISTILL__HEARTBEAT__INIT;
  hb.cursor = 9;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_HEARTBEAT, e.heartbeat = &hb;
  put_envelope(dir, "heartbeat-cursor", &e);
  Distill__Bye bye = DISTILL__BYE__INIT;
  bye.finished = 1, bye.cursor = 2001;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_BYE, e.bye = &bye;
  put_envelope(dir, "bye-finished", &e);
  // The teacher's WELCOME with one width per target (ViT-g/14's heads).
  Distill__Welcome w = DISTILL__WELCOME__INIT;
  w.teacher_id = "teacher-0", w.incarnation = 0x5eed, w.embed_dim = 384, w.patch_dim = 256, w.patch_tokens = 256;
  w.weights_hash = 0xabcd, w.heads_hash = 0x1234, w.heartbeat_ms = 1000;
  dl_envelope_init(&e);
  e.body_case = DISTILL__ENVELOPE__BODY_WELCOME, e.welcome = &w;
  put_envelope(dir, "welcome-widths", &e);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  char dir[1024];
  const char *sub[] = {"envelope", "codec", "store"};
  for (int i = 0; i < 3; i++) {
    snprintf(dir, sizeof dir, "%s/%s", argv[1], sub[i]);
    mkdir(argv[1], 0755);
    mkdir(dir, 0755);
  }
  dl_synthetic_spec spec = {.dim = 8, .patches = 2, .crops = 1, .block_size = 2};
  const char *codecs[] = {"f32", "f16", "bf16", "int8"};
  for (int c = 0; c < 4; c++)
    for (int z = 0; z <= 3; z += 3) {
      dl_target_block tb;
      memset(&tb, 0, sizeof tb);
      dl_synthetic_compute(&spec, (uint64_t)c, 224, &tb, NULL);
      dl_codec_spec cs;
      dl_codec_spec_parse(codecs[c], &cs, NULL);
      dl_encoded_block *e = dl_encode_block(&tb, &cs, z, NULL);
      size_t n;
      uint8_t *env = dl_encoded_block_pack_envelope(e, &n);
      uint8_t hdr[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
      uint8_t *msg = malloc(2 + n);
      memcpy(msg, hdr, 2);
      memcpy(msg + 2, env, n);
      char name[64];
      snprintf(name, sizeof name, "block-%s-z%d", codecs[c], z);
      snprintf(dir, sizeof dir, "%s/envelope", argv[1]);
      put(dir, name, msg, 2 + n, e->payload, e->payload_bytes);
      const dl_encoded_tensor *t = &e->tensors[0];
      uint8_t th[6] = {(uint8_t)t->wire.codec, t->wire.zstd, (uint8_t)t->wire.rows, (uint8_t)(t->wire.rows >> 8),
                       (uint8_t)t->wire.cols, (uint8_t)(t->wire.cols >> 8)};
      snprintf(dir, sizeof dir, "%s/codec", argv[1]);
      put(dir, name, th, 6, e->payload + t->offset, t->wire.wire_bytes);
      free(msg);
      free(env);
      dl_encoded_block_unref(e);
      dl_target_block_free(&tb);
    }
  snprintf(dir, sizeof dir, "%s/envelope", argv[1]);
  put_control_messages(dir);
  // Zeros compress, so these seeds hold real zstd frames.
  for (int c = 0; c < 4; c++) {
    float zeros[16 * 16] = {0};
    uint8_t buf[4096];
    dl_tensor_wire tw;
    dl_tensor_encode((dl_codec)c, 3, zeros, 16, 16, buf, sizeof buf, &tw, NULL);
    uint8_t th[6] = {(uint8_t)c, tw.zstd, 16, 0, 16, 0};
    char name[64];
    snprintf(name, sizeof name, "zeros-%s-z3", codecs[c]);
    snprintf(dir, sizeof dir, "%s/codec", argv[1]);
    put(dir, name, th, 6, buf, tw.wire_bytes);
  }
  // A two-block store; its index (as written, version 2, and as a version-1
  // index of the same entries) and its shard (with a locating header) are seeds.
  char store[1024];
  snprintf(store, sizeof store, "%s/tmp-store", argv[1]);
  dl_store_identity id = {.stream_hash = 0x1a2b3c4d5e6f7081ull, .weights_hash = 0x0f1e2d3c4b5a6978ull,
                          .codec = "f16,patch=int8", .zstd_level = 3, .target_kind = 2};
  dl_store_writer *w = dl_store_writer_open(store, 0, &id, NULL);
  for (uint64_t b = 0; b < 2; b++) {
    dl_target_block tb;
    memset(&tb, 0, sizeof tb);
    dl_synthetic_compute(&spec, b, 224, &tb, NULL);
    dl_codec_spec cs = {.default_codec = DL_CODEC_F16};
    dl_encoded_block *e = dl_encode_block(&tb, &cs, 3, NULL);
    dl_store_writer_add(w, e, NULL);
    dl_encoded_block_unref(e);
    dl_target_block_free(&tb);
  }
  dl_store_writer_close(w, NULL);
  char path[1100];
  dl_mapped_file f;
  snprintf(dir, sizeof dir, "%s/store", argv[1]);
  snprintf(path, sizeof path, "%s/index.dlti", store);
  dl_map_file(path, &f, NULL);
  put(dir, "index", f.data, f.size, NULL, 0);
  dl_store_index ix;
  dl_store_index_parse(f.data, f.size, &ix, NULL);
  dl_unmap_file(&f);
  size_t v1_bytes;
  uint8_t *v1 = dl_store_index_encode(NULL, ix.entries, ix.count, &v1_bytes);
  put(dir, "index-v1", v1, v1_bytes, NULL, 0);
  free(v1);
  snprintf(path, sizeof path, "%s/shard-000000.dlts", store);
  dl_map_file(path, &f, NULL);
  uint64_t loc[2] = {ix.entries[1].offset, ix.entries[1].length};
  put(dir, "shard", loc, 16, f.data, f.size);
  dl_unmap_file(&f);
  dl_store_index_free(&ix);
  printf("seeds written under %s (remove %s)\n", argv[1], store);
  return 0;
}
