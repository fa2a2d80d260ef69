// Building names tables (dl_vit_layout) for modules other than the backbone
// (heads): the same flat-buffer conventions, so the optimizer, EMA and
// checkpoints treat every module alike.
#ifndef DISTILL_MODEL_PARAM_TABLE_H
#define DISTILL_MODEL_PARAM_TABLE_H

#include "model/vit_config.h"

// Layer id of parameters outside the backbone's blocks: no layer-wise decay.
#define DL_LAYER_ID_HEAD (-1)

// Starts an empty table with room for `capacity` entries.
void dl_param_table_init(dl_vit_layout *t, int capacity);
// Appends a tensor (16-float aligned offset); returns its index.
int dl_param_table_add(dl_vit_layout *t, const char *name, int ndim, const int64_t *shape, int no_weight_decay,
                       int layer_id);

#endif
