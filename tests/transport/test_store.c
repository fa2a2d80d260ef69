// The target store: a teacher writes the blocks it computes; a student reads
// them back directly (offline replay); a teacher without a model serves them;
// corruption is reported, not served.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file_io.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "transport/target_store.h"

enum { kBlocks = 200 };
static char g_dir[] = "/tmp/distill-store-XXXXXX";

static void serve(bool with_model, uint64_t end_block, test_rank *r, dl_teacher_metrics *m) {
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  cfg.store_dir = g_dir;
  cfg.store_write = with_model;
  cfg.zstd_level = 3;
  dl_codec_spec_parse("f16", &cfg.codecs, NULL);
  if (!with_model) cfg.compute_block = NULL;
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return;
  const char *ep = dl_teacher_server_endpoint(t.server);
  test_rank_init(r, &ep, 1, "replay", 0, 1, end_block);
  r->tolerance = 1e-3f;
  r->timeout_s = 10;
  test_rank_start(r);
  test_rank_join(r);
  test_teacher_stop(&t, m);
}

static int count_tmp_files(void) {
  DIR *d = opendir(g_dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp") != NULL;
  if (d) closedir(d);
  return n;
}

static void offline_replay(void) {
  dl_err err;
  dl_store_reader *rd = dl_store_reader_open(g_dir, &err);
  CHECK(rd != NULL, "the store opens for reading (%s)", rd ? "ok" : err.msg);
  if (!rd) return;
  dl_synthetic_spec spec = test_stream_spec();
  int good = 0;
  for (uint64_t b = 0; b < kBlocks; b++) {
    dl_target_block blk;
    if (dl_store_reader_get(rd, b, 224, &blk, &err) == 1 &&
        dl_synthetic_verify(&spec, &blk, b, 224, 1e-3f, 1, &err) == 0)
      good++;
    dl_target_block_free(&blk);
  }
  dl_target_block blk;
  CHECK(good == kBlocks, "offline replay: %d of %d blocks read back from the store and verified", good, kBlocks);
  CHECK(dl_store_reader_get(rd, kBlocks, 224, &blk, &err) == 0, "a block never stored is reported absent");
  CHECK(dl_store_reader_get(rd, 0, 518, &blk, &err) == 0, "another resolution is another block");
  dl_store_reader_close(rd);
}

static void corruption_is_caught(void) {
  char shard[512], index[512];
  snprintf(shard, sizeof shard, "%s/shard-000000.dlts", g_dir);
  snprintf(index, sizeof index, "%s/index.dlti", g_dir);
  FILE *f = fopen(shard, "r+b");
  fseek(f, -10, SEEK_END);  // inside the payload of the last record
  int ch = fgetc(f);
  fseek(f, -10, SEEK_END);
  fputc(ch ^ 0xFF, f);
  fclose(f);
  dl_err err;
  dl_store_reader *rd = dl_store_reader_open(g_dir, &err);
  int bad = 0, fine = 0;
  for (uint64_t b = 0; rd && b < kBlocks; b++) {
    dl_target_block blk;
    int rc = dl_store_reader_get(rd, b, 224, &blk, &err);
    if (rc < 0) bad++;
    if (rc == 1) fine++;
    dl_target_block_free(&blk);
  }
  dl_store_reader_close(rd);
  CHECK(bad == 1 && fine == kBlocks - 1, "one flipped byte in a shard: %d block refused, %d fine", bad, fine);
  f = fopen(index, "r+b");
  fseek(f, 20, SEEK_SET);
  fputc(0x7F, f);
  fclose(f);
  rd = dl_store_reader_open(g_dir, &err);
  CHECK(rd == NULL && strstr(err.msg, "checksum"), "a modified index is refused: %s", rd ? "(opened)" : err.msg);
  dl_store_reader_close(rd);
}

int main(void) {
  if (!mkdtemp(g_dir)) return 1;
  test_rank r;
  dl_teacher_metrics m;
  serve(true, kBlocks, &r, &m);
  test_rank_check(&r);
  CHECK(m.computed == kBlocks && m.store_written == kBlocks, "the teacher computed and stored %llu blocks",
        (unsigned long long)m.store_written);
  CHECK(count_tmp_files() == 0, "no temporary files left in the store");
  offline_replay();

  serve(false, kBlocks, &r, &m);
  test_rank_check(&r);
  CHECK(m.computed == 0 && m.store_hits == kBlocks,
        "a teacher without a model served all %d blocks from the store (%llu hits, %llu computed)",
        kBlocks, (unsigned long long)m.store_hits, (unsigned long long)m.computed);

  serve(false, kBlocks + 5, &r, &m);
  CHECK(r.fatal && strstr(r.error, "cannot produce block 200") && r.delivered == kBlocks,
        "past the stored blocks the student stops with: %s", r.error);

  corruption_is_caught();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0) printf("could not remove %s\n", g_dir);
  return dl_test_summary("transport_store");
}
