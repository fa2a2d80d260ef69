#include "student/export_record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/file_io.h"

#define RECORD_FORMAT "distill-export-record-1"

static const char *const kStates[] = {"none", "pending", "done", "failed"};

const char *dl_export_phase_name(const dl_export_record *r) { return r->hires ? "hires" : "main"; }

void dl_export_record_path(char *out, size_t cap, const char *dir, long step) {
  snprintf(out, cap, "%s/student-ema-%010ld.record", dir, step);
}

void dl_export_clean_text(char *s, char with) {
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\') *s = with;
}

int dl_export_record_write(const char *dir, const dl_export_record *r, dl_err *err) {
  char text[2048], failure[sizeof r->eval.failure];
  snprintf(failure, sizeof failure, "%s", r->eval.failure);
  dl_export_clean_text(failure, ' ');  // failure reasons come from other processes' output
  const dl_export_eval *e = &r->eval;
  int n = snprintf(text, sizeof text,
                   "format " RECORD_FORMAT "\nstep %ld\nfile %s\nsha256 %s\nsize %" PRIu64 "\nphase %s\n"
                   "resolution %d\nimages_seen %ld\narchitecture %s\nrecipe_xxh64 %s\nfinal %d\neval %s\n"
                   "attempts %d\nknn_top1 %.4f\nknn_k %d\nknn_temperature %.6g\nlinear %d\nlinear_top1 %.4f\n"
                   "eval_train %d\neval_test %d\neval_size %d\neval_seconds %.3f\nfailure %s\n",
                   r->step, r->file, r->sha256, r->size, dl_export_phase_name(r), r->resolution, r->images_seen,
                   r->architecture, r->recipe_xxh64, r->final, kStates[e->state], e->attempts, e->knn_top1, e->knn_k,
                   e->knn_temperature, e->has_linear, e->linear_top1, e->train_n, e->test_n, e->size, e->seconds,
                   failure);
  char path[1400];
  dl_export_record_path(path, sizeof path, dir, r->step);
  dl_chunk c = {text, (size_t)n};
  return dl_write_file_atomic(path, &c, 1, err);
}

static bool parse_long(const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || end == v || *end || x < lo || x > hi) return false;
  *out = x;
  return true;
}

static bool parse_double(const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno || end == v || *end || !(x >= lo && x <= hi)) return false;
  *out = x;
  return true;
}

static bool is_hex(const char *s, size_t n) {
  if (strlen(s) != n) return false;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return false;
  return true;
}

static bool copy_text(char *dst, size_t cap, const char *v) {
  if (strlen(v) >= cap) return false;
  snprintf(dst, cap, "%s", v);
  return true;
}

// One `key value` line into the record; false when the key is unknown or the value bad.
static bool parse_field(dl_export_record *r, const char *k, const char *v, unsigned *seen) {
  static const char *const kKeys[] = {"format", "step", "file", "sha256", "size", "phase", "resolution",
                                      "images_seen", "architecture", "recipe_xxh64", "final", "eval", "attempts",
                                      "knn_top1", "knn_k", "knn_temperature", "linear", "linear_top1", "eval_train",
                                      "eval_test", "eval_size", "eval_seconds", "failure", NULL};
  int i = 0;
  while (kKeys[i] && strcmp(kKeys[i], k) != 0) i++;
  if (!kKeys[i]) return false;
  *seen |= 1u << i;
  dl_export_eval *e = &r->eval;
  long x;
  switch (i) {
    case 0: return strcmp(v, RECORD_FORMAT) == 0;
    case 1: return parse_long(v, 0, 1L << 50, &r->step);
    case 2: return copy_text(r->file, sizeof r->file, v) && strchr(v, '/') == NULL;
    case 3: return is_hex(v, 64) && copy_text(r->sha256, sizeof r->sha256, v);
    case 4: return parse_long(v, 0, 1L << 50, &x) && (r->size = (uint64_t)x, true);
    case 5: return (r->hires = strcmp(v, "hires") == 0) || strcmp(v, "main") == 0;
    case 6: return parse_long(v, 1, 1 << 20, &x) && (r->resolution = (int)x, true);
    case 7: return parse_long(v, 0, 1L << 60, &r->images_seen);
    case 8: return copy_text(r->architecture, sizeof r->architecture, v);
    case 9: return is_hex(v, 16) && copy_text(r->recipe_xxh64, sizeof r->recipe_xxh64, v);
    case 10: return parse_long(v, 0, 1, &x) && (r->final = x, true);
    case 11:
      for (int s = 0; s < 4; s++)
        if (strcmp(v, kStates[s]) == 0) return e->state = (dl_export_eval_state)s, true;
      return false;
    case 12: return parse_long(v, 0, 1000, &x) && (e->attempts = (int)x, true);
    case 13: return parse_double(v, 0, 100, &e->knn_top1);
    case 14: return parse_long(v, 0, 100, &x) && (e->knn_k = (int)x, true);
    case 15: return parse_double(v, 0, 100, &e->knn_temperature);
    case 16: return parse_long(v, 0, 1, &x) && (e->has_linear = x, true);
    case 17: return parse_double(v, 0, 100, &e->linear_top1);
    case 18: return parse_long(v, 0, 1L << 40, &x) && (e->train_n = (int)x, true);
    case 19: return parse_long(v, 0, 1L << 40, &x) && (e->test_n = (int)x, true);
    case 20: return parse_long(v, 0, 1 << 20, &x) && (e->size = (int)x, true);
    case 21: return parse_double(v, 0, 1e9, &e->seconds);
    default: return copy_text(e->failure, sizeof e->failure, v);
  }
}

int dl_export_record_read(const char *path, dl_export_record *r, dl_err *err) {
  memset(r, 0, sizeof *r);
  FILE *f = fopen(path, "r");
  if (!f) return dl_fail(err, "%s: cannot open", path);
  char line[1024];
  unsigned seen = 0;
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    const size_t len = strcspn(line, "\n");
    if (line[len] != '\n') rc = dl_fail(err, "%s:%d: line too long or not ended", path, lineno);
    line[len] = 0;
    char *sp = strchr(line, ' ');
    if (rc == 0 && !sp) rc = dl_fail(err, "%s:%d: expected 'key value'", path, lineno);
    if (rc == 0) {
      *sp = 0;
      if (!parse_field(r, line, sp + 1, &seen)) rc = dl_fail(err, "%s:%d: bad field '%s'", path, lineno, line);
    }
  }
  fclose(f);
  if (rc == 0 && seen != (1u << 23) - 1) rc = dl_fail(err, "%s: fields missing (a truncated record?)", path);
  return rc;
}

void dl_export_record_json(FILE *f, const dl_export_record *r) {
  const dl_export_eval *e = &r->eval;
  fprintf(f,
          "{\"step\": %ld, \"phase\": \"%s\", \"resolution\": %d, \"images_seen\": %ld, \"architecture\": \"%s\", "
          "\"file\": \"%s\", \"sha256\": \"%s\", \"size\": %" PRIu64 ", \"recipe_xxh64\": \"%s\", \"final\": %s, "
          "\"evaluation\": ",
          r->step, dl_export_phase_name(r), r->resolution, r->images_seen, r->architecture, r->file, r->sha256,
          r->size, r->recipe_xxh64, r->final ? "true" : "false");
  switch (e->state) {
    case DL_EXPORT_EVAL_NONE: fprintf(f, "null}"); break;
    case DL_EXPORT_EVAL_PENDING: fprintf(f, "{\"status\": \"pending\", \"attempts\": %d}}", e->attempts); break;
    case DL_EXPORT_EVAL_FAILED: {
      char reason[sizeof e->failure];
      snprintf(reason, sizeof reason, "%s", e->failure);
      dl_export_clean_text(reason, ' ');
      fprintf(f, "{\"status\": \"failed\", \"attempts\": %d, \"reason\": \"%s\"}}", e->attempts, reason);
      break;
    }
    case DL_EXPORT_EVAL_DONE:
      fprintf(f, "{\"status\": \"done\", \"knn\": {\"top1\": %.2f, \"k\": %d, \"temperature\": %.6g}, ", e->knn_top1,
              e->knn_k, e->knn_temperature);
      if (e->has_linear) fprintf(f, "\"linear\": {\"top1\": %.2f}, ", e->linear_top1);
      fprintf(f, "\"train_images\": %d, \"test_images\": %d, \"size\": %d, \"seconds\": %.1f}}", e->train_n,
              e->test_n, e->size, e->seconds);
      break;
  }
}
