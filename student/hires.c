#include "student/hires.h"

#include <string.h>

#include "model/pos_embed.h"

static void resize_pos(float *dst, const float *src, const dl_vit_config *from, int grid, int clamp) {
  const int D = from->dim;
  memcpy(dst, src, (size_t)D * sizeof(float));  // the class position
  if (grid == from->pos_grid) {  // a phase at the same size: the table as it is, as the official forward uses it
    memcpy(dst + D, src + D, (size_t)grid * grid * D * sizeof(float));
    return;
  }
  dl_pos_embed_resize(dst + D, src + D, from->pos_grid, D, grid, grid, from->interp);
  if (clamp)
    for (size_t i = D; i < (size_t)(1 + grid * grid) * D; i++)
      if (dst[i] < 0.0f) dst[i] = 0.0f;
}

static void copy_heads_state(const dl_trainer *t, dl_trainer *out) {
  for (int k = 1; k < 3; k++) {
    const dl_optim_module *a = &t->mods[k];
    dl_optim_module *b = &out->mods[k];
    const size_t n = a->layout->total * sizeof(float);
    memcpy(b->params, a->params, n);
    memcpy(b->ema, a->ema, n);
    memcpy(b->m, a->m, n);
    memcpy(b->v, a->v, n);
  }
  for (int k = 0; k < 2; k++)
    memcpy(out->center[k], t->center[k], (size_t)dl_head_out_dim(&t->heads[k], DL_HEAD_FULL) * sizeof(float));
}

int dl_hires_switch(const dl_trainer *t, const dl_train_config *tc, dl_vit *out_vit, dl_trainer *out, dl_err *err) {
  const dl_vit *s = t->student;
  const int new_size = tc->global_size;
  if (new_size % s->cfg.patch) return dl_fail(err, "hires: size %d is not a multiple of the patch %d", new_size, s->cfg.patch);
  dl_vit_config cfg = s->cfg;
  cfg.pos_grid = new_size / s->cfg.patch;
  dl_vit_init_empty(out_vit, &cfg);
  if (dl_trainer_init(out, out_vit, tc, t->teacher_last[0], t->teacher_last[1], 0, err)) {
    dl_vit_free(out_vit);
    return -1;
  }
  const dl_optim_module *a = &t->mods[0];
  dl_optim_module *b = &out->mods[0];
  const int pos = dl_vit_global_index(DL_P_POS);
  for (int e = 0; e < s->layout.count; e++) {
    const dl_param_entry *from = &s->layout.entries[e], *to = &out_vit->layout.entries[e];
    const float *src[4] = {a->params, a->ema, a->m, a->v};
    float *dst[4] = {b->params, b->ema, b->m, b->v};
    for (int k = 0; k < 4; k++) {
      if (e == pos) resize_pos(dst[k] + to->offset, src[k] + from->offset, &s->cfg, cfg.pos_grid, k == 3);
      else memcpy(dst[k] + to->offset, src[k] + from->offset, from->numel * sizeof(float));
    }
  }
  copy_heads_state(t, out);
  out->step = t->step;
  return 0;
}
