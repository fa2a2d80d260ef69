#include "model/vit.h"

#include <stdlib.h>
#include <string.h>

void dl_vit_init_empty(dl_vit *vit, const dl_vit_config *cfg) {
  memset(vit, 0, sizeof *vit);
  vit->cfg = *cfg;
  dl_vit_layout_build(cfg, &vit->layout);
  vit->params = dl_aligned_alloc(vit->layout.total * sizeof(float));
  memset(vit->params, 0, vit->layout.total * sizeof(float));
}

void dl_vit_free(dl_vit *vit) {
  free(vit->params);
  dl_vit_layout_free(&vit->layout);
  memset(vit, 0, sizeof *vit);
}

float *dl_vit_param(const dl_vit *vit, int index) {
  DL_ASSERT(index >= 0 && index < vit->layout.count);
  return vit->params + vit->layout.entries[index].offset;
}

size_t dl_vit_param_count(const dl_vit *vit) {
  size_t n = 0;
  for (int i = 0; i < vit->layout.count; i++) {
    // mask_token only matters for masked pretraining; the official count includes it.
    n += vit->layout.entries[i].numel;
  }
  return n;
}

int dl_vit_num_patches(const dl_vit_config *cfg, int h, int w) { return (h / cfg->patch) * (w / cfg->patch); }

void dl_vit_workspace_free(dl_vit_workspace *ws) {
  free(ws->buf);
  memset(ws, 0, sizeof *ws);
}
