#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

dl_adamw_config dl_adamw_config_default(void) {
  return (dl_adamw_config){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .layer_decay = 1.0f,
                           .patch_embed_lr_mult = 1.0f, .clip = 0.0f};
}

static float *zeros(size_t n) {
  float *p = dl_aligned_alloc(n * sizeof(float));
  memset(p, 0, n * sizeof(float));
  return p;
}

void dl_param_groups_init(dl_param_group *groups, const dl_vit_layout *layout, int depth,
                          const dl_adamw_config *cfg) {
  for (int i = 0; i < layout->count; i++) {
    const dl_param_entry *e = &layout->entries[i];
    dl_param_group *g = &groups[i];
    g->lr_mult = e->layer_id >= 0 ? (float)pow(cfg->layer_decay, depth + 1 - e->layer_id) : 1.0f;
    if (strncmp(e->name, "patch_embed", 11) == 0) g->lr_mult *= cfg->patch_embed_lr_mult;
    g->wd_mult = e->no_weight_decay ? 0.0f : 1.0f;
    g->is_last_layer = strstr(e->name, "last_layer") != NULL;
    g->frozen = false;
  }
}

void dl_optim_module_init(dl_optim_module *mod, const dl_vit_layout *layout, float *params, int depth,
                          const dl_adamw_config *cfg) {
  mod->layout = layout;
  mod->params = params;
  mod->grads = zeros(layout->total);
  mod->m = zeros(layout->total);
  mod->v = zeros(layout->total);
  mod->ema = zeros(layout->total);
  memcpy(mod->ema, params, layout->total * sizeof(float));
  mod->groups = dl_calloc((size_t)layout->count, sizeof *mod->groups);
  dl_param_groups_init(mod->groups, layout, depth, cfg);
}

void dl_optim_module_free(dl_optim_module *mod) {
  free(mod->grads);
  free(mod->m);
  free(mod->v);
  free(mod->ema);
  free(mod->groups);
  memset(mod, 0, sizeof *mod);
}

void dl_optim_zero_grad(dl_optim_module *mod) { memset(mod->grads, 0, mod->layout->total * sizeof(float)); }

double dl_clip_grad_norm(dl_optim_module *mod, float max_norm) {
  // The norm of the per-tensor norms, as torch computes it.
  double total = 0.0;
  for (int i = 0; i < mod->layout->count; i++) {
    const dl_param_entry *e = &mod->layout->entries[i];
    const float *g = mod->grads + e->offset;
    double ss = 0.0;
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (size_t j = 0; j < e->numel; j++) ss += (double)g[j] * g[j];
    const float n = (float)sqrt(ss);
    total += (double)n * n;
  }
  const float norm = (float)sqrt(total);
  float coef = max_norm / (norm + 1e-6f);
  if (coef < 1.0f) {
    const size_t n = mod->layout->total;
#pragma omp parallel for simd schedule(static)
    for (size_t j = 0; j < n; j++) mod->grads[j] *= coef;
  }
  return norm;
}

void dl_adamw_step(dl_optim_module *mod, const dl_adamw_config *cfg, long step, double lr, double wd,
                   double last_layer_lr) {
  const double bc1 = 1.0 - pow((double)cfg->beta1, (double)step);
  const double bc2_sqrt = sqrt(1.0 - pow((double)cfg->beta2, (double)step));
  const float b1 = cfg->beta1, b2 = cfg->beta2, eps = cfg->eps;
  for (int i = 0; i < mod->layout->count; i++) {
    const dl_param_entry *e = &mod->layout->entries[i];
    const dl_param_group *g = &mod->groups[i];
    if (g->frozen) continue;
    const double lr_i = (g->is_last_layer ? last_layer_lr : lr) * g->lr_mult;
    const double wd_i = wd * g->wd_mult;
    // The scalars as torch forms them (Python doubles), then float math.
    const float decay = (float)(1.0 - lr_i * wd_i), step_size = (float)(lr_i / bc1), bc2s = (float)bc2_sqrt;
    const float one_b1 = (float)(1.0 - (double)b1), one_b2 = (float)(1.0 - (double)b2);
    float *p = mod->params + e->offset, *m = mod->m + e->offset, *v = mod->v + e->offset;
    const float *gr = mod->grads + e->offset;
#pragma omp parallel for simd schedule(static)
    for (size_t j = 0; j < e->numel; j++) {
      p[j] *= decay;
      m[j] = m[j] * b1 + one_b1 * gr[j];
      v[j] = v[j] * b2 + one_b2 * gr[j] * gr[j];
      const float denom = sqrtf(v[j]) / bc2s + eps;
      p[j] = p[j] - step_size * (m[j] / denom);
    }
  }
}

void dl_ema_update(dl_optim_module *mod, double momentum) {
  const float mom = (float)momentum, rest = (float)(1.0 - momentum);
  const size_t n = mod->layout->total;
#pragma omp parallel for simd schedule(static)
  for (size_t j = 0; j < n; j++) mod->ema[j] = mod->ema[j] * mom + mod->params[j] * rest;
}
