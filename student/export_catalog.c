#include "student/export_catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_io.h"
#include "common/sha256.h"
#include "model/safetensors.h"
#include "student/checkpoint.h"

#define INDEX_FORMAT "distill-export-index-1"
#define PATH_CAP 1400

// Retention and the links, then index.json (after every change below).
static int retain(dl_export_catalog *c, dl_err *err);
static int write_index(dl_export_catalog *c, dl_err *err);

static const char *const kMetricNames[] = {"knn_top1", "linear_top1"};

static int render_index(const dl_export_catalog *c, char **text, size_t *len, dl_err *err);

double dl_export_metric(const dl_export_record *r, int metric) {
  if (r->eval.state != DL_EXPORT_EVAL_DONE) return -1;
  if (metric == DL_EVAL_LINEAR_TOP1) return r->eval.has_linear ? r->eval.linear_top1 : -1;
  return r->eval.knn_top1;
}

static dl_export_record *find(dl_export_catalog *c, long step) {
  for (int i = 0; i < c->n; i++)
    if (c->recs[i].step == step) return &c->recs[i];
  return NULL;
}

// Inserted in step order (a step already there is replaced).
static dl_export_record *insert(dl_export_catalog *c, const dl_export_record *r) {
  dl_export_record *have = find(c, r->step);
  if (have) return *have = *r, have;
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 16;
    c->recs = realloc(c->recs, (size_t)c->cap * sizeof *c->recs);
    if (!c->recs) abort();
  }
  int i = c->n++;
  for (; i > 0 && c->recs[i - 1].step > r->step; i--) c->recs[i] = c->recs[i - 1];
  c->recs[i] = *r;
  return &c->recs[i];
}

static void remove_at(dl_export_catalog *c, int i) {
  memmove(&c->recs[i], &c->recs[i + 1], (size_t)(c->n - i - 1) * sizeof *c->recs);
  c->n--;
}

static const char *meta_or(const dl_safetensors *st, const char *key) {
  const char *v = dl_st_meta_get(st, key);
  return v ? v : "";
}

// A record for the export of `step` from its metadata (the recipe's plan
// when an older export has none) and its bytes.
static int record_from_export(const dl_export_catalog *c, long step, dl_export_record *r, dl_err *err) {
  memset(r, 0, sizeof *r);
  r->step = step;
  snprintf(r->file, sizeof r->file, "student-ema-%010ld.safetensors", step);
  char path[PATH_CAP];
  snprintf(path, sizeof path, "%s/%s", c->dir, r->file);
  dl_safetensors st;
  if (dl_st_open(path, &st, err)) return -1;
  const dl_recipe *rc = c->recipe;
  const char *phase = meta_or(&st, "phase");
  r->hires = phase[0] ? strcmp(phase, "hires") == 0 : rc->hires.steps > 0 && step > rc->train.steps;
  r->resolution = atoi(meta_or(&st, "global_size"));
  if (r->resolution <= 0) r->resolution = r->hires ? rc->hires.size : rc->crops.global_size;
  r->images_seen = atol(meta_or(&st, "images_seen"));
  if (r->images_seen <= 0) r->images_seen = step * (long)rc->train.batch;
  snprintf(r->architecture, sizeof r->architecture, "%s", meta_or(&st, "architecture"));
  snprintf(r->recipe_xxh64, sizeof r->recipe_xxh64, "%s", meta_or(&st, "recipe_xxh64"));
  if (strlen(r->recipe_xxh64) != 16) snprintf(r->recipe_xxh64, sizeof r->recipe_xxh64, "0000000000000000");
  if (!r->architecture[0]) snprintf(r->architecture, sizeof r->architecture, "unknown");
  r->final = strcmp(meta_or(&st, "final"), "1") == 0 || step >= c->total_steps;
  // The digest of the bytes already mapped, not of a second read of the file.
  dl_sha256_bytes(st.file.data, st.file.size, r->sha256);
  r->size = st.file.size;
  dl_st_close(&st);
  return 0;
}

// Record files whose export is gone (removed by hand, or a crash between the two unlinks).
static void remove_orphan_records(dl_export_catalog *c) {
  long *steps;
  const int n = dl_checkpoint_list_steps(c->dir, "student-ema", ".record", &steps);
  for (int i = 0; i < n; i++) {
    if (find(c, steps[i])) continue;
    char path[PATH_CAP];
    dl_export_record_path(path, sizeof path, c->dir, steps[i]);
    unlink(path);
  }
  free(steps);
}

static bool file_size_is(const char *path, uint64_t size) {
  struct stat sb;
  return stat(path, &sb) == 0 && (uint64_t)sb.st_size == size;
}

// The record of an export already in the folder: its record file when that
// is whole and describes this file, else one rebuilt from the export (its
// evaluation, if the recipe has one, to be run again). *rebuilt counts those.
static int load_one(dl_export_catalog *c, long step, int *rebuilt, dl_err *err) {
  char rpath[PATH_CAP], epath[PATH_CAP];
  dl_export_record r;
  dl_err why;
  dl_export_record_path(rpath, sizeof rpath, c->dir, step);
  snprintf(epath, sizeof epath, "%s/student-ema-%010ld.safetensors", c->dir, step);
  if (dl_export_record_read(rpath, &r, &why) == 0 && r.step == step && file_size_is(epath, r.size)) {
    insert(c, &r);
    return 0;
  }
  if (record_from_export(c, step, &r, err)) return -1;
  if (c->recipe->eval.present) r.eval.state = DL_EXPORT_EVAL_PENDING;
  (*rebuilt)++;
  insert(c, &r);
  return dl_export_record_write(c->dir, &r, err);
}

int dl_export_catalog_open(dl_export_catalog *c, const char *dir, const char *family, const dl_recipe *recipe,
                           long total_steps, dl_err *err) {
  memset(c, 0, sizeof *c);
  snprintf(c->dir, sizeof c->dir, "%s", dir);
  snprintf(c->family, sizeof c->family, "%s", family);
  dl_export_clean_text(c->family, '_');  // a name for JSON without escapes
  c->recipe = recipe;
  c->total_steps = total_steps;
  long *steps;  // newest first
  const int n = dl_checkpoint_list_steps(dir, "student-ema", ".safetensors", &steps);
  int rebuilt = 0, rc = 0;
  for (int i = n - 1; i >= 0 && rc == 0; i--) {
    rc = load_one(c, steps[i], &rebuilt, err);
    if (rc) {  // an unreadable export: say so and leave it out of the index
      fprintf(stderr, "distill: student: %s; not in the index\n", err->msg);
      rc = 0;
    }
  }
  free(steps);
  remove_orphan_records(c);
  for (int i = c->n - 1; i >= 0 && c->recs[i].eval.state == DL_EXPORT_EVAL_NONE; i--) c->since_scheduled++;
  // Is index.json what the records say? If not, it is replaced (and the log says why).
  char ipath[PATH_CAP], *text;
  size_t len;
  snprintf(ipath, sizeof ipath, "%s/index.json", dir);
  if (render_index(c, &text, &len, err)) return -1;
  dl_mapped_file before;
  const bool had = dl_map_file(ipath, &before, err) == 0;
  const bool same = had && before.size == len && memcmp(before.data, text, len) == 0;
  if (had) dl_unmap_file(&before);
  if (!same) {
    snprintf(c->rebuilt, sizeof c->rebuilt, "index.json %s: rebuilt from %d exports (%d records rebuilt from the files)",
             !had ? "missing" : "corrupt or stale", c->n, rebuilt);
    dl_chunk chunk = {text, len};
    rc = dl_write_file_atomic(ipath, &chunk, 1, err);
  }
  free(text);
  return rc;
}

void dl_export_catalog_close(dl_export_catalog *c) {
  free(c->recs);
  c->recs = NULL;
  c->n = c->cap = 0;
}

// Whether the eval period chooses the export of `step` (the final one always).
static bool chosen_for_eval(dl_export_catalog *c, const dl_export_record *r) {
  const dl_recipe_eval *e = &c->recipe->eval;
  if (!e->present) return false;
  if (r->final) return true;
  if (e->every_steps > 0) {
    // The last export chosen before this one: among the records, or one
    // retention has removed since.
    long last = c->last_scheduled < r->step ? c->last_scheduled : 0;
    for (int i = 0; i < c->n; i++)
      if (c->recs[i].eval.state != DL_EXPORT_EVAL_NONE && c->recs[i].step < r->step && c->recs[i].step > last)
        last = c->recs[i].step;
    return r->step - last >= e->every_steps;
  }
  return c->since_scheduled + 1 >= e->every_exports;
}

int dl_export_catalog_add(dl_export_catalog *c, long step, dl_err *err) {
  dl_export_record r;
  if (record_from_export(c, step, &r, err)) return -1;
  const bool chosen = chosen_for_eval(c, &r);
  r.eval.state = chosen ? DL_EXPORT_EVAL_PENDING : DL_EXPORT_EVAL_NONE;
  c->since_scheduled = chosen ? 0 : c->since_scheduled + 1;
  if (chosen) c->last_scheduled = step;
  insert(c, &r);
  if (dl_export_record_write(c->dir, &r, err)) return -1;
  return retain(c, err);
}

dl_export_record *dl_export_catalog_next_pending(dl_export_catalog *c) {
  for (int i = 0; i < c->n; i++)
    if (c->recs[i].eval.state == DL_EXPORT_EVAL_PENDING) return &c->recs[i];
  return NULL;
}

int dl_export_catalog_pending_count(const dl_export_catalog *c) {
  int k = 0;
  for (int i = 0; i < c->n; i++) k += c->recs[i].eval.state == DL_EXPORT_EVAL_PENDING;
  return k;
}

int dl_export_catalog_started(dl_export_catalog *c, long step, dl_err *err) {
  dl_export_record *r = find(c, step);
  if (!r) return 0;
  r->eval.attempts++;
  if (dl_export_record_write(c->dir, r, err)) return -1;
  return write_index(c, err);
}

int dl_export_catalog_set_eval(dl_export_catalog *c, long step, const dl_export_eval *result, dl_err *err) {
  dl_export_record *r = find(c, step);
  if (!r) return 0;  // removed meanwhile
  const int attempts = r->eval.attempts;
  r->eval = *result;
  r->eval.attempts = attempts;
  // One more try after a first failure (a killed or crashed evaluation).
  if (result->state == DL_EXPORT_EVAL_FAILED && attempts < 2) r->eval.state = DL_EXPORT_EVAL_PENDING;
  if (dl_export_record_write(c->dir, r, err)) return -1;
  return retain(c, err);
}

const dl_export_record *dl_export_catalog_best(const dl_export_catalog *c) {
  const int metric = c->recipe->checkpoint.best_metric;
  const dl_export_record *best = NULL;
  for (int i = 0; i < c->n; i++) {  // ties: the later export
    const double m = dl_export_metric(&c->recs[i], metric);
    if (m >= 0 && (!best || m >= dl_export_metric(best, metric))) best = &c->recs[i];
  }
  return best;
}

// Among the best `keep_best` by the metric (evaluated exports only).
static bool among_best(const dl_export_catalog *c, int i) {
  const int metric = c->recipe->checkpoint.best_metric;
  const double m = dl_export_metric(&c->recs[i], metric);
  if (m < 0) return false;
  int better = 0;
  for (int j = 0; j < c->n; j++) {
    const double o = dl_export_metric(&c->recs[j], metric);
    better += o > m || (o == m && c->recs[j].step > c->recs[i].step);
  }
  return better < c->recipe->checkpoint.keep_best;
}

// `name` -> target, replaced atomically (a new link renamed over the old one).
static int set_link(const char *dir, const char *name, const char *target, dl_err *err) {
  char link[PATH_CAP], tmp[PATH_CAP + 32];
  snprintf(link, sizeof link, "%s/%s", dir, name);
  if (!target) {
    unlink(link);
    return 0;
  }
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", link, (long)getpid());
  unlink(tmp);
  if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
    unlink(tmp);
    return dl_fail(err, "%s: cannot update the link (%s)", link, strerror(errno));
  }
  return 0;
}

static int retain(dl_export_catalog *c, dl_err *err) {
  const int keep = c->recipe->checkpoint.keep;
  for (int i = c->n - 1; i >= 0; i--) {
    const dl_export_record *r = &c->recs[i];
    const bool last_n = i >= c->n - keep;
    if (last_n || r->final || r->eval.state == DL_EXPORT_EVAL_PENDING || among_best(c, i)) continue;
    char path[PATH_CAP];
    snprintf(path, sizeof path, "%s/%s", c->dir, r->file);
    unlink(path);
    dl_export_record_path(path, sizeof path, c->dir, r->step);
    unlink(path);
    remove_at(c, i);
  }
  const dl_export_record *best = dl_export_catalog_best(c);
  if (set_link(c->dir, "student-ema-best.safetensors", best ? best->file : NULL, err) ||
      set_link(c->dir, "student-ema-latest.safetensors", c->n ? c->recs[c->n - 1].file : NULL, err))
    return -1;
  return write_index(c, err);
}

static int render_index(const dl_export_catalog *c, char **text, size_t *len, dl_err *err) {
  *text = NULL;
  *len = 0;
  FILE *f = open_memstream(text, len);
  if (!f) return dl_fail(err, "cannot render the index");
  const dl_recipe_checkpoint *k = &c->recipe->checkpoint;
  const dl_export_record *best = dl_export_catalog_best(c);
  fprintf(f, "{\n  \"format\": \"" INDEX_FORMAT "\",\n  \"family\": \"%s\",\n", c->family);
  fprintf(f, "  \"retention\": {\"keep_last\": %d, \"keep_best\": %d, \"best_metric\": \"%s\", \"keep_final\": true},\n",
          k->keep, c->recipe->eval.present ? k->keep_best : 0, kMetricNames[k->best_metric]);
  fprintf(f, "  \"best\": %s%s%s,\n", best ? "\"" : "", best ? best->file : "null", best ? "\"" : "");
  fprintf(f, "  \"latest\": %s%s%s,\n", c->n ? "\"" : "", c->n ? c->recs[c->n - 1].file : "null", c->n ? "\"" : "");
  // One export per line, so that a line-oriented reader (distill inspect,
  // grep) finds an export's entry by its file name.
  fprintf(f, "  \"exports\": [\n");
  for (int i = 0; i < c->n; i++) {
    fprintf(f, "    ");
    dl_export_record_json(f, &c->recs[i]);
    fprintf(f, "%s\n", i + 1 < c->n ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  fclose(f);
  return 0;
}

static int write_index(dl_export_catalog *c, dl_err *err) {
  char *text;
  size_t len;
  if (render_index(c, &text, &len, err)) return -1;
  char path[PATH_CAP];
  snprintf(path, sizeof path, "%s/index.json", c->dir);
  dl_chunk chunk = {text, len};
  const int rc = dl_write_file_atomic(path, &chunk, 1, err);
  free(text);
  return rc;
}
