// AdamW over parameter groups, gradient clipping per module and the EMA of
// the parameters, as DINOv2 trains (utils/param_groups.py, fsdp optimizer
// schedule) with torch.optim.AdamW's arithmetic. A module is one flat buffer
// with its names table (the backbone, each head); gradients, both Adam
// moments and the EMA share its layout, so every update is a loop over it.
#ifndef DISTILL_MODEL_OPTIM_H
#define DISTILL_MODEL_OPTIM_H

#include <stdbool.h>

#include "model/vit_config.h"

typedef struct dl_adamw_config {
  float beta1, beta2, eps;  // 0.9, 0.999, 1e-8
  float layer_decay;        // layer-wise learning-rate decay rate (1: none)
  float patch_embed_lr_mult;
  float clip;               // gradient clipping per module at this global norm (0: none)
} dl_adamw_config;
dl_adamw_config dl_adamw_config_default(void);

// One tensor's multipliers: lr = (last layer ? last_layer_lr : lr) * lr_mult,
// weight decay = wd * wd_mult.
typedef struct dl_param_group {
  float lr_mult, wd_mult;
  bool is_last_layer;
  // Takes no part in the loss (mask_token when nothing is masked): PyTorch's
  // AdamW skips a parameter without a gradient, decay included, so do we.
  bool frozen;
} dl_param_group;

typedef struct dl_optim_module {
  const dl_vit_layout *layout;
  float *params;  // the module's own buffer (not owned)
  float *grads, *m, *v, *ema;  // owned, same layout
  dl_param_group *groups;      // one per layout entry
} dl_optim_module;

// Groups by DINOv2's rules: lr_mult = layer_decay^(depth + 1 - layer_id) for
// backbone entries (layer_id >= 0; heads have DL_LAYER_ID_HEAD: 1), times
// patch_embed_lr_mult for patch_embed.*; wd_mult 0 for the layout's
// no_weight_decay entries; last layer = a name containing "last_layer".
// dl_param_groups_init fills only the groups (layout->count entries): what a
// GPU optimizer needs without the host buffers. dl_optim_module_init also
// allocates the buffers: the EMA starts as a copy of the parameters, moments
// and gradients at 0.
void dl_param_groups_init(dl_param_group *groups, const dl_vit_layout *layout, int depth,
                          const dl_adamw_config *cfg);
void dl_optim_module_init(dl_optim_module *mod, const dl_vit_layout *layout, float *params, int depth,
                          const dl_adamw_config *cfg);
void dl_optim_module_free(dl_optim_module *mod);
void dl_optim_zero_grad(dl_optim_module *mod);

// torch.nn.utils.clip_grad_norm_: scales the module's gradients by
// min(1, max_norm / (norm + 1e-6)); returns the norm before clipping.
double dl_clip_grad_norm(dl_optim_module *mod, float max_norm);

// One AdamW step (step counts from 1) with this step's scheduled values.
void dl_adamw_step(dl_optim_module *mod, const dl_adamw_config *cfg, long step, double lr, double wd,
                   double last_layer_lr);

// ema = ema * momentum + params * (1 - momentum).
void dl_ema_update(dl_optim_module *mod, double momentum);

#endif
