#include "model/cuda/train_step_cuda.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "model/cuda/cuda_check.h"
#include "model/cuda/device_arena.h"
#include "model/cuda/loss_chunks.h"
#include "model/cuda/proto_losses.h"
#include "model/step_parts.h"

// Slots of t->losses, in the order of dl_cuda_trainer.loss_off.
enum { LOSS_DINO, LOSS_IBOT, LOSS_KOLEO, LOSS_FEAT_CLS, LOSS_FEAT_COS, LOSS_FEAT_L1, LOSS_NORMS, LOSS_SLOTS };

// Storage conversions that are no-ops (the same buffer) in float32 mode.
static void to_float(dl_cuda_trainer *t, float *dst, const void *src, size_t n) {
  if ((const void *)dst != src) dl_cuda_convert(dst, DL_DTYPE_F32, src, t->dtype, n, t->vit.stream);
}
static void to_dtype(dl_cuda_trainer *t, void *dst, const float *src, size_t n) {
  if (dst != (const void *)src) dl_cuda_convert(dst, t->dtype, src, DL_DTYPE_F32, n, t->vit.stream);
}

// ---- optimizer state ----

static size_t padded(size_t n) { return (n + 63) & ~(size_t)63; }  // 256-byte module starts
static size_t dl_max_size(size_t a, size_t b) { return a > b ? a : b; }

// grads of the three modules back to back (one all-reduce), then m, v, ema,
// and in bf16 mode the backbone's float32 master (the heads own theirs).
static void modules_init(dl_cuda_trainer *t) {
  const dl_vit_layout *layouts[3] = {&t->host_student->layout, &t->host_heads[0].layout, &t->host_heads[1].layout};
  size_t sum = 0, start[3];
  for (int k = 0; k < 3; k++) start[k] = sum, sum += padded(layouts[k]->total);
  const bool f32 = t->dtype == DL_DTYPE_F32;
  const size_t floats = 4 * sum + (f32 ? 0 : padded(layouts[0]->total));
  cudaStream_t s = t->vit.stream;  // every copy on the model's stream: it does not wait for the legacy one
  cudaCheck(cudaMalloc((void **)&t->state, floats * sizeof(float)));
  cudaCheck(cudaMemsetAsync(t->state, 0, floats * sizeof(float), s));
  t->grads_total = sum;
  for (int k = 0; k < 3; k++) {
    dl_cuda_optim_module *m = &t->mods[k];
    m->total = layouts[k]->total;
    m->grads = t->state + start[k];
    m->m = t->state + sum + start[k];
    m->v = t->state + 2 * sum + start[k];
    m->ema = t->state + 3 * sum + start[k];
    if (k == 0) {
      m->master = f32 ? (float *)t->vit.params : t->state + 4 * sum;
      m->compute_copy = f32 ? NULL : t->vit.params;
      if (!f32)
        cudaCheck(cudaMemcpyAsync(m->master, t->host_student->params, m->total * sizeof(float),
                                  cudaMemcpyHostToDevice, s));
    } else {
      m->master = t->heads[k - 1].master;
      m->compute_copy = f32 ? NULL : t->heads[k - 1].params;
    }
    cudaCheck(cudaMemcpyAsync(m->ema, m->master, m->total * sizeof(float), cudaMemcpyDeviceToDevice, s));
    m->host.layout = layouts[k];
    m->host.groups = dl_calloc((size_t)layouts[k]->count, sizeof *m->host.groups);
    dl_param_groups_init(m->host.groups, layouts[k], t->host_student->cfg.depth, &t->cfg.adamw);
    m->segs_host = dl_calloc((size_t)layouts[k]->count, sizeof *m->segs_host);
    cudaCheck(cudaMalloc((void **)&m->segs, (size_t)layouts[k]->count * sizeof *m->segs));
  }
  // Distillation masks no patch, so mask_token gets no gradient.
  t->mods[0].host.groups[dl_vit_global_index(DL_P_MASK)].frozen = true;
  cudaCheck(cudaStreamSynchronize(s));
}

static void adamw(dl_cuda_trainer *t, int k, double lr, double wd, double last_lr) {
  dl_cuda_optim_module *m = &t->mods[k];
  const dl_adamw_config *a = &t->cfg.adamw;
  const int count = m->host.layout->count;
  float bc2;
  dl_adamw_segments_fill(m->segs_host, &m->host, a, t->step + 1, lr, wd, last_lr, &bc2);
  // segs_host is not touched again before the step's final synchronization.
  cudaCheck(cudaMemcpyAsync(m->segs, m->segs_host, (size_t)count * sizeof *m->segs, cudaMemcpyHostToDevice,
                            t->vit.stream));
  dl_cuda_adamw(m->master, m->m, m->v, m->grads, m->segs, count, m->total, a->beta1, a->beta2, a->eps, bc2,
                m->compute_copy, t->vit.stream);
}

// ---- data parallel: the backbone's gradient buckets ----

// The bucket plan for a group (none for one rank, or with
// DISTILL_NCCL_BUCKET_MB=0). Every rank must plan the same buckets: NCCL
// matches collectives by their order, so a rank with another
// DISTILL_NCCL_BUCKET_MB would wait on its peers until the timeout.
static int buckets_init(dl_cuda_trainer *t, dl_err *err) {
  if (t->dp.world <= 1 || !t->dp.grads_start) return 0;
  size_t bytes;
  if (dl_grad_bucket_bytes_parse(getenv("DISTILL_NCCL_BUCKET_MB"), &bytes, err)) return -1;
  if (bytes == 0) return 0;
  t->buckets = dl_malloc((size_t)dl_grad_stage_count(t->host_student->cfg.depth) * sizeof *t->buckets);
  t->bucket_count = dl_grad_buckets_plan(&t->host_student->layout, bytes, t->buckets);
  return 0;
}

// The backward hook: starts the all-reduce of every bucket the stage just
// queued has completed. grads_start records an event on the compute stream
// and makes the group's stream wait on it, so the reduction runs while the
// compute stream goes on with the earlier blocks.
static void start_ready_buckets(void *ctx, int stage) {
  dl_cuda_trainer *t = ctx;
  while (t->buckets_started < t->bucket_count && t->buckets[t->buckets_started].stage <= stage) {
    const dl_grad_bucket *b = &t->buckets[t->buckets_started++];
    t->dp.grads_start(t->dp.ctx, t->mods[0].grads + b->offset, b->count, t->vit.stream);
  }
}

// The backbone's backward passes (global crops, then local crops, into the
// same gradient) and, for a group, its gradient's average: bucket by bucket
// during the last pass (a block's gradient is final only after it), or in
// one call after both. Then the compute stream waits for every reduction
// (the heads' included), so clipping sees the group's gradient.
static void backbone_backward(dl_cuda_trainer *t, bool group) {
  const dl_train_config *c = &t->cfg;
  const int D = t->host_student->cfg.dim, GB = c->global_crops * c->batch;
  float *g0 = t->mods[0].grads;
  const dl_cuda_backward_hook hook = {start_ready_buckets, t};
  const dl_cuda_backward_hook *last_pass = group && t->buckets ? &hook : NULL;
  t->buckets_started = 0;
  dl_cuda_vit_backward_hooked(&t->vit, &t->ws_global, t->d_cls_all, NULL, t->d_patch_g, g0,
                              c->local_crops ? NULL : last_pass);
  if (c->local_crops)
    dl_cuda_vit_backward_hooked(&t->vit, &t->ws_local, t->d_cls_all + (size_t)GB * D, NULL, NULL, g0, last_pass);
  if (!group) return;
  if (t->buckets)
    DL_ASSERT(t->buckets_started == t->bucket_count);  // the embedding's stage closes the last bucket
  else
    t->dp.grads_start(t->dp.ctx, g0, (size_t)(t->mods[1].grads - g0), t->vit.stream);
  t->dp.grads_finish(t->dp.ctx, t->vit.stream);
}

// ---- the step's buffers ----

static size_t carve_step(dl_cuda_trainer *t, unsigned char *base) {
  dl_device_arena a = {base, 0};
  const dl_train_config *c = &t->cfg;
  const bool f32 = t->dtype == DL_DTYPE_F32, proto = c->mode == DL_TRAIN_PROTOTYPES;
  const size_t e = dl_dtype_size(t->dtype), f = sizeof(float), D = (size_t)t->host_student->cfg.dim;
  const size_t G = (size_t)c->global_crops, L = (size_t)c->local_crops, B = (size_t)c->batch;
  const size_t rows_cls = (G + L) * B, rows_patch = G * B * (size_t)t->patches, rows_ibot = (size_t)t->ibot_rows;
  const size_t K0 = (size_t)dl_head_out_dim(&t->host_heads[0], DL_HEAD_FULL);
  const size_t K1 = (size_t)dl_head_out_dim(&t->host_heads[1], DL_HEAD_FULL), kmax = K0 > K1 ? K0 : K1;
  const size_t W0 = (size_t)t->width[0], W1 = (size_t)t->width[1];
#define TAKE_F(n) ((float *)dl_arena_take(&a, (n) * f))
#define TAKE_DT(n) dl_arena_take(&a, (n) * e)
  t->cls_all = TAKE_DT(rows_cls * D);
  t->patch_g = TAKE_DT(rows_patch * D);
  t->cls_f = f32 ? t->cls_all : TAKE_F(G * B * D);
  t->d_cls_all = TAKE_F(rows_cls * D);
  t->d_patch_g = TAKE_F(rows_patch * D);
  t->d_cls_dt = f32 ? (void *)t->d_cls_all : TAKE_DT(rows_cls * D);
  t->d_patch_dt = f32 ? (void *)t->d_patch_g : TAKE_DT(rows_patch * D);
  if (proto) {  // the losses in chunks of rows: the teacher's logits once, the student's one chunk at a time
    t->t_logits[0] = TAKE_DT(G * B * K0);
    t->t_logits[1] = TAKE_DT(rows_ibot * K1);
    t->row_off[0] = TAKE_F(G * B);
    t->row_off[1] = TAKE_F(rows_ibot);
    t->col_off[0] = TAKE_F(K0);
    t->col_off[1] = TAKE_F(K1);
    t->logits_chunk = TAKE_DT(dl_max_size((size_t)t->chunk_rows[0] * K0, (size_t)t->chunk_rows[1] * K1));
  } else {
    t->out_cls = TAKE_DT(rows_cls * K0);
    t->out_patch = TAKE_DT(rows_ibot * K1);
    t->out_cls_f = f32 ? t->out_cls : TAKE_F(rows_cls * K0);
    t->out_patch_f = f32 ? t->out_patch : TAKE_F(rows_ibot * K1);
    t->d_out_cls = TAKE_F(rows_cls * K0);
    t->d_out_patch = TAKE_F(rows_ibot * K1);
    t->d_out_cls_dt = f32 ? (void *)t->d_out_cls : TAKE_DT(rows_cls * K0);
    t->d_out_patch_dt = f32 ? (void *)t->d_out_patch : TAKE_DT(rows_ibot * K1);
  }
  t->t_in_cls = TAKE_F(G * B * W0);
  t->t_in_patch = TAKE_F(rows_patch * W1);
  t->t_in_cls_dt = f32 || !proto ? (void *)t->t_in_cls : TAKE_DT(G * B * W0);
  t->t_in_patch_dt = f32 || !proto ? (void *)t->t_in_patch : TAKE_DT(rows_patch * W1);
  t->center[0] = TAKE_F(K0);
  t->center[1] = TAKE_F(K1);
  t->scratch = TAKE_F(kmax + 8);  // Sinkhorn-Knopp: k + 4; centering: k + 1
  t->ibot_w = TAKE_F(rows_ibot);
  if (proto && c->ibot.selected) {  // the selected rows, gathered
    t->ibot_index = dl_arena_take(&a, rows_ibot * sizeof(int));
    t->sel_x = TAKE_DT(rows_ibot * D);
    t->d_sel_dt = TAKE_DT(rows_ibot * D);
    t->d_sel_f = f32 ? t->d_sel_dt : TAKE_F(rows_ibot * D);
    t->t_sel_dt = TAKE_DT(rows_ibot * W1);
  }
  t->koleo_grad = TAKE_F(B * D);
  t->koleo_scratch = TAKE_F(dl_cuda_koleo_scratch_floats((int)B, (int)D));
  t->norm_scratch = dl_arena_take(&a, sizeof(double));
  const size_t n[LOSS_SLOTS] = {(size_t)dl_dino_pairs((int)(G + L), (int)G, true) * B, rows_ibot, G,
                                (G + L * G) * B, rows_patch, rows_patch, 3};
  t->loss_total = 0;
  for (int i = 0; i < LOSS_SLOTS; i++) t->loss_off[i] = t->loss_total, t->loss_n[i] = n[i], t->loss_total += n[i];
  t->losses = TAKE_F(t->loss_total);
#undef TAKE_F
#undef TAKE_DT
  return a.off;
}

static void step_buffers_init(dl_cuda_trainer *t) {
  const size_t bytes = carve_step(t, NULL);
  cudaStream_t s = t->vit.stream;
  cudaCheck(cudaMalloc(&t->step_mem, bytes));
  cudaCheck(cudaMemsetAsync(t->step_mem, 0, bytes, s));  // centers and unused loss slots start at 0
  carve_step(t, t->step_mem);
  const int GB = t->cfg.global_crops * t->cfg.batch, rows_patch = GB * t->patches;
  if (t->ibot_index) {  // the selection: its rows and weights are uploaded each step
    t->ibot_masks_host = dl_calloc((size_t)rows_patch, sizeof(bool));
    t->ibot_index_host = dl_calloc((size_t)t->ibot_rows + 1, sizeof(int));
    t->ibot_w_host = dl_calloc((size_t)t->ibot_rows + 1, sizeof(float));
  } else {
    float *w = dl_malloc((size_t)rows_patch * sizeof(float));
    dl_ibot_weights(w, NULL, GB, t->patches);
    cudaCheck(cudaMemcpyAsync(t->ibot_w, w, (size_t)rows_patch * sizeof(float), cudaMemcpyHostToDevice, s));
    cudaCheck(cudaStreamSynchronize(s));  // before w is freed
    free(w);
  }
  t->losses_host = dl_malloc(t->loss_total * sizeof(float));
}

int dl_cuda_trainer_init(dl_cuda_trainer *t, const dl_vit *student, const dl_train_config *cfg,
                         const dl_head *teacher_dino, const dl_head *teacher_ibot, unsigned long long seed,
                         dl_dtype dtype, const dl_cuda_data_parallel *dp, dl_err *err) {
  memset(t, 0, sizeof *t);
  if (dl_train_config_check(student, cfg, teacher_dino, teacher_ibot, err)) return -1;
  if (student->cfg.dim / student->cfg.heads != DL_CUDA_ATTN_HEAD_DIM)
    return dl_fail(err, "training: the CUDA attention needs head dimension %d, the student has %d",
                   DL_CUDA_ATTN_HEAD_DIM, student->cfg.dim / student->cfg.heads);
  if (cfg->batch > 1024) return dl_fail(err, "training: the CUDA KoLeo takes at most 1024 images per rank");
  if (cfg->mode == DL_TRAIN_PROTOTYPES && cfg->global_crops > DL_PROTO_MAX_TEACHER_CROPS)
    return dl_fail(err, "training: the CUDA DINO loss takes at most %d global crops", DL_PROTO_MAX_TEACHER_CROPS);
  t->cfg = *cfg;
  t->dtype = dtype;
  t->dp = dp ? *dp : (dl_cuda_data_parallel){.world = 1};
  t->host_student = student;
  if (buckets_init(t, err)) return -1;
  const int g = cfg->global_size / student->cfg.patch;
  t->patches = g * g;
  dl_trainer_heads_init(t->host_heads, student, cfg, seed);
  dl_cuda_vit_init(&t->vit, student, dtype);
  for (int k = 0; k < 2; k++) dl_cuda_head_init(&t->heads[k], &t->host_heads[k], dtype, &t->vit.blas, t->vit.stream);
  if (cfg->mode == DL_TRAIN_PROTOTYPES) {
    const dl_head *teacher[2] = {teacher_dino, teacher_ibot};
    for (int k = 0; k < 2; k++) {
      dl_cuda_head_init(&t->teacher_last[k], teacher[k], dtype, &t->vit.blas, t->vit.stream);
      t->width[k] = teacher[k]->cfg.out_dim;
    }
  } else {
    t->width[0] = t->width[1] = cfg->teacher_dim;
  }
  t->ibot_rows = dl_trainer_ibot_rows(cfg, t->patches);
  if (cfg->mode == DL_TRAIN_PROTOTYPES) {
    const size_t e = dl_dtype_size(dtype), budget = dl_loss_chunk_budget();
    const int rows_cls = (cfg->global_crops + cfg->local_crops) * cfg->batch;
    t->chunk_rows[0] = dl_loss_chunk_rows(rows_cls, teacher_dino->cfg.prototypes, e, budget);
    t->chunk_rows[1] = dl_loss_chunk_rows(t->ibot_rows, teacher_ibot->cfg.prototypes, e, budget);
  }
  modules_init(t);
  step_buffers_init(t);
  return dl_cuda_take_error(err);  // an allocation or upload recorded as failed, else 0
}

void dl_cuda_trainer_free(dl_cuda_trainer *t) {
  for (int k = 0; k < 3; k++) {
    dl_cuda_optim_module *m = &t->mods[k];
    if (m->segs) cudaCheck(cudaFree(m->segs));
    free(m->segs_host);
    free(m->host.groups);
  }
  for (int k = 0; k < 2; k++) {
    dl_cuda_head_ws_free(&t->head_ws[k]);
    dl_cuda_head_ws_free(&t->teacher_ws[k]);
    dl_cuda_head_free(&t->heads[k]);
    if (t->teacher_last[k].master) dl_cuda_head_free(&t->teacher_last[k]);
    dl_head_free(&t->host_heads[k]);
  }
  dl_cuda_vit_train_ws_free(&t->ws_global);
  dl_cuda_vit_train_ws_free(&t->ws_local);
  if (t->state) cudaCheck(cudaFree(t->state));
  if (t->step_mem) cudaCheck(cudaFree(t->step_mem));
  dl_cuda_vit_free(&t->vit);
  free(t->buckets);
  free(t->losses_host);
  free(t->ibot_masks_host);
  free(t->ibot_index_host);
  free(t->ibot_w_host);
  memset(t, 0, sizeof *t);
}

// ---- the step, as model/train_step.c ----

static int student_forward(dl_cuda_trainer *t, const dl_train_batch *b, dl_err *err) {
  const dl_train_config *c = &t->cfg;
  const int D = t->host_student->cfg.dim, R = t->host_student->cfg.registers;
  const int GB = c->global_crops * c->batch, LB = c->local_crops * c->batch;
  cudaStream_t s = t->vit.stream;
  if (dl_cuda_vit_forward_train_device(&t->vit, b->global_images, GB, c->global_size, c->global_size, NULL,
                                       &t->ws_global, err))
    return -1;
  dl_cuda_split_tokens(t->dtype, t->cls_all, t->patch_g, t->ws_global.lnf, GB, t->ws_global.np, R, D, s);
  if (LB == 0) return 0;
  if (dl_cuda_vit_forward_train_device(&t->vit, b->local_images, LB, c->local_size, c->local_size, NULL,
                                       &t->ws_local, err))
    return -1;
  void *cls_local = (unsigned char *)t->cls_all + (size_t)GB * D * dl_dtype_size(t->dtype);
  dl_cuda_split_tokens(t->dtype, cls_local, NULL, t->ws_local.lnf, LB, t->ws_local.np, R, D, s);
  return 0;
}

static void upload_targets(dl_cuda_trainer *t, const dl_train_batch *b) {
  const size_t GB = (size_t)t->cfg.global_crops * t->cfg.batch, rows_patch = GB * t->patches;
  cudaStream_t s = t->vit.stream;
  cudaCheck(cudaMemcpyAsync(t->t_in_cls, b->teacher_cls, GB * t->width[0] * sizeof(float), cudaMemcpyHostToDevice,
                            s));
  cudaCheck(cudaMemcpyAsync(t->t_in_patch, b->teacher_patch, rows_patch * t->width[1] * sizeof(float),
                            cudaMemcpyHostToDevice, s));
}

// The teacher's logits for head k (its frozen last layer on its bottlenecks,
// chunk by chunk so that no GEMM output passes DL_LOSS_CHUNK_MAX_ELEMS) into
// their one copy, and their targets' offsets: Sinkhorn-Knopp, or softmax
// with the current center, which then moves towards this batch.
static dl_cuda_targets teacher_targets(dl_cuda_trainer *t, int k, const void *bottleneck, int rows, float temp) {
  dl_cuda_head *h = &t->teacher_last[k];
  const int K = h->cfg.prototypes;
  const size_t e = dl_dtype_size(t->dtype);
  cudaStream_t s = t->vit.stream;
  dl_cuda_head_forward_begin(h, DL_HEAD_LAST_LAYER, bottleneck, rows, &t->teacher_ws[k]);
  const int step = dl_loss_chunk_rows(rows, K, e, SIZE_MAX);
  for (int r0 = 0; r0 < rows; r0 += step)
    dl_cuda_head_last_rows(h, &t->teacher_ws[k], r0, rows - r0 < step ? rows - r0 : step,
                           (unsigned char *)t->t_logits[k] + (size_t)r0 * K * e);
  const dl_cuda_targets tg = {t->t_logits[k], t->dtype, t->row_off[k], t->col_off[k], rows, K, 1.0f / temp};
  if (t->cfg.sinkhorn)
    dl_cuda_targets_sinkhorn(&tg, t->cfg.sk_iters, &t->dp.reduce, t->scratch, s);
  else
    dl_cuda_targets_center(&tg, t->center[k], t->cfg.center_momentum, &t->dp.reduce, t->scratch, s);
  return tg;
}

// Student head k over its m rows of x: its logits chunk by chunk, each
// chunk's cross-entropy against tg fused with its gradient, which goes
// straight back through the last layer (dW summed over the chunks); then the
// rest of the head's backward pass into dx (dtype) and its float32 copy dx_f.
static void head_loss_chunked(dl_cuda_trainer *t, int k, const void *x, int m, const dl_cuda_targets *tg,
                              const dl_cuda_ce_chunk *ce, void *dx, float *dx_f) {
  dl_cuda_head *h = &t->heads[k];
  dl_cuda_head_ws *ws = &t->head_ws[k];
  const int step = t->chunk_rows[k];
  dl_cuda_head_forward_begin(h, DL_HEAD_FULL, x, m, ws);
  for (int r0 = 0; r0 < m; r0 += step) {
    const int n = m - r0 < step ? m - r0 : step;
    dl_cuda_head_last_rows(h, ws, r0, n, t->logits_chunk);
    dl_cuda_cross_entropy_chunk(ce, t->logits_chunk, tg, r0, n, t->vit.stream);
    dl_cuda_head_last_rows_backward(h, ws, r0, n, t->logits_chunk, NULL);
  }
  dl_cuda_head_backward_finish(h, ws, t->mods[k + 1].grads, dx);
  to_float(t, dx_f, dx, (size_t)m * t->host_student->cfg.dim);
}

// Head k over rows of x into out (dtype) and its float32 view out_f.
static void head_forward(dl_cuda_trainer *t, int k, const void *x, int rows, void *out, float *out_f) {
  const size_t K = (size_t)dl_head_out_dim(&t->host_heads[k], DL_HEAD_FULL);
  dl_cuda_head_forward(&t->heads[k], DL_HEAD_FULL, x, rows, out, &t->head_ws[k]);
  to_float(t, out_f, out, rows * K);
}

// Its backward from the float32 loss gradient d_out (through d_out_dt) into
// the input's gradient dx (dtype) and its float32 copy dx_f.
static void head_backward(dl_cuda_trainer *t, int k, const float *d_out, void *d_out_dt, int rows, void *dx,
                          float *dx_f) {
  const size_t K = (size_t)dl_head_out_dim(&t->host_heads[k], DL_HEAD_FULL), D = (size_t)t->host_student->cfg.dim;
  to_dtype(t, d_out_dt, d_out, rows * K);
  dl_cuda_head_backward(&t->heads[k], &t->head_ws[k], d_out_dt, t->mods[k + 1].grads, dx);
  to_float(t, dx_f, dx, rows * D);
}

// This step's iBOT rows, as dl_trainer_ibot_select draws them (on the host,
// then their indices and weights to the device); every patch without the
// selection.
static int ibot_select(dl_cuda_trainer *t) {
  const dl_train_config *c = &t->cfg;
  if (!c->ibot.selected) return t->ibot_rows;
  const int GB = c->global_crops * c->batch, grid = c->global_size / t->host_student->cfg.patch;
  const int m = dl_ibot_select_step(&c->ibot, t->step, GB, grid, t->ibot_masks_host, t->ibot_index_host,
                                    t->ibot_w_host);
  DL_ASSERT(m == t->ibot_rows);  // a selection always reaches its upper bound
  cudaStream_t s = t->vit.stream;  // pageable sources: the copies have read them when these calls return
  cudaCheckOr(cudaMemcpyAsync(t->ibot_index, t->ibot_index_host, (size_t)m * sizeof(int), cudaMemcpyHostToDevice, s),
              m);  // the step's end reports the recorded failure
  cudaCheckOr(cudaMemcpyAsync(t->ibot_w, t->ibot_w_host, (size_t)m * sizeof(float), cudaMemcpyHostToDevice, s), m);
  return m;
}

// iBOT as dl_trainer_ibot_loss: the selected rows of the patch tokens and of
// the teacher's bottlenecks gathered, the head, the teacher's last layer,
// Sinkhorn-Knopp and the loss on those rows only (1 / n per row, divided by
// every global crop), the head's input gradient scattered back (0 on the
// other rows); without the selection, every patch in place.
static void ibot_loss(dl_cuda_trainer *t, float temp) {
  const dl_train_config *c = &t->cfg;
  const int GB = c->global_crops * c->batch, D = t->host_student->cfg.dim;
  const size_t rows_patch = (size_t)GB * t->patches, e = dl_dtype_size(t->dtype);
  cudaStream_t s = t->vit.stream;
  const int m = ibot_select(t);
  to_dtype(t, t->t_in_patch_dt, t->t_in_patch, rows_patch * t->width[1]);
  const void *x = t->patch_g, *tb = t->t_in_patch_dt;
  void *dx = t->d_patch_dt;
  float *dx_f = t->d_patch_g;
  if (c->ibot.selected) {
    dl_cuda_gather_rows(t->sel_x, t->patch_g, t->ibot_index, m, (size_t)D * e, s);
    dl_cuda_gather_rows(t->t_sel_dt, t->t_in_patch_dt, t->ibot_index, m, (size_t)t->width[1] * e, s);
    cudaCheck(cudaMemsetAsync(t->d_patch_g, 0, rows_patch * D * sizeof(float), s));
    x = t->sel_x, tb = t->t_sel_dt, dx = t->d_sel_dt, dx_f = t->d_sel_f;
  }
  if (m == 0) return;  // only with an iBOT weight of 0 (dl_train_config_check)
  const dl_cuda_targets tg = teacher_targets(t, 1, tb, m, temp);
  // Rows weighted 1 / n per crop; the mean over crops (and the weight) go
  // into the gradient here and into the sum in the report.
  const dl_cuda_ce_chunk ce = {t->losses + t->loss_off[LOSS_IBOT], t->ibot_w, 0, 0, 0, 1.0f / c->student_temp,
                               1.0f, c->weights.ibot / (float)GB};
  head_loss_chunked(t, 1, x, m, &tg, &ce, dx, dx_f);
  if (c->ibot.selected) dl_cuda_scatter_rows(t->d_patch_g, t->d_sel_f, t->ibot_index, m, D, s);
}

static void prototype_losses(dl_cuda_trainer *t, float temp) {
  const dl_train_config *c = &t->cfg;
  const int G = c->global_crops, L = c->local_crops, B = c->batch, D = t->host_student->cfg.dim;
  const int rows_cls = (G + L) * B;
  cudaStream_t s = t->vit.stream;
  to_dtype(t, t->t_in_cls_dt, t->t_in_cls, (size_t)G * B * t->width[0]);
  const dl_cuda_targets tg = teacher_targets(t, 0, t->t_in_cls_dt, G * B, temp);
  // Every (student crop, other teacher crop) pair, each row's share times
  // weight / pairs / B, as dl_cuda_dino_loss.
  const float scale = c->weights.dino / (float)dl_dino_pairs(G + L, G, true) / (float)B;
  const dl_cuda_ce_chunk ce = {t->losses + t->loss_off[LOSS_DINO], NULL, 1, G, B, 1.0f / c->student_temp, scale,
                               scale};
  head_loss_chunked(t, 0, t->cls_all, rows_cls, &tg, &ce, t->d_cls_dt, t->d_cls_all);
  ibot_loss(t, temp);
  // KoLeo on each global crop's backbone CLS (in float32), summed over the crops.
  if (c->weights.koleo == 0.0f) return;
  to_float(t, t->cls_f, t->cls_all, (size_t)G * B * D);
  for (int g = 0; g < G; g++) {
    dl_cuda_koleo(t->losses + t->loss_off[LOSS_KOLEO] + g, t->koleo_grad, t->cls_f + (size_t)g * B * D, B, D,
                  c->weights.koleo, t->koleo_scratch, s);
    dl_cuda_add(DL_DTYPE_F32, t->d_cls_all + (size_t)g * B * D, t->koleo_grad, (size_t)B * D, s);
  }
}

static void feature_losses(dl_cuda_trainer *t) {
  const dl_train_config *c = &t->cfg;
  const int G = c->global_crops, L = c->local_crops, B = c->batch, Dt = c->teacher_dim;
  const int rows_cls = (G + L) * B, rows_patch = G * B * t->patches;
  cudaStream_t s = t->vit.stream;
  head_forward(t, 0, t->cls_all, rows_cls, t->out_cls, t->out_cls_f);
  head_forward(t, 1, t->patch_g, rows_patch, t->out_patch, t->out_patch_f);
  // CLS: each global crop to the teacher's same crop, each local crop to
  // every teacher global crop; the mean over those pairs.
  const int pairs = G + L * G;
  cudaCheck(cudaMemsetAsync(t->d_out_cls, 0, (size_t)rows_cls * Dt * sizeof(float), s));
  int pair = 0;
  for (int sc = 0; sc < G + L; sc++)
    for (int g = 0; g < G; g++) {
      if (sc < G && sc != g) continue;
      const size_t so = (size_t)sc * B * Dt, to = (size_t)g * B * Dt;
      dl_cuda_cosine_loss_rows(t->losses + t->loss_off[LOSS_FEAT_CLS] + (size_t)pair * B, t->d_out_cls + so,
                               t->out_cls_f + so, t->t_in_cls + to, B, Dt, c->weights.feat_cls / pairs, 1, s);
      pair++;
    }
  dl_cuda_cosine_loss_rows(t->losses + t->loss_off[LOSS_FEAT_COS], t->d_out_patch, t->out_patch_f, t->t_in_patch,
                           rows_patch, Dt, c->weights.feat_cos, 0, s);
  dl_cuda_smooth_l1_rows(t->losses + t->loss_off[LOSS_FEAT_L1], t->d_out_patch, t->out_patch_f, t->t_in_patch,
                         rows_patch, Dt, 1.0f, c->weights.feat_l1, 1, s);
  head_backward(t, 0, t->d_out_cls, t->d_out_cls_dt, rows_cls, t->d_cls_dt, t->d_cls_all);
  head_backward(t, 1, t->d_out_patch, t->d_out_patch_dt, rows_patch, t->d_patch_dt, t->d_patch_g);
}

static double slot_sum(const dl_cuda_trainer *t, int slot) {
  double acc = 0.0;
  for (size_t i = 0; i < t->loss_n[slot]; i++) acc += t->losses_host[t->loss_off[slot] + i];
  return acc;
}

static void fill_report(const dl_cuda_trainer *t, dl_step_report *r) {
  const dl_train_config *c = &t->cfg;
  r->dino = (float)slot_sum(t, LOSS_DINO);
  r->ibot = (float)(slot_sum(t, LOSS_IBOT) * c->weights.ibot / (c->global_crops * c->batch));
  r->koleo = (float)slot_sum(t, LOSS_KOLEO);
  r->feat_cls = (float)slot_sum(t, LOSS_FEAT_CLS);
  r->feat_cos = (float)slot_sum(t, LOSS_FEAT_COS);
  r->feat_l1 = (float)slot_sum(t, LOSS_FEAT_L1);
  r->total = r->dino + r->ibot + r->koleo + r->feat_cls + r->feat_cos + r->feat_l1;
  for (int k = 0; k < 3; k++) r->grad_norm[k] = c->adamw.clip > 0.0f ? t->losses_host[t->loss_off[LOSS_NORMS] + k] : 0.0;
}

int dl_cuda_trainer_step(dl_cuda_trainer *t, const dl_train_batch *batch, dl_step_report *r, dl_err *err) {
  const dl_train_config *c = &t->cfg;
  cudaStream_t s = t->vit.stream;
  const dl_step_values v = dl_step_values_at(&c->sched, t->step);
  dl_step_report_start(r, &v);
  upload_targets(t, batch);
  if (student_forward(t, batch, err)) return -1;
  cudaCheckOr(cudaMemsetAsync(t->mods[0].grads, 0, t->grads_total * sizeof(float), s), dl_cuda_take_error(err));
  if (c->mode == DL_TRAIN_PROTOTYPES) prototype_losses(t, (float)r->teacher_temp);
  else feature_losses(t);
  // Data parallel: every rank's loss is a mean over its own images, so the
  // group's gradient is the mean of the ranks' gradients (before clipping,
  // as DDP/FSDP average before clip_grad_norm_). The heads' gradients are
  // final now: their average runs while the backbone's backward pass does.
  const bool group = t->dp.world > 1 && t->dp.grads_start;
  float *g0 = t->mods[0].grads, *g1 = t->mods[1].grads;
  if (group) t->dp.grads_start(t->dp.ctx, g1, t->grads_total - (size_t)(g1 - g0), s);
  backbone_backward(t, group);
  const double last_lr = v.last_layer_lr;
  float *norms = t->losses + t->loss_off[LOSS_NORMS];
  for (int k = 0; k < 3; k++) {
    dl_cuda_optim_module *m = &t->mods[k];
    if (c->adamw.clip > 0.0f) dl_cuda_clip_grad_norm(m->grads, m->total, c->adamw.clip, norms + k, t->norm_scratch, s);
    adamw(t, k, r->lr, r->wd, last_lr);
    dl_cuda_ema(m->ema, m->master, m->total, (float)r->momentum, s);
  }
  cudaCheckOr(cudaMemcpyAsync(t->losses_host, t->losses, t->loss_total * sizeof(float), cudaMemcpyDeviceToHost, s),
              dl_cuda_take_error(err));
  if (group && t->dp.wait) {  // polls the group: a dead peer ends this rank within the timeout
    if (t->dp.wait(t->dp.ctx, s, err)) return -1;
  } else {
    cudaCheckOr(cudaStreamSynchronize(s), dl_cuda_take_error(err));
  }
  if (dl_cuda_take_error(err)) return -1;  // a failure recorded by a void call of this step
  fill_report(t, r);
  t->step++;
  return 0;
}

// Module k's float32 state, device and host side, in one order.
static void state_buffers(const dl_cuda_trainer *t, const dl_optim_module *h, int k, float *dev[4], float *host[4]) {
  const dl_cuda_optim_module *m = &t->mods[k];
  DL_ASSERT(h->layout->total == m->total);
  dev[0] = m->master, dev[1] = m->m, dev[2] = m->v, dev[3] = m->ema;
  host[0] = h->params, host[1] = h->m, host[2] = h->v, host[3] = h->ema;
}

static size_t center_floats(const dl_cuda_trainer *t, int k) {
  return (size_t)dl_head_out_dim(&t->host_heads[k], DL_HEAD_FULL);
}

void dl_cuda_trainer_upload(dl_cuda_trainer *t, const dl_trainer *host) {
  cudaStream_t s = t->vit.stream;
  for (int k = 0; k < 3; k++) {
    float *dev[4], *src[4];
    state_buffers(t, &host->mods[k], k, dev, src);
    for (int i = 0; i < 4; i++)
      cudaCheck(cudaMemcpyAsync(dev[i], src[i], t->mods[k].total * sizeof(float), cudaMemcpyHostToDevice, s));
    if (t->mods[k].compute_copy)
      dl_cuda_convert(t->mods[k].compute_copy, t->dtype, t->mods[k].master, DL_DTYPE_F32, t->mods[k].total, s);
  }
  for (int k = 0; k < 2; k++)
    cudaCheck(cudaMemcpyAsync(t->center[k], host->center[k], center_floats(t, k) * sizeof(float),
                              cudaMemcpyHostToDevice, s));
  t->step = host->step;
  cudaCheck(cudaStreamSynchronize(s));
}

void dl_cuda_trainer_download(const dl_cuda_trainer *t, dl_trainer *host) {
  cudaStream_t s = t->vit.stream;
  for (int k = 0; k < 3; k++) {
    float *dev[4], *dst[4];
    state_buffers(t, &host->mods[k], k, dev, dst);
    for (int i = 0; i < 4; i++)
      cudaCheck(cudaMemcpyAsync(dst[i], dev[i], t->mods[k].total * sizeof(float), cudaMemcpyDeviceToHost, s));
  }
  for (int k = 0; k < 2; k++)
    cudaCheck(cudaMemcpyAsync(host->center[k], t->center[k], center_floats(t, k) * sizeof(float),
                              cudaMemcpyDeviceToHost, s));
  host->step = t->step;
  cudaCheck(cudaStreamSynchronize(s));
}
