// Writes the fuzzers' starting inputs (tests/transport/fuzz/seeds/*): real
// envelopes, encoded tensors and a small target store. Run by hand when the
// formats change: build/tests/transport_make_fuzz_seeds tests/transport/fuzz/seeds
// (the seeds named xxhash64-* are kept from before CRC32C block checksums:
// BLOCKs of checksum kind xxHash64, as old target stores hold them).
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
  // A two-block store; its index and its shard (with a locating header) are seeds.
  char store[1024];
  snprintf(store, sizeof store, "%s/tmp-store", argv[1]);
  dl_store_writer *w = dl_store_writer_open(store, 0, NULL);
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
  dl_store_entry *entries;
  uint32_t count;
  dl_store_index_parse(f.data, f.size, &entries, &count, NULL);
  dl_unmap_file(&f);
  snprintf(path, sizeof path, "%s/shard-000000.dlts", store);
  dl_map_file(path, &f, NULL);
  uint64_t loc[2] = {entries[1].offset, entries[1].length};
  put(dir, "shard", loc, 16, f.data, f.size);
  dl_unmap_file(&f);
  free(entries);
  printf("seeds written under %s (remove %s)\n", argv[1], store);
  return 0;
}
