// The target store: a teacher writes the blocks it computes; a student reads
// them back directly (offline replay); a teacher without a model serves them;
// corruption is reported, not served. A store records the identity of its
// blocks and refuses a writer or reader of another one; version-1 stores
// (no identity) stay readable; a writer serves the blocks it wrote.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file_io.h"
#include "tests/harness.h"
#include "tests/transport/store_helpers.h"
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
  static const dl_store_identity identity = {.stream_hash = 0x5eed, .weights_hash = 0xfeed,
                                             .codec = "f16", .zstd_level = 3};
  cfg.store_identity = &identity;
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

static void offline_replay(void) {
  dl_err err;
  dl_store_reader *rd = dl_store_reader_open(g_dir, NULL, &err);
  CHECK(rd != NULL, "the store opens for reading (%s)", rd ? "ok" : err.msg);
  if (!rd) return;
  CHECK(dl_store_reader_identity(rd) != NULL, "the teacher's store records its identity");
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
  test_flip_byte(shard, -10, SEEK_END);  // inside the payload of the last record
  dl_err err;
  dl_store_reader *rd = dl_store_reader_open(g_dir, NULL, &err);
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
  test_flip_byte(index, 20, SEEK_SET);
  rd = dl_store_reader_open(g_dir, NULL, &err);
  CHECK(rd == NULL && strstr(err.msg, "checksum"), "a modified index is refused: %s", rd ? "(opened)" : err.msg);
  dl_store_reader_close(rd);
}

// ---- identity

static dl_store_identity identity_a(void) {
  return (dl_store_identity){.stream_hash = 0x1a2b3c4d5e6f7081ull, .weights_hash = 0x1111,
                             .codec = "f32", .zstd_level = 0, .target_kind = 0};
}

static void subdir(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_dir, name); }

// A writer on dir; NULL after a failed check.
static dl_store_writer *open_writer(const char *dir, size_t shard_bytes, const dl_store_identity *id) {
  dl_err err;
  dl_store_writer *w = dl_store_writer_open(dir, shard_bytes, id, &err);
  if (!w) CHECK(0, "a writer opens %s: %s", dir, err.msg);
  return w;
}

// Adds blocks [from, to) at 224 with id's codec and level.
static void add_blocks(dl_store_writer *w, uint64_t from, uint64_t to, const dl_store_identity *id) {
  dl_err err;
  for (uint64_t b = from; b < to; b++) {
    dl_encoded_block *e = test_encoded_block(b, 224, id->codec, id->zstd_level);
    if (dl_store_writer_add(w, e, &err)) CHECK(0, "add block %" PRIu64 ": %s", b, err.msg);
    dl_encoded_block_unref(e);
  }
}

// A store in dir of blocks [0, n).
static void write_blocks(const char *dir, const dl_store_identity *id, uint64_t n) {
  dl_store_writer *w = open_writer(dir, 0, id);
  if (!w) return;
  add_blocks(w, 0, n, id);
  dl_err err;
  if (dl_store_writer_close(w, &err)) CHECK(0, "close: %s", err.msg);
}

static int same_identity(const dl_store_identity *a, const dl_store_identity *b) {
  return a && b && a->stream_hash == b->stream_hash && a->weights_hash == b->weights_hash &&
         strcmp(a->codec, b->codec) == 0 && a->zstd_level == b->zstd_level &&
         a->target_kind == b->target_kind;
}

static void identity_is_recorded(void) {
  char dir[512];
  subdir(dir, sizeof dir, "identity");
  dl_store_identity a = identity_a();
  dl_err err;
  dl_store_writer *w = dl_store_writer_open(dir, 0, &a, &err);
  dl_store_writer_close(w, &err);
  dl_store_reader *rd = dl_store_reader_open(dir, &a, &err);
  CHECK(rd && dl_store_reader_count(rd) == 0 && same_identity(dl_store_reader_identity(rd), &a),
        "a new store records its identity when its writer opens, before any block");
  dl_store_reader_close(rd);
  write_blocks(dir, &a, 3);
  rd = dl_store_reader_open(dir, NULL, &err);
  CHECK(rd && dl_store_reader_count(rd) == 3 && same_identity(dl_store_reader_identity(rd), &a),
        "a reader expecting nothing opens it and sees the identity written (%s)", rd ? "ok" : err.msg);
  dl_store_reader_close(rd);
  rd = dl_store_reader_open(dir, &a, &err);
  CHECK(rd != NULL, "a reader expecting the same identity opens it (%s)", rd ? "ok" : err.msg);
  dl_store_reader_close(rd);
  w = dl_store_writer_open(dir, 0, &a, &err);
  CHECK(w && dl_store_writer_count(w) == 3, "a writer of the same identity continues it (%s)",
        w ? "ok" : err.msg);
  dl_store_writer_close(w, &err);
}

// Both a writer and a reader wanting `want` are refused by the store in dir
// with exactly "DIR: the store holds blocks of HELD; <who> WANTED".
static void check_refused(const char *dir, const dl_store_identity *want, const char *held,
                          const char *wanted, const char *what) {
  char expect[1024];
  dl_err err;
  dl_store_writer *w = dl_store_writer_open(dir, 0, want, &err);
  snprintf(expect, sizeof expect, "%s: the store holds blocks of %s; this teacher has %s", dir, held,
           wanted);
  CHECK(!w && strcmp(err.msg, expect) == 0, "%s: a writer is refused: %s", what, w ? "(opened)" : err.msg);
  dl_store_writer_close(w, &err);
  dl_store_reader *rd = dl_store_reader_open(dir, want, &err);
  snprintf(expect, sizeof expect, "%s: the store holds blocks of %s; expected %s", dir, held, wanted);
  CHECK(!rd && strcmp(err.msg, expect) == 0, "%s: a reader is refused: %s", what, rd ? "(opened)" : err.msg);
  dl_store_reader_close(rd);
}

static void identity_refusals(void) {
  char dir[512];
  subdir(dir, sizeof dir, "identity");
  dl_store_identity a = identity_a(), b = a;
  b.stream_hash = 0x3c4d5e6f70819203ull;
  snprintf(b.codec, sizeof b.codec, "f16");
  check_refused(dir, &b, "stream 1a2b3c4d5e6f7081 and codec f32", "stream 3c4d5e6f70819203 and codec f16",
                "another stream and codec");
  b = a;
  b.weights_hash = 0x2222;
  check_refused(dir, &b, "weights 0000000000001111", "weights 0000000000002222", "other weights");
  b = a;
  b.zstd_level = 3;
  check_refused(dir, &b, "zstd level 0", "zstd level 3", "another zstd level");
  b = a;
  b.target_kind = 2;
  check_refused(dir, &b, "target kind features", "target kind both", "another target kind");
  b.weights_hash = 0x2222;
  snprintf(b.codec, sizeof b.codec, "f32,patch=int8");
  check_refused(dir, &b, "weights 0000000000001111, codec f32 and target kind features",
                "weights 0000000000002222, codec f32,patch=int8 and target kind both", "three fields");
}

static void bad_identities_are_refused(void) {
  char dir[512];
  subdir(dir, sizeof dir, "bad-identity");
  struct {
    dl_store_identity id;
    const char *says;
  } cases[] = {
      {{.codec = ""}, "without a codec"},
      {{.codec = "f16", .zstd_level = 23}, "zstd level 23 outside 0..22"},
      {{.codec = "f16", .zstd_level = -1}, "zstd level -1 outside 0..22"},
      {{.codec = "f16", .target_kind = 3}, "target kind 3"},
  };
  dl_err err;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dl_store_writer *w = dl_store_writer_open(dir, 0, &cases[i].id, &err);
    CHECK(!w && strstr(err.msg, cases[i].says), "a bad identity is refused: %s", w ? "(opened)" : err.msg);
    dl_store_writer_close(w, &err);
  }
  dl_store_identity long_codec = {.codec = ""};
  memset(long_codec.codec, 'x', sizeof long_codec.codec);  // no terminating NUL
  dl_store_writer *w = dl_store_writer_open(dir, 0, &long_codec, &err);
  CHECK(!w && strstr(err.msg, "codec text longer than 127"), "an unterminated codec is refused: %s",
        w ? "(opened)" : err.msg);
  dl_store_writer_close(w, &err);
  w = dl_store_writer_open(dir, 0, NULL, &err);
  CHECK(!w && strstr(err.msg, "no store identity"), "a writer needs an identity: %s", w ? "(opened)" : err.msg);
  dl_store_writer_close(w, &err);
  CHECK(access(dir, F_OK) != 0, "no directory is created for a refused identity");
}

// Rewrites the index of dir as stores wrote it before they recorded their identity.
static void downgrade_to_version_1(const char *dir) {
  char path[600];
  snprintf(path, sizeof path, "%s/index.dlti", dir);
  dl_mapped_file f;
  dl_store_index ix;
  dl_err err;
  if (dl_map_file(path, &f, &err)) {
    CHECK(0, "read %s: %s", path, err.msg);
    return;
  }
  int bad = dl_store_index_parse(f.data, f.size, &ix, &err);
  dl_unmap_file(&f);
  if (bad) {
    CHECK(0, "parse %s: %s", path, err.msg);
    return;
  }
  size_t n;
  uint8_t *v1 = dl_store_index_encode(NULL, ix.entries, ix.count, &n);
  dl_chunk c = {v1, n};
  if (dl_write_file_atomic(path, &c, 1, &err)) CHECK(0, "write %s: %s", path, err.msg);
  free(v1);
  dl_store_index_free(&ix);
}

static void version_1_store(void) {
  char dir[512];
  subdir(dir, sizeof dir, "version-1");
  dl_store_identity a = identity_a();
  write_blocks(dir, &a, 3);
  downgrade_to_version_1(dir);
  dl_err err;
  dl_store_reader *rd = dl_store_reader_open(dir, NULL, &err);
  int same = 0;
  for (uint64_t b = 0; rd && b < 3; b++) {
    dl_encoded_block *got, *want = test_encoded_block(b, 224, a.codec, a.zstd_level);
    same += dl_store_reader_get_encoded(rd, b, 224, &got, &err) == 1 && test_same_encoded(got, want);
    dl_encoded_block_unref(got);
    dl_encoded_block_unref(want);
  }
  CHECK(rd && !dl_store_reader_identity(rd) && same == 3,
        "a version-1 store opens without an expected identity, has none, and serves %d of 3 blocks", same);
  dl_store_reader_close(rd);
  char expect[700];
  snprintf(expect, sizeof expect, "%s: the store was written before stores recorded their identity", dir);
  rd = dl_store_reader_open(dir, &a, &err);
  CHECK(!rd && strncmp(err.msg, expect, strlen(expect)) == 0,
        "a reader expecting an identity refuses it: %s", rd ? "(opened)" : err.msg);
  dl_store_reader_close(rd);
  dl_store_writer *w = dl_store_writer_open(dir, 0, &a, &err);
  CHECK(!w && strncmp(err.msg, expect, strlen(expect)) == 0, "a writer refuses to continue it: %s",
        w ? "(opened)" : err.msg);
  dl_store_writer_close(w, &err);
}

// ---- a writer serves what it wrote

static int count_shards(const char *dir) { return test_count_files(dir, "shard-"); }

// Blocks [from, to) served by w are byte-identical to the ones encoded.
static int served_identical(dl_store_writer *w, uint64_t from, uint64_t to, const dl_store_identity *id) {
  int same = 0;
  dl_err err;
  for (uint64_t b = from; b < to; b++) {
    dl_encoded_block *got, *want = test_encoded_block(b, 224, id->codec, id->zstd_level);
    int rc = dl_store_writer_get_encoded(w, b, 224, &got, &err);
    if (rc == 1 && test_same_encoded(got, want)) same++;
    else printf("block %" PRIu64 ": rc %d %s\n", b, rc, rc < 0 ? err.msg : "");
    dl_encoded_block_unref(got);
    dl_encoded_block_unref(want);
  }
  return same;
}

static void writer_serves_its_blocks(void) {
  char dir[512];
  subdir(dir, sizeof dir, "live");
  dl_store_identity id = identity_a();
  snprintf(id.codec, sizeof id.codec, "f16");
  id.zstd_level = 3;
  dl_store_writer *w = open_writer(dir, 0, &id);
  if (!w) return;
  dl_err err;
  // Two shards on disk (blocks 0-3 and 4-7), blocks 8 and 9 pending.
  add_blocks(w, 0, 4, &id);
  dl_store_writer_flush(w, &err);
  add_blocks(w, 4, 8, &id);
  dl_store_writer_flush(w, &err);
  add_blocks(w, 8, 10, &id);
  int shards = count_shards(dir), same = served_identical(w, 0, 10, &id);
  CHECK(shards == 2 && same == 10,
        "a writer serves all %d of 10 blocks it added, byte-identical, from %d shards on disk and its pending one",
        same, shards);
  dl_encoded_block *again = test_encoded_block(0, 224, id.codec, id.zstd_level), *got;
  CHECK(dl_store_writer_add(w, again, &err) == 0 && dl_store_writer_count(w) == 10,
        "adding a block it has again stores nothing");
  dl_encoded_block_unref(again);
  CHECK(dl_store_writer_has(w, 9, 224) && !dl_store_writer_has(w, 10, 224) && !dl_store_writer_has(w, 0, 518) &&
            dl_store_writer_get_encoded(w, 10, 224, &got, &err) == 0 && !got,
        "it has what it added and nothing else (another resolution is another block)");
  dl_store_writer_close(w, &err);

  char shard0[600];
  snprintf(shard0, sizeof shard0, "%s/shard-000000.dlts", dir);
  test_flip_byte(shard0, -10, SEEK_END);  // the payload of block 3, the shard's last record
  w = open_writer(dir, 1, &id);  // shards of one record: every add writes one
  if (!w) return;
  add_blocks(w, 10, 12, &id);
  int before = served_identical(w, 4, 10, &id), added = served_identical(w, 10, 12, &id);
  CHECK(before == 6 && added == 2 && count_shards(dir) == 5,
        "a continued store serves the blocks there when it opened (%d of 6) and the ones added since "
        "(%d of 2, each written out at once into a shard of its own)",
        before, added);
  int rc = dl_store_writer_get_encoded(w, 3, 224, &got, &err);
  CHECK(rc == -1 && !got && strstr(err.msg, "shard-000000.dlts") && strstr(err.msg, "checksum"),
        "a corrupt record is refused, not served: %s", rc < 0 ? err.msg : "(served)");
  CHECK(served_identical(w, 0, 3, &id) == 3, "the other records of that shard are still served");
  dl_store_writer_close(w, &err);
}

int main(void) {
  if (!mkdtemp(g_dir)) return 1;
  test_rank r;
  dl_teacher_metrics m;
  serve(true, kBlocks, &r, &m);
  test_rank_check(&r);
  CHECK(m.computed == kBlocks && m.store_written == kBlocks, "the teacher computed and stored %llu blocks",
        (unsigned long long)m.store_written);
  CHECK(test_count_files(g_dir, ".tmp") == 0, "no temporary files left in the store");
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

  identity_is_recorded();
  identity_refusals();
  bad_identities_are_refused();
  version_1_store();
  writer_serves_its_blocks();
  test_remove_tree(g_dir);
  return dl_test_summary("transport_store");
}
