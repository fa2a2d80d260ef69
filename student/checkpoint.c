#include "student/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file_io.h"
#include "transport/xxhash64.h"

#define FORMAT "distill-student-checkpoint-1"

static const char *const kModNames[3] = {"student", "head0", "head1"};
static const char *const kStateNames[4] = {"", "@ema", "@adam_m", "@adam_v"};

static float *state_buf(const dl_optim_module *m, int s) {
  float *const p[4] = {m->params, m->ema, m->m, m->v};
  return p[s];
}

// Every tensor of a checkpoint in file order, with the trainer's buffer it
// maps to: modules x (params, EMA, m, v) x entries, then the two centers.
typedef struct tensor_ref {
  char name[DL_NAME_MAX + 16];
  int ndim;
  int64_t shape[4];
  size_t numel;
  float *data;
} tensor_ref;

static int list_tensors(const dl_trainer *t, tensor_ref **out) {
  int n = 2;
  for (int k = 0; k < 3; k++) n += 4 * t->mods[k].layout->count;
  tensor_ref *r = dl_calloc((size_t)n, sizeof *r);
  int i = 0;
  for (int k = 0; k < 3; k++)
    for (int s = 0; s < 4; s++)
      for (int e = 0; e < t->mods[k].layout->count; e++, i++) {
        const dl_param_entry *pe = &t->mods[k].layout->entries[e];
        snprintf(r[i].name, sizeof r[i].name, "%s%s.%s", kModNames[k], kStateNames[s], pe->name);
        r[i].ndim = pe->ndim;
        memcpy(r[i].shape, pe->shape, sizeof r[i].shape);
        r[i].numel = pe->numel;
        r[i].data = state_buf(&t->mods[k], s) + pe->offset;
      }
  for (int k = 0; k < 2; k++, i++) {
    snprintf(r[i].name, sizeof r[i].name, "center.%d", k);
    r[i].ndim = 1;
    r[i].shape[0] = dl_head_out_dim(&t->heads[k], DL_HEAD_FULL);
    r[i].numel = (size_t)r[i].shape[0];
    r[i].data = t->center[k];
  }
  *out = r;
  return n;
}

static uint64_t content_hash(const float *const *data, const size_t *numel, int n) {
  uint64_t h = 0x64697374696c6cULL;
  for (int i = 0; i < n; i++) h = dl_xxhash64(data[i], numel[i] * sizeof(float), h);
  return h;
}

static void path_for(char *out, const char *dir, const char *prefix, long step) {
  snprintf(out, DL_CKPT_PATH_MAX, "%s/%s-%010ld.safetensors", dir, prefix, step);
}

static long step_of_file(const char *name, const char *prefix, const char *suffix) {
  const size_t lp = strlen(prefix);
  if (strncmp(name, prefix, lp) != 0 || name[lp] != '-' || name[lp + 1] < '0' || name[lp + 1] > '9') return -1;
  char *end;
  long s = strtol(name + lp + 1, &end, 10);
  return strcmp(end, suffix) == 0 && s >= 0 ? s : -1;
}

static long step_of(const char *name, const char *prefix) { return step_of_file(name, prefix, ".safetensors"); }

static int cmp_desc(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return x < y ? 1 : x > y ? -1 : 0;
}

int dl_checkpoint_list_steps(const char *dir, const char *prefix, const char *suffix, long **steps) {
  DIR *d = opendir(dir);
  int n = 0, cap = 16;
  *steps = dl_malloc((size_t)cap * sizeof(long));
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));) {
    long s = step_of_file(e->d_name, prefix, suffix);
    if (s < 0) continue;
    if (n == cap) *steps = realloc(*steps, (size_t)(cap *= 2) * sizeof(long));
    if (!*steps) abort();
    (*steps)[n++] = s;
  }
  closedir(d);
  qsort(*steps, (size_t)n, sizeof(long), cmp_desc);
  return n;
}

// Steps of the checkpoints in dir, newest first.
static int list_steps(const char *dir, long **steps) { return dl_checkpoint_list_steps(dir, "ckpt", ".safetensors", steps); }

// Training checkpoints beyond the last `keep` (their exports are the catalogue's).
static void prune(const char *dir, int keep) {
  long *steps;
  int n = list_steps(dir, &steps);
  char path[DL_CKPT_PATH_MAX];
  for (int i = keep; i < n; i++) {
    path_for(path, dir, "ckpt", steps[i]);
    unlink(path);
  }
  free(steps);
}

int dl_checkpoint_export_ema(const char *path, const dl_trainer *t, const dl_st_meta *meta, int nmeta, dl_err *err) {
  const dl_optim_module *m = &t->mods[0];
  dl_st_out *o = dl_calloc((size_t)m->layout->count, sizeof *o);
  int n = 0;
  for (int e = 0; e < m->layout->count; e++) {
    const dl_param_entry *pe = &m->layout->entries[e];
    if (pe->numel == 0) continue;  // register_tokens without registers: absent from official files
    o[n].name = pe->name;
    o[n].ndim = pe->ndim;
    for (int d = 0; d < pe->ndim; d++) o[n].shape[d] = pe->shape[d];
    o[n++].data = m->ema + pe->offset;
  }
  int rc = dl_st_write_f32(path, o, n, meta, nmeta, err);
  free(o);
  return rc;
}

// What the export is, for its catalogue record (student/export_record.h).
static int write_export(const char *path, const dl_trainer *t, const dl_checkpoint_info *info, const char *recipe_text,
                        dl_err *err) {
  const dl_vit_config *v = &info->vit;
  char step[32], gsize[16], images[32], arch[160], rhash[32];
  snprintf(step, sizeof step, "%ld", info->step);
  snprintf(gsize, sizeof gsize, "%d", info->global_size);
  snprintf(images, sizeof images, "%ld", info->images_seen);
  snprintf(arch, sizeof arch, "patch=%d dim=%d depth=%d heads=%d ffn=%s ffn_hidden=%d registers=%d interp=%s", v->patch,
           v->dim, v->depth, v->heads, v->ffn == DL_FFN_SWIGLU ? "swiglu" : "mlp", v->ffn_hidden, v->registers,
           v->interp == DL_INTERP_ANTIALIAS ? "antialias" : "legacy");
  const char *text = recipe_text ? recipe_text : "";
  snprintf(rhash, sizeof rhash, "%016" PRIx64, dl_xxhash64(text, strlen(text), 0));
  const dl_st_meta meta[] = {{"format", "distill-student-export-1"}, {"step", step},
                             {"phase", info->hires ? "hires" : "main"}, {"global_size", gsize},
                             {"images_seen", images}, {"architecture", arch}, {"recipe_xxh64", rhash},
                             {"final", info->final ? "1" : "0"}};
  return dl_checkpoint_export_ema(path, t, meta, (int)(sizeof meta / sizeof meta[0]), err);
}

int dl_checkpoint_write(const char *dir, const dl_trainer *t, const dl_checkpoint_info *info, const char *recipe_text,
                        int keep, char *written_path, dl_err *err) {
  tensor_ref *refs;
  const int n = list_tensors(t, &refs);
  dl_st_out *o = dl_calloc((size_t)n, sizeof *o);
  const float **data = dl_calloc((size_t)n, sizeof *data);
  size_t *numel = dl_calloc((size_t)n, sizeof *numel);
  for (int i = 0; i < n; i++) {
    o[i].name = refs[i].name;
    o[i].ndim = refs[i].ndim;
    for (int d = 0; d < refs[i].ndim; d++) o[i].shape[d] = refs[i].shape[d];
    o[i].data = data[i] = refs[i].data;
    numel[i] = refs[i].numel;
  }
  const dl_vit_config *v = &info->vit;
  char step[32], cursor[32], hash[32], model[256], gsize[16], kind[16];
  snprintf(step, sizeof step, "%ld", info->step);
  snprintf(cursor, sizeof cursor, "%" PRIu64, info->cursor);
  snprintf(hash, sizeof hash, "%016" PRIx64, content_hash(data, numel, n));
  snprintf(model, sizeof model, "%d %d %d %d %d %d %d %d %d", v->patch, v->dim, v->depth, v->heads, v->ffn_hidden,
           v->registers, v->pos_grid, (int)v->ffn, (int)v->interp);
  snprintf(gsize, sizeof gsize, "%d", info->global_size);
  snprintf(kind, sizeof kind, "%s", info->prototypes ? "prototypes" : "features");
  const dl_st_meta meta[] = {{"format", FORMAT}, {"step", step}, {"cursor", cursor}, {"content_xxh64", hash},
                             {"model", model}, {"global_size", gsize}, {"targets", kind},
                             {"recipe", (char *)(recipe_text ? recipe_text : "")}};
  char path[DL_CKPT_PATH_MAX], export_path[DL_CKPT_PATH_MAX], latest[DL_CKPT_PATH_MAX];
  path_for(path, dir, "ckpt", info->step);
  path_for(export_path, dir, "student-ema", info->step);
  int rc = dl_st_write_f32(path, o, n, meta, (int)(sizeof meta / sizeof meta[0]), err);
  if (rc == 0) rc = write_export(export_path, t, info, recipe_text, err);
  if (rc == 0) {
    char text[64];
    int len = snprintf(text, sizeof text, "ckpt-%010ld.safetensors\n", info->step);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    dl_chunk c = {text, (size_t)len};
    rc = dl_write_file_atomic(latest, &c, 1, err);
  }
  if (rc == 0) prune(dir, keep);
  if (rc == 0 && written_path) snprintf(written_path, DL_CKPT_PATH_MAX, "%s", path);
  free(o);
  free(data);
  free(numel);
  free(refs);
  return rc;
}

static int parse_meta_long(const dl_safetensors *st, const char *key, long *out) {
  const char *s = dl_st_meta_get(st, key);
  char *end;
  if (!s) return -1;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (errno || end == s || *end || x < 0) return -1;
  *out = x;
  return 0;
}

int dl_checkpoint_open(const char *path, dl_checkpoint *ck, dl_err *err) {
  memset(ck, 0, sizeof *ck);
  snprintf(ck->path, sizeof ck->path, "%s", path);
  if (dl_st_open(path, &ck->st, err)) return -1;
  const dl_safetensors *st = &ck->st;
  const char *format = dl_st_meta_get(st, "format"), *hash = dl_st_meta_get(st, "content_xxh64");
  const char *model = dl_st_meta_get(st, "model"), *kind = dl_st_meta_get(st, "targets");
  long step, cursor, gsize;
  dl_vit_config *v = &ck->info.vit;
  int ffn, interp;
  if (!format || strcmp(format, FORMAT) != 0 || !hash || !model || !kind || parse_meta_long(st, "step", &step) ||
      parse_meta_long(st, "cursor", &cursor) || parse_meta_long(st, "global_size", &gsize) ||
      sscanf(model, "%d %d %d %d %d %d %d %d %d", &v->patch, &v->dim, &v->depth, &v->heads, &v->ffn_hidden,
             &v->registers, &v->pos_grid, &ffn, &interp) != 9) {
    dl_checkpoint_close(ck);
    return dl_fail(err, "%s: not a distill student checkpoint (metadata missing or malformed)", path);
  }
  v->ffn = (dl_ffn_kind)(ffn != 0);
  v->interp = (dl_interp_mode)(interp != 0);
  ck->info.step = step;
  ck->info.cursor = (uint64_t)cursor;
  ck->info.global_size = (int)gsize;
  ck->info.prototypes = strcmp(kind, "prototypes") == 0;
  // The content hash covers every tensor in file order.
  uint64_t h = 0x64697374696c6cULL;
  for (int i = 0; i < st->count; i++) {
    if (st->tensors[i].dtype != DL_ST_F32) {
      dl_checkpoint_close(ck);
      return dl_fail(err, "%s: tensor '%s' is not float32", path, st->tensors[i].name);
    }
  }
  // Tensors in the order they were written: by offset.
  const dl_st_tensor **order = dl_calloc((size_t)st->count, sizeof *order);
  for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
  for (int i = 1; i < st->count; i++)
    for (int j = i; j > 0 && order[j - 1]->offset > order[j]->offset; j--) {
      const dl_st_tensor *x = order[j];
      order[j] = order[j - 1], order[j - 1] = x;
    }
  for (int i = 0; i < st->count; i++) h = dl_xxhash64(order[i]->data, order[i]->nbytes, h);
  free(order);
  char want[32];
  snprintf(want, sizeof want, "%016" PRIx64, h);
  if (strcmp(want, hash) != 0) {
    dl_fail(err, "%s: corrupt checkpoint (content hash %s, the file says %.20s)", path, want, hash);
    dl_checkpoint_close(ck);  // frees the metadata `hash` points into: after the message
    return -1;
  }
  return 0;
}

int dl_checkpoint_restore(const dl_checkpoint *ck, dl_trainer *t, dl_err *err) {
  tensor_ref *refs;
  const int n = list_tensors(t, &refs);
  int rc = 0;
  if (n != ck->st.count) rc = dl_fail(err, "%s: %d tensors, this recipe's student has %d", ck->path, ck->st.count, n);
  for (int i = 0; i < n && rc == 0; i++) {
    const dl_st_tensor *x = dl_st_find(&ck->st, refs[i].name);
    if (!x) rc = dl_fail(err, "%s: no tensor '%s' (another model or target kind?)", ck->path, refs[i].name);
    else if ((size_t)x->numel != refs[i].numel)
      rc = dl_fail(err, "%s: '%s' has %lld values, this recipe's student %zu", ck->path, refs[i].name,
                   (long long)x->numel, refs[i].numel);
    else rc = dl_st_read_f32(x, refs[i].data, err);
  }
  free(refs);
  if (rc == 0) t->step = ck->info.step;
  return rc;
}

void dl_checkpoint_close(dl_checkpoint *ck) { dl_st_close(&ck->st); }

int dl_checkpoint_candidates(const char *dir, char ***paths) {
  long *steps;
  int n = list_steps(dir, &steps), k = 0;
  *paths = dl_calloc((size_t)n + 1, sizeof **paths);
  char latest[DL_CKPT_PATH_MAX], name[128] = "";
  snprintf(latest, sizeof latest, "%s/latest", dir);
  FILE *f = fopen(latest, "r");
  if (f) {
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\n")] = 0;
  }
  long first = step_of(name, "ckpt");
  if (first >= 0) {
    (*paths)[k] = dl_malloc(DL_CKPT_PATH_MAX);
    path_for((*paths)[k++], dir, "ckpt", first);
  }
  for (int i = 0; i < n; i++) {
    if (steps[i] == first) continue;
    (*paths)[k] = dl_malloc(DL_CKPT_PATH_MAX);
    path_for((*paths)[k++], dir, "ckpt", steps[i]);
  }
  free(steps);
  return k;
}

void dl_checkpoint_candidates_free(char **paths, int n) {
  for (int i = 0; i < n; i++) free(paths[i]);
  free(paths);
}
