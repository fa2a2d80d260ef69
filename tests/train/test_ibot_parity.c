// iBOT with patch selection against DINOv3's formulation
// (tests/ref/gen_ibot_select.py, PyTorch): on a fixed batch of patch tokens
// and teacher bottlenecks with fixed masks (written in the reference file),
// the trainer's iBOT part (dl_trainer_ibot_select + dl_trainer_ibot_loss, as
// dl_trainer_step runs them) gives the loss, the gradient with respect to
// every patch token and the iBOT head's gradients within 1e-5 relative; the
// rows not selected get exactly 0. The same inputs with every patch scored
// (`ibot_patches: all`) against the same formulas with full masks. The
// collate's per-crop counts (float32 linspace in torch) against
// dl_mask_counts for a table of sizes, and the selection's size against
// dl_ibot_selected_upper_bound.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/train_step.h"
#include "tests/harness.h"
#include "tests/train/ref_util.h"

enum { G = 2, B = 4, GRID = 6, P = GRID * GRID, D = 32, HIDDEN = 48, BN = 16, TBN = 24, K = 64 };
#define TOL 1e-5

static void train_config(dl_train_config *c, bool selected) {
  const dl_head_config h = {.in_dim = D, .hidden_dim = HIDDEN, .out_dim = BN, .nlayers = 3, .prototypes = K};
  *c = (dl_train_config){.mode = DL_TRAIN_PROTOTYPES, .batch = B, .global_crops = G, .local_crops = 0,
                         .global_size = GRID * 4, .local_size = 8, .weights = dl_loss_weights_default(),
                         .student_temp = 0.1f, .sinkhorn = true, .sk_iters = 3, .dino_head = h, .ibot_head = h,
                         .adamw = dl_adamw_config_default()};
  c->ibot = (dl_ibot_select){.selected = selected, .probability = 0.5f, .ratio_lo = 0.1f, .ratio_hi = 0.5f};
}

// One case: the trainer's iBOT part against `case_name`.* of the file.
static void run_case(const dl_safetensors *st, const char *case_name, bool selected, const dl_head teacher[2]) {
  dl_vit vit;
  const dl_vit_config vc = {.patch = 4, .dim = D, .depth = 1, .heads = 2, .ffn_hidden = 64, .pos_grid = GRID,
                            .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  dl_vit_init_empty(&vit, &vc);
  dl_train_config cfg;
  train_config(&cfg, selected);
  dl_trainer t;
  dl_err err;
  int rc = dl_trainer_init(&t, &vit, &cfg, &teacher[0], &teacher[1], 1, &err);
  CHECK(rc == 0, "%s: trainer init (%s)", case_name, rc ? err.msg : "ok");
  if (rc) return dl_vit_free(&vit);
  const int loaded = ref_load_layout(st, "ibot_head", &t.heads[1].layout, t.heads[1].params);
  CHECK(loaded == t.heads[1].layout.count, "%s: %d of %d iBOT head tensors loaded", case_name, loaded,
        t.heads[1].layout.count);
  float *tokens = ref_read(st, "input.patch_tokens", NULL), *tpatch = ref_read(st, "input.teacher_patch", NULL);
  float *maskf = ref_read(st, "input.masks", NULL);
  bool masks[G * B * P];
  int want = 0;
  for (int i = 0; i < G * B * P; i++) want += masks[i] = maskf && maskf[i] != 0.0f;
  memcpy(t.crops.patch_g, tokens, sizeof(float) * G * B * P * D);
  const int m = dl_trainer_ibot_select(&t, selected ? masks : NULL);
  CHECK(m == (selected ? want : G * B * P) && m == t.ibot_rows,
        "%s: %d rows scored, the reference's %d; the trainer's buffers hold %d rows (of %d patches)", case_name, m,
        selected ? want : G * B * P, t.ibot_rows, G * B * P);
  dl_optim_zero_grad(&t.mods[2]);
  const dl_train_batch batch = {.teacher_patch = tpatch};
  const float loss = dl_trainer_ibot_loss(&t, &batch, 0.07f);
  char name[96];
  snprintf(name, sizeof name, "%s.loss", case_name);
  ref_compare(st, name, &loss, 1, TOL);
  snprintf(name, sizeof name, "%s.grad_patch_tokens", case_name);
  ref_compare(st, name, t.crops.d_patch_g, (size_t)G * B * P * D, TOL);
  if (selected) {
    size_t nonzero = 0;
    for (int r = 0; r < G * B * P; r++)
      for (int j = 0; j < D && !masks[r]; j++) nonzero += t.crops.d_patch_g[(size_t)r * D + j] != 0.0f;
    CHECK(nonzero == 0, "%s: the %d rows not selected have gradient exactly 0 (%zu nonzero values)", case_name,
          G * B * P - want, nonzero);
  }
  const dl_vit_layout *l = &t.heads[1].layout;
  for (int i = 0; i < l->count; i++) {
    snprintf(name, sizeof name, "%s.grad.ibot_head.%s", case_name, l->entries[i].name);
    ref_compare(st, name, t.mods[2].grads + l->entries[i].offset, l->entries[i].numel, TOL);
  }
  free(tokens), free(tpatch), free(maskf);
  dl_trainer_free(&t);
  dl_vit_free(&vit);
}

// The collate's counts per masked crop, from torch, against dl_mask_counts.
static void check_counts(const dl_safetensors *st) {
  const int crops[] = {2, 4, 8, 10, 16, 32, 64, 128}, patches[] = {16, 36, 196, 256, 1024, 1369};
  int tables = 0, equal = 0, bounds = 0;
  for (size_t a = 0; a < sizeof crops / sizeof crops[0]; a++)
    for (size_t b = 0; b < sizeof patches / sizeof patches[0]; b++) {
      char name[64];
      snprintf(name, sizeof name, "collate.counts.%d.%d", crops[a], patches[b]);
      size_t n = 0;
      float *ref = ref_read(st, name, &n);
      if (!ref) continue;
      tables++;
      int got[128];
      const int m = dl_mask_counts(crops[a], patches[b], 0.5f, 0.1f, 0.5f, got);
      int same = (size_t)m == n, sum = 0;
      for (int i = 0; i < m && same; i++) same = got[i] == (int)ref[i], sum += got[i];
      equal += same;
      bounds += same && sum == dl_ibot_selected_upper_bound(crops[a], patches[b], 0.5f, 0.1f, 0.5f);
      free(ref);
    }
  CHECK(tables == 48 && equal == tables && bounds == tables,
        "collate counts per masked crop equal torch's int(N * linspace(0.1, 0.5, n + 1)[i + 1]) in %d of %d tables "
        "(2 to 128 crops, 16 to 1369 patches); their sums equal the upper bound in %d", equal, tables, bounds);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s ibot_select.safetensors\n", argv[0]);
    return 2;
  }
  dl_safetensors st;
  dl_err err;
  int rc = dl_st_open(argv[1], &st, &err);
  CHECK(rc == 0, "open %s%s%s", argv[1], rc ? ": " : "", rc ? err.msg : "");
  if (rc) return dl_test_summary("test_ibot_parity");
  // The teacher's heads: only the iBOT head's last layer is used (the DINO
  // head only has to exist with the same prototypes).
  const dl_head_config tc = {.in_dim = 8, .hidden_dim = 8, .out_dim = TBN, .nlayers = 2, .prototypes = K};
  dl_head teacher[2];
  for (int k = 0; k < 2; k++) dl_head_init(&teacher[k], &tc);
  const int loaded = ref_load_layout(&st, "teacher_ibot", &teacher[1].layout, teacher[1].params);
  CHECK(loaded == 2, "the teacher's iBOT last layer loaded (%d tensors; bottleneck %d, the student's %d)", loaded, TBN,
        BN);
  run_case(&st, "selected", true, teacher);
  run_case(&st, "all", false, teacher);
  check_counts(&st);
  for (int k = 0; k < 2; k++) dl_head_free(&teacher[k]);
  dl_st_close(&st);
  return dl_test_summary("test_ibot_parity");
}
