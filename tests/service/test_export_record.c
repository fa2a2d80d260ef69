// The catalogue's pieces that a run does not exercise on demand: SHA-256
// against FIPS 180-4's examples (and a file hashed in pieces), and export
// records: a round trip, and every truncation of a record refused.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sha256.h"
#include "student/export_record.h"
#include "tests/harness.h"

static void check_sha256(void) {
  // FIPS 180-4 / NIST CSRC examples: one block, empty, two blocks, a million 'a'.
  const struct { const char *msg, *want; } v[] = {
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  char hex[65];
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    dl_sha256_bytes(v[i].msg, strlen(v[i].msg), hex);
    CHECK(strcmp(hex, v[i].want) == 0, "sha256(\"%.12s%s\") = %.16s...", v[i].msg, strlen(v[i].msg) > 12 ? "..." : "",
          hex);
  }
  char *a = malloc(1000000);
  memset(a, 'a', 1000000);
  // In uneven pieces: every path through the partial block.
  dl_sha256 s;
  dl_sha256_init(&s);
  for (size_t off = 0, step = 1; off < 1000000; off += step, step = step * 7 % 997 + 1)
    dl_sha256_update(&s, a + off, off + step > 1000000 ? 1000000 - off : step);
  uint8_t d[32];
  dl_sha256_final(&s, d);
  dl_sha256_hex(d, hex);
  CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
        "sha256 of a million 'a' fed in uneven pieces = %.16s...", hex);
  char path[] = "/tmp/distill-sha256-XXXXXX";
  int fd = mkstemp(path);
  const int wrote = fd >= 0 ? (int)write(fd, a, 1000000) : -1;
  if (fd >= 0) close(fd);
  uint64_t size = 0;
  dl_err err;
  const int rc = wrote == 1000000 ? dl_sha256_file(path, hex, &size, &err) : -1;
  CHECK(rc == 0 && size == 1000000 && strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
        "dl_sha256_file: the same digest and size %llu", (unsigned long long)size);
  unlink(path);
  free(a);
}

static void check_records(void) {
  char dir[] = "/tmp/distill-record-XXXXXX";
  if (!mkdtemp(dir)) {
    CHECK(0, "mkdtemp");
    return;
  }
  dl_export_record r = {.step = 1200, .size = 4242, .hires = true, .resolution = 518, .images_seen = 1200 * 64,
                        .final = true};
  snprintf(r.file, sizeof r.file, "student-ema-%010ld.safetensors", r.step);
  memset(r.sha256, 'a', 64);
  snprintf(r.architecture, sizeof r.architecture, "patch=14 dim=384 depth=12 heads=6 ffn=mlp ffn_hidden=1536");
  snprintf(r.recipe_xxh64, sizeof r.recipe_xxh64, "0123456789abcdef");
  r.eval = (dl_export_eval){.state = DL_EXPORT_EVAL_DONE, .attempts = 2, .knn_top1 = 74.91, .knn_k = 20,
                            .knn_temperature = 0.07, .has_linear = true, .linear_top1 = 80.5, .train_n = 60000,
                            .test_n = 10000, .size = 56, .seconds = 12.5};
  snprintf(r.eval.failure, sizeof r.eval.failure, "first try: \"killed\"\\n");
  dl_err err;
  dl_export_record back;
  char path[256];
  dl_export_record_path(path, sizeof path, dir, r.step);
  int rc = dl_export_record_write(dir, &r, &err);
  if (rc == 0) rc = dl_export_record_read(path, &back, &err);
  CHECK(rc == 0 && back.step == r.step && back.size == r.size && back.hires && back.resolution == 518 &&
            back.images_seen == r.images_seen && back.final && strcmp(back.sha256, r.sha256) == 0 &&
            strcmp(back.architecture, r.architecture) == 0 && back.eval.state == DL_EXPORT_EVAL_DONE &&
            back.eval.attempts == 2 && back.eval.knn_top1 == 74.91 && back.eval.linear_top1 == 80.5 &&
            back.eval.train_n == 60000 && back.eval.size == 56 && strchr(back.eval.failure, '"') == NULL,
        "a record round-trips (step %ld, k-NN %.2f, linear %.2f; quotes in the failure text made plain)%s%s", back.step,
        back.eval.knn_top1, back.eval.linear_top1, rc ? ": " : "", rc ? err.msg : "");
  // Every shorter prefix of the file is refused (a record cut by a crash).
  FILE *f = fopen(path, "rb");
  char text[4096];
  const size_t n = f ? fread(text, 1, sizeof text, f) : 0;
  if (f) fclose(f);
  int refused = 0;
  for (size_t len = 0; len < n; len++) {
    FILE *g = fopen(path, "wb");
    if (!g) break;
    fwrite(text, 1, len, g);
    fclose(g);
    refused += dl_export_record_read(path, &back, &err) != 0;
  }
  CHECK(n > 0 && refused == (int)n, "all %zu truncations of the %zu-byte record refused (%d)", n, n, refused);
  FILE *g = fopen(path, "wb");
  if (g) {
    fwrite(text, 1, n, g);
    fputs("extra 1\n", g);
    fclose(g);
  }
  CHECK(dl_export_record_read(path, &back, &err) != 0, "an unknown field refused: %s", err.msg);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  check_sha256();
  check_records();
  return dl_test_summary("test_export_record");
}
