// The spill store: blocks put come back byte-identical; the budget refuses a
// put with 1 and a drop makes room; a random mix of puts, gets and drops
// agrees with a simple model; a damaged file is an error, not a crash; old
// spill files go at open and the store's own at close.
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/transport/store_helpers.h"
#include "transport/spill_store.h"
#include "transport/store_record.h"

static char g_dir[] = "/tmp/distill-spill-XXXXXX";

static void path_in(char *out, size_t n, const char *dir, const char *name) {
  snprintf(out, n, "%s/%s", dir, name);
}

static void spill_file(char *out, size_t n, const char *dir, uint64_t block, uint32_t res) {
  char name[64];
  snprintf(name, sizeof name, "spill-%016" PRIx64 "-%u.dlsp", block, res);
  path_in(out, n, dir, name);
}

static int count_spill_files(const char *dir) { return test_count_files(dir, "spill-"); }

// Opens a spill store in the subdirectory `name` of g_dir (its path in dir);
// NULL after a failed check.
static dl_spill_store *open_in(const char *name, uint64_t budget, char *dir, size_t n) {
  path_in(dir, n, g_dir, name);
  dl_err err;
  dl_spill_store *s = dl_spill_open(dir, budget, &err);
  if (!s) CHECK(0, "open %s: %s", dir, err.msg);
  return s;
}

// What a block costs against the budget: its record.
static uint64_t record_bytes(const dl_encoded_block *e) {
  dl_store_record rec;
  dl_store_record_prepare(e, &rec);
  uint64_t n = dl_store_record_bytes(&rec);
  dl_store_record_release(&rec);
  return n;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

static void put_get_identical(void) {
  char dir[512];
  dl_spill_store *s = open_in("identical", 64u << 20, dir, sizeof dir);
  if (!s) return;
  dl_err err;
  const char *codecs[] = {"f32", "f16", "int8", "f16"};
  int levels[] = {0, 3, 0, 0};
  int same = 0;
  uint64_t bytes = 0;
  for (int i = 0; i < 4; i++) {
    dl_encoded_block *want = test_encoded_block((uint64_t)i, i == 3 ? 518 : 224, codecs[i], levels[i]);
    dl_encoded_block *got = NULL;
    bytes += record_bytes(want);
    if (dl_spill_put(s, want, &err) == 0 &&
        dl_spill_get(s, want->block, want->resolution, &got, &err) == 1 && test_same_encoded(got, want) &&
        atomic_load(&got->refs) == 1 && got->payload != want->payload)
      same++;
    dl_encoded_block_unref(got);
    dl_encoded_block_unref(want);
  }
  CHECK(same == 4, "%d of 4 blocks (f32, f16 with zstd, int8, another resolution) come back byte-identical "
        "with their checksum, each a new block of its own", same);
  CHECK(dl_spill_bytes(s) == bytes && count_spill_files(dir) == 4,
        "the store holds %" PRIu64 " bytes (the records') in %d files", dl_spill_bytes(s), count_spill_files(dir));
  dl_encoded_block *again = test_encoded_block(0, 224, "f32", 0), *got;
  CHECK(dl_spill_put(s, again, &err) == 0 && dl_spill_bytes(s) == bytes && dl_spill_stats(s).puts == 4,
        "putting a held block again writes nothing");
  CHECK(dl_spill_get(s, 9, 224, &got, &err) == 0 && !got && !dl_spill_has(s, 0, 518),
        "a block never put is absent (another resolution is another block)");
  dl_encoded_block_unref(again);
  dl_spill_close(s);
  CHECK(access(dir, F_OK) != 0, "close removes the files and the directory it created");
}

// Fills s (budget: two and a half records) past its budget, drops, fills again.
static void budget_refusals(dl_spill_store *s, const char *dir, dl_encoded_block *const b[3],
                            const uint64_t rec[3]) {
  dl_err err;
  int first = dl_spill_put(s, b[0], &err) + dl_spill_put(s, b[1], &err);
  int full = dl_spill_put(s, b[2], &err);
  CHECK(first == 0 && full == 1 && strstr(err.msg, "spill store full") && !dl_spill_has(s, 2, 224) &&
            dl_spill_bytes(s) == rec[0] + rec[1] && count_spill_files(dir) == 2 &&
            dl_spill_stats(s).full == 1,
        "a put past the budget returns 1 and writes nothing: %s", err.msg);
  char path[600];
  spill_file(path, sizeof path, dir, 0, 224);
  dl_spill_drop(s, 0, 224);
  CHECK(dl_spill_bytes(s) == rec[1] && access(path, F_OK) != 0 && !dl_spill_has(s, 0, 224),
        "a drop frees its bytes and its file");
  CHECK(dl_spill_put(s, b[2], &err) == 0 && dl_spill_has(s, 2, 224), "then the put fits");
  dl_spill_drop(s, 0, 224);
  CHECK(dl_spill_stats(s).drops == 1 && dl_spill_bytes(s) == rec[1] + rec[2],
        "dropping an absent block does nothing");
}

static void budget(void) {
  char dir[512];
  dl_encoded_block *b[3];
  uint64_t rec[3];  // differ by a byte or two: the envelope's varints
  for (int i = 0; i < 3; i++) {
    b[i] = test_encoded_block((uint64_t)i, 224, "f32", 0);
    rec[i] = record_bytes(b[i]);
  }
  dl_spill_store *s = open_in("budget", rec[0] + rec[1] + rec[2] / 2, dir, sizeof dir);
  if (s) budget_refusals(s, dir, b, rec);
  dl_spill_close(s);
  dl_err err;
  s = dl_spill_open(dir, rec[0] - 1, &err);
  int rc = s ? dl_spill_put(s, b[0], &err) : 0;
  CHECK(rc == -1 && strstr(err.msg, "more than the whole spill budget"),
        "a block larger than the whole budget is an error, not a wait for room: %s", err.msg);
  dl_spill_close(s);
  for (int i = 0; i < 3; i++) dl_encoded_block_unref(b[i]);
}

// ---- property test against a model: which blocks are held, and the bytes.

enum { kModelBlocks = 24, kModelRes = 2, kOps = 3000 };
static const uint32_t kResolutions[kModelRes] = {224, 518};

typedef struct model {
  bool held[kModelBlocks][kModelRes];
  uint64_t size[kModelBlocks][kModelRes];
  uint64_t bytes, budget;
  int count;
} model;

static uint64_t next_random(uint64_t *state) {
  *state ^= *state << 13;
  *state ^= *state >> 7;
  *state ^= *state << 17;
  return *state;
}

// Applies one random operation to both; 0 when they still agree.
static int random_step(dl_spill_store *s, model *m, uint64_t *rng) {
  int op = (int)(next_random(rng) % 3), bi = (int)(next_random(rng) % kModelBlocks);
  int ri = (int)(next_random(rng) % kModelRes);
  uint32_t res = kResolutions[ri];
  dl_err err;
  if (op == 0) {
    // zstd makes the sizes differ from block to block.
    dl_encoded_block *e = test_encoded_block((uint64_t)bi, res, "f16", 3);
    bool fits = m->held[bi][ri] || m->bytes + record_bytes(e) <= m->budget;
    int rc = dl_spill_put(s, e, &err);
    if (fits && !m->held[bi][ri]) {
      m->held[bi][ri] = true;
      m->size[bi][ri] = record_bytes(e);
      m->bytes += m->size[bi][ri];
      m->count++;
    }
    dl_encoded_block_unref(e);
    return rc != (fits ? 0 : 1);
  }
  if (op == 1) {
    dl_encoded_block *got;
    int rc = dl_spill_get(s, (uint64_t)bi, res, &got, &err);
    dl_encoded_block *want = test_encoded_block((uint64_t)bi, res, "f16", 3);
    int ok = m->held[bi][ri] ? rc == 1 && test_same_encoded(got, want) : rc == 0;
    dl_encoded_block_unref(got);
    dl_encoded_block_unref(want);
    return !ok;
  }
  dl_spill_drop(s, (uint64_t)bi, res);
  if (m->held[bi][ri]) {
    m->held[bi][ri] = false;
    m->bytes -= m->size[bi][ri];
    m->count--;
  }
  return 0;
}

static int agrees(const dl_spill_store *s, const model *m, const char *dir) {
  for (int b = 0; b < kModelBlocks; b++)
    for (int r = 0; r < kModelRes; r++)
      if (dl_spill_has(s, (uint64_t)b, kResolutions[r]) != m->held[b][r]) return 0;
  return dl_spill_bytes(s) == m->bytes && dl_spill_stats(s).blocks == (uint64_t)m->count &&
         count_spill_files(dir) == m->count;
}

static void random_operations(void) {
  char dir[512];
  model m;
  memset(&m, 0, sizeof m);
  dl_encoded_block *probe = test_encoded_block(0, 224, "f16", 3);
  m.budget = 10 * record_bytes(probe);  // room for about 10 of the 48 keys: puts get refused too
  dl_encoded_block_unref(probe);
  dl_spill_store *s = open_in("random", m.budget, dir, sizeof dir);
  if (!s) return;
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  int step = 0, bad_step = -1;
  for (; step < kOps && bad_step < 0; step++)
    if (random_step(s, &m, &rng) || (step % 50 == 0 && !agrees(s, &m, dir))) bad_step = step;
  dl_spill_counters c = dl_spill_stats(s);
  CHECK(bad_step < 0 && agrees(s, &m, dir),
        "%d random puts, gets and drops agree with the model (first disagreement: step %d; "
        "%" PRIu64 " puts, %" PRIu64 " refused, %" PRIu64 " gets, %" PRIu64 " drops)",
        step, bad_step, c.puts, c.full, c.gets, c.drops);
  CHECK(c.full > 0 && c.drops > 0 && c.gets > 0, "the mix exercised refusals, drops and gets");
  dl_spill_close(s);
}

// ---- damage on disk

static void damaged_files(void) {
  char dir[512], path[600];
  dl_spill_store *s = open_in("damaged", 64u << 20, dir, sizeof dir);
  if (!s) return;
  dl_err err;
  for (uint64_t b = 0; b < 4; b++) {
    dl_encoded_block *e = test_encoded_block(b, 224, "f16", 3);
    dl_spill_put(s, e, &err);
    dl_encoded_block_unref(e);
  }
  dl_encoded_block *got;
  spill_file(path, sizeof path, dir, 0, 224);
  test_flip_byte(path, -5, SEEK_END);
  int rc = dl_spill_get(s, 0, 224, &got, &err);
  CHECK(rc == -1 && !got && strstr(err.msg, path) && strstr(err.msg, "checksum"),
        "a flipped payload byte: %s", err.msg);
  spill_file(path, sizeof path, dir, 1, 224);
  test_flip_byte(path, 0, SEEK_SET);
  rc = dl_spill_get(s, 1, 224, &got, &err);
  CHECK(rc == -1 && !got && strstr(err.msg, "no record"), "a flipped magic byte: %s", err.msg);
  spill_file(path, sizeof path, dir, 2, 224);
  if (truncate(path, 20) != 0) perror("truncate");
  rc = dl_spill_get(s, 2, 224, &got, &err);
  CHECK(rc == -1 && !got && strstr(err.msg, "20 bytes on disk"), "a truncated file: %s", err.msg);
  spill_file(path, sizeof path, dir, 3, 224);
  unlink(path);
  rc = dl_spill_get(s, 3, 224, &got, &err);
  CHECK(rc == -1 && !got && strstr(err.msg, "cannot open"), "a removed file: %s", err.msg);
  dl_spill_drop(s, 3, 224);
  CHECK(!dl_spill_has(s, 3, 224) && dl_spill_stats(s).blocks == 3, "a block whose file is gone can still be dropped");
  dl_spill_close(s);
}

// ---- open and close

static void open_clears_old_files(void) {
  char dir[512], keep[600], old[600], path[600];
  dl_spill_store *s = open_in("reopen", 1u << 20, dir, sizeof dir);
  if (!s) return;
  dl_err err;
  path_in(keep, sizeof keep, dir, "notes.txt");
  write_text(keep, "not a spill file\n");
  spill_file(old, sizeof old, dir, 7, 224);
  write_text(old, "left by a killed teacher");
  dl_spill_store *again = dl_spill_open(dir, 1u << 20, &err);
  CHECK(again && access(old, F_OK) != 0 && access(keep, F_OK) == 0 && !dl_spill_has(again, 7, 224),
        "open removes old spill files, and only those");
  dl_encoded_block *e = test_encoded_block(1, 224, "f32", 0);
  dl_spill_put(again, e, &err);
  dl_encoded_block_unref(e);
  spill_file(path, sizeof path, dir, 1, 224);
  dl_spill_close(again);
  CHECK(access(path, F_OK) != 0 && access(keep, F_OK) == 0 && access(dir, F_OK) == 0,
        "close removes its files; a directory it did not create stays, with the other files");
  dl_spill_close(s);

  s = dl_spill_open(dir, 0, &err);
  CHECK(!s && strstr(err.msg, "budget above 0"), "a budget of 0 is refused: %s", s ? "(opened)" : err.msg);
  dl_spill_close(s);
  s = dl_spill_open(keep, 1u << 20, &err);
  CHECK(!s && strstr(err.msg, "not a directory"), "a file in the way is refused: %s", s ? "(opened)" : err.msg);
  dl_spill_close(s);
}

int main(void) {
  if (!mkdtemp(g_dir)) return 1;
  put_get_identical();
  budget();
  random_operations();
  damaged_files();
  open_clears_old_files();
  test_remove_tree(g_dir);
  return dl_test_summary("transport_spill");
}
