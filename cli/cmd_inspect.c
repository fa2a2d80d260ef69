// distill inspect: what a safetensors file holds, and the backbone it
// describes when it is one.
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/model_flags.h"
#include "model/safetensors.h"
#include "model/vit.h"
#include "student/export_record.h"

static void print_tensors(const dl_safetensors *st, int limit) {
  printf("tensors: %d\n", st->count);
  for (int i = 0; i < st->count && (limit <= 0 || i < limit); i++) {
    const dl_st_tensor *t = &st->tensors[i];
    char shape[128];
    int k = snprintf(shape, sizeof shape, "[");
    for (int d = 0; d < t->ndim && k < (int)sizeof shape - 24; d++)
      k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    snprintf(shape + k, sizeof shape - (size_t)k, "]");
    printf("  %-56s %-5s %s\n", t->name, dl_st_dtype_name(t->dtype), shape);
  }
  if (limit > 0 && st->count > limit) printf("  ... %d more (--all lists every tensor)\n", st->count - limit);
}

static void print_backbone(const char *path, const dl_vit_overrides *ov) {
  dl_vit vit;
  dl_err err;
  dl_weights_layout layout;
  if (dl_vit_load(path, ov, &vit, &layout, &err)) {
    printf("backbone: none (%s)\n", err.msg);
    return;
  }
  const dl_vit_config *c = &vit.cfg;
  printf("backbone: DINOv2 ViT, %s names\n", dl_weights_layout_name(layout));
  printf("  patch %d, dim %d, depth %d, heads %d (head dim %d)\n", c->patch, c->dim, c->depth, c->heads,
         c->dim / c->heads);
  printf("  ffn %s, hidden %d\n", c->ffn == DL_FFN_SWIGLU ? "SwiGLU" : "MLP (GELU)", c->ffn_hidden);
  printf("  registers %d, position grid %dx%d (pretrained at %d px), interpolation %s\n", c->registers,
         c->pos_grid, c->pos_grid, c->pos_grid * c->patch,
         c->interp == DL_INTERP_LEGACY ? "legacy (offset 0.1, no antialias)" : "antialias (size, no offset)");
  printf("  parameters %zu (%.1f M)\n", dl_vit_param_count(&vit), dl_vit_param_count(&vit) / 1e6);
  dl_vit_free(&vit);
}

// An export in a student's checkpoint folder: its entry in the catalogue
// (student/export_catalog.h) when index.json is beside it, read from the
// export's record (the index is rendered from the records).
static void print_index_entry(const char *file) {
  char real[PATH_MAX], dir[PATH_MAX], index[PATH_MAX + 16], record[PATH_MAX + 64];
  if (!realpath(file, real)) return;
  snprintf(dir, sizeof dir, "%s", real);
  char *slash = strrchr(dir, '/');
  if (!slash) return;
  *slash = 0;
  const char *name = real + (slash + 1 - dir);
  long step;
  char tail[32];
  if (sscanf(name, "student-ema-%ld%31s", &step, tail) != 2 || strcmp(tail, ".safetensors") != 0) return;
  snprintf(index, sizeof index, "%s/index.json", dir);
  FILE *f = fopen(index, "r");
  if (!f) return;
  char line[4096], want[160];
  snprintf(want, sizeof want, "\"file\": \"%s\"", name);
  bool listed = false;
  while (!listed && fgets(line, sizeof line, f)) listed = strstr(line, want) != NULL;
  fclose(f);
  dl_export_record r;
  dl_err err;
  dl_export_record_path(record, sizeof record, dir, step);
  if (!listed || dl_export_record_read(record, &r, &err)) {
    printf("index: %s does not list %s%s%s\n", index, name, listed ? " (" : "", listed ? err.msg : "");
    if (listed) printf(")\n");
    return;
  }
  printf("index: %s\n", index);
  printf("  step %ld, %s phase at %d px, %ld images seen%s\n", r.step, r.hires ? "high-resolution" : "main",
         r.resolution, r.images_seen, r.final ? ", the run's final export" : "");
  printf("  architecture %s; recipe xxh64 %s\n", r.architecture, r.recipe_xxh64);
  printf("  sha256 %s, %llu bytes\n", r.sha256, (unsigned long long)r.size);
  const dl_export_eval *e = &r.eval;
  if (e->state == DL_EXPORT_EVAL_DONE) {
    printf("  evaluation: k-NN top-1 %.2f %% (k %d, T %.3g; %d train / %d test images at %d px, %.1f s)", e->knn_top1,
           e->knn_k, e->knn_temperature, e->train_n, e->test_n, e->size, e->seconds);
    if (e->has_linear) printf("; linear probe top-1 %.2f %%", e->linear_top1);
    printf("\n");
  } else if (e->state == DL_EXPORT_EVAL_FAILED) {
    printf("  evaluation: failed after %d attempts: %s\n", e->attempts, e->failure);
  } else {
    printf("  evaluation: %s\n", e->state == DL_EXPORT_EVAL_PENDING ? "pending" : "none (not chosen by eval's period)");
  }
}

int cmd_inspect(int argc, char **argv) {
  bool all = false;
  dl_model_flags mf = DL_MODEL_FLAGS_INIT;
  const dl_flag flags[] = {
      {"all", DL_FLAG_BOOL, &all, NULL, "list every tensor (default: the first 40)"},
      DL_MODEL_FLAG_ENTRIES(mf),
  };
  const dl_command_spec spec = {
      "inspect", "FILE.safetensors",
      "Shows a safetensors file's metadata and tensors and, when it holds a DINOv2\n"
      "backbone (official, timm or Hugging Face names), the architecture inferred\n"
      "from its names and shapes and the parameter count; for a student's export\n"
      "beside its checkpoints/index.json, the export's entry (step, phase, evaluations).",
      flags, sizeof flags / sizeof flags[0]};
  char *files[1];
  int nfiles = 0;
  if (dl_parse_flags(&spec, argc, argv, files, 1, &nfiles)) return 0;
  if (nfiles != 1) dl_die_input("inspect: give one file (see distill inspect --help)");
  dl_vit_overrides ov;
  dl_model_flags_overrides(&mf, &ov);
  dl_safetensors st;
  dl_err err;
  if (dl_st_open(files[0], &st, &err)) dl_die_input("%s", err.msg);
  printf("file: %s (%zu bytes)\n", files[0], st.file.size);
  for (int i = 0; i < st.meta_count; i++) printf("metadata: %s = %s\n", st.meta[i].key, st.meta[i].value);
  print_tensors(&st, all ? 0 : 40);
  dl_st_close(&st);
  print_backbone(files[0], &ov);
  print_index_entry(files[0]);
  return 0;
}
