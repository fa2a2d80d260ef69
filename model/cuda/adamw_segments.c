#include "model/cuda/adamw_segments.h"

#include <math.h>

void dl_adamw_segments_fill(dl_adamw_segment *segs, const dl_optim_module *mod, const dl_adamw_config *cfg,
                            long step, double lr, double wd, double last_layer_lr, float *bc2_sqrt) {
  const double bc1 = 1.0 - pow((double)cfg->beta1, (double)step);
  *bc2_sqrt = (float)sqrt(1.0 - pow((double)cfg->beta2, (double)step));
  for (int i = 0; i < mod->layout->count; i++) {
    const dl_param_entry *e = &mod->layout->entries[i];
    const dl_param_group *g = &mod->groups[i];
    const double lr_i = (g->is_last_layer ? last_layer_lr : lr) * g->lr_mult;
    const double wd_i = wd * g->wd_mult;
    segs[i] = (dl_adamw_segment){.offset = e->offset, .numel = e->numel, .decay = (float)(1.0 - lr_i * wd_i),
                                 .step_size = (float)(lr_i / bc1), .frozen = g->frozen};
  }
}
