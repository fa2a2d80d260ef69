#include "tests/transport/store_helpers.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/synthetic.h"
#include "tests/transport/stream_helpers.h"

dl_encoded_block *test_encoded_block(uint64_t block, uint32_t resolution, const char *codec,
                                     int zstd_level) {
  dl_synthetic_spec spec = test_stream_spec();
  dl_target_block tb;
  memset(&tb, 0, sizeof tb);
  dl_codec_spec cs;
  dl_err err;
  dl_encoded_block *e = NULL;
  if (dl_synthetic_compute(&spec, block, resolution, &tb, &err) == 0 &&
      dl_codec_spec_parse(codec, &cs, &err) == 0) {
    tb.block = block;
    tb.resolution = resolution;
    e = dl_encode_block(&tb, &cs, zstd_level, &err);
  }
  dl_target_block_free(&tb);
  if (!e) {
    fprintf(stderr, "cannot encode block %llu: %s\n", (unsigned long long)block, err.msg);
    abort();
  }
  return e;
}

static int same_tensor(const dl_encoded_tensor *a, const dl_encoded_tensor *b) {
  return strcmp(a->name, b->name) == 0 && a->offset == b->offset && a->wire.codec == b->wire.codec &&
         a->wire.rows == b->wire.rows && a->wire.cols == b->wire.cols &&
         a->wire.zstd == b->wire.zstd && a->wire.wire_bytes == b->wire.wire_bytes;
}

int test_same_encoded(const dl_encoded_block *a, const dl_encoded_block *b) {
  if (!a || !b) return 0;
  if (a->block != b->block || a->resolution != b->resolution ||
      a->first_sample != b->first_sample || a->num_samples != b->num_samples ||
      a->checksum != b->checksum || a->checksum_kind != b->checksum_kind ||
      a->raw_bytes != b->raw_bytes || a->ntensors != b->ntensors ||
      a->payload_bytes != b->payload_bytes)
    return 0;
  for (int i = 0; i < a->ntensors; i++)
    if (!same_tensor(&a->tensors[i], &b->tensors[i])) return 0;
  return memcmp(a->payload, b->payload, a->payload_bytes) == 0;
}

void test_flip_byte(const char *path, long offset, int whence) {
  FILE *f = fopen(path, "r+b");
  if (!f) {
    fprintf(stderr, "cannot open %s to corrupt it\n", path);
    abort();
  }
  fseek(f, offset, whence);
  int ch = fgetc(f);
  fseek(f, offset, whence);
  fputc(ch ^ 0xFF, f);
  fclose(f);
}

int test_count_files(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
  if (d) closedir(d);
  return n;
}

void test_remove_tree(const char *dir) {
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) printf("could not remove %s\n", dir);
}
