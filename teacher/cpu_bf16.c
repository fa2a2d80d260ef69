// The CPU bf16 forward backend (cpu_bf16.h).
#include "teacher/cpu_bf16.h"

#include <stdlib.h>

#include "model/heads_bf16.h"
#include "model/vit_bf16.h"

typedef struct cpu_bf16 {
  const dl_vit *vit;
  const dl_head *heads[2];  // DINO, iBOT (NULL: features)
  dl_vit_bf16 vit16;
  dl_head_bf16 heads16[2];
  dl_vit_workspace ws;
  dl_head_ws head_ws;
} cpu_bf16;

static void *start(const dl_vit *vit, const dl_head *dino, const dl_head *ibot, dl_err *err) {
  if (!dl_gemm_bf16_available()) {
    dl_fail(err, DL_CPU_BF16_UNAVAILABLE);
    return NULL;
  }
  cpu_bf16 *s = dl_calloc(1, sizeof *s);
  *s = (cpu_bf16){.vit = vit, .heads = {dino, ibot}};
  dl_vit_bf16_pack(vit, &s->vit16);
  for (int i = 0; i < 2; i++)
    if (s->heads[i]) dl_head_bf16_pack(s->heads[i], &s->heads16[i]);
  return s;
}

static int forward(void *ctx, const float *images, int n, int res, dl_vit_outputs *out, dl_err *err) {
  cpu_bf16 *s = ctx;
  return dl_vit_forward_bf16(s->vit, &s->vit16, images, n, res, res, NULL, &s->ws, out, err);
}

static int bottleneck(void *ctx, int head, const float *x, int m, float *out, dl_err *err) {
  cpu_bf16 *s = ctx;
  if (!s->heads[head]) return dl_fail(err, "cpu-bf16: the model has no heads");
  dl_head_bottleneck_bf16(s->heads[head], &s->heads16[head], x, m, out, &s->head_ws);
  return 0;
}

static void stop(void *ctx) {
  cpu_bf16 *s = ctx;
  dl_vit_bf16_free(&s->vit16);
  for (int i = 0; i < 2; i++) dl_head_bf16_free(&s->heads16[i]);
  dl_vit_workspace_free(&s->ws);
  dl_head_ws_free(&s->head_ws);
  free(s);
}

const dl_forward_backend dl_teacher_cpu_bf16_backend = {"cpu-bf16", start, forward, bottleneck, stop};
