#include "model/cuda/train_flops.h"

#include "model/cuda/vit_cuda_layout.h"

double dl_head_forward_flops(const dl_head_config *h) {
  double f = 0.0;
  for (int l = 0; l < h->nlayers; l++) {
    const double in = l == 0 ? h->in_dim : h->hidden_dim, out = l == h->nlayers - 1 ? h->out_dim : h->hidden_dim;
    f += 2.0 * in * out;
  }
  return f + 2.0 * h->out_dim * (double)h->prototypes;
}

double dl_train_step_flops(const dl_vit_config *student, const dl_train_config *cfg, int teacher_bottleneck) {
  const int G = cfg->global_crops, L = cfg->local_crops, g = cfg->global_size / student->patch;
  const double cls_rows = G + L, patch_rows = (double)G * g * g;
  dl_head_config h0 = cfg->dino_head, h1 = cfg->ibot_head;
  if (cfg->mode == DL_TRAIN_FEATURES) {
    h0 = (dl_head_config){.in_dim = student->dim, .hidden_dim = cfg->teacher_dim, .out_dim = cfg->teacher_dim,
                          .nlayers = 2};
    h1 = h0;
  }
  double trained = G * dl_vit_forward_flops(student, cfg->global_size, cfg->global_size) +
                   cls_rows * dl_head_forward_flops(&h0) + patch_rows * dl_head_forward_flops(&h1);
  if (L) trained += L * dl_vit_forward_flops(student, cfg->local_size, cfg->local_size);
  double frozen = 0.0;
  if (cfg->mode == DL_TRAIN_PROTOTYPES)
    frozen = 2.0 * teacher_bottleneck * ((double)G * h0.prototypes + patch_rows * h1.prototypes);
  return 3.0 * trained + frozen;
}
