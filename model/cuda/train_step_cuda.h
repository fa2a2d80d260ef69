// One distillation training step on the GPU: the structure of
// model/train_step.c (the CPU reference) with every op on the device, in the
// style of llm.c's CPU reference and CUDA mainline. The student's forward
// and backward passes over the global and local crops, its heads, the
// teacher's frozen last layers with Sinkhorn-Knopp or centering, the losses
// of both target kinds, the data-parallel gradient average (on its own
// stream; the heads' part overlaps the backbone's backward pass), clipping
// per module, AdamW with the bf16 copy, and the EMA.
//
// Precision: activations in `dtype` (bf16 for training, float32 for the
// parity test against the CPU step); parameter gradients, Adam moments,
// master weights, EMA, logits as the losses see them and all loss
// arithmetic in float32.
#ifndef DISTILL_MODEL_CUDA_TRAIN_STEP_CUDA_H
#define DISTILL_MODEL_CUDA_TRAIN_STEP_CUDA_H

#include "model/cuda/adamw_segments.h"
#include "model/cuda/grad_buckets.h"
#include "model/cuda/heads_cuda.h"
#include "model/cuda/vit_cuda_train.h"
#include "model/train_step.h"

// One module's optimizer state on the device (backbone, head 0, head 1).
typedef struct dl_cuda_optim_module {
  dl_optim_module host;     // layout and groups only (no host buffers): the AdamW table's input
  size_t total;             // floats (the layout's total)
  float *master, *grads, *m, *v, *ema;  // device float32
  void *compute_copy;       // the dtype copy AdamW refreshes (NULL in float32 mode: master is it)
  dl_adamw_segment *segs_host;
  dl_adamw_segment *segs;   // device copy of this step's table
} dl_cuda_optim_module;

typedef struct dl_cuda_trainer {
  dl_train_config cfg;      // cfg.reduce and cfg.world are ignored: dp replaces them
  dl_cuda_data_parallel dp;
  dl_dtype dtype;
  const dl_vit *host_student;  // not owned: config, layout and starting values
  dl_head host_heads[2];       // the heads' layouts and starting values (host)
  dl_cuda_vit vit;             // the student's compute copy, stream and cuBLASLt handle
  dl_cuda_head heads[2], teacher_last[2];
  dl_cuda_vit_train_ws ws_global, ws_local;
  dl_cuda_head_ws head_ws[2], teacher_ws[2];
  dl_cuda_optim_module mods[3];
  float *state;               // one allocation: every module's grads (contiguous, in module order), m, v, ema, master
  size_t grads_total;         // floats from mods[0].grads: the range one all-reduce covers
  void *step_mem;             // one allocation for the step's buffers below
  long step;
  int patches;
  int width[2];                            // the teacher's data per row: bottleneck (prototypes) or teacher_dim
  void *cls_all, *patch_g;                 // backbone outputs (dtype): CLS of every crop, global crops' patches
  float *cls_f;                            // CLS in float32 for KoLeo (alias of cls_all in float32 mode)
  float *d_cls_all, *d_patch_g;            // their gradients (float32)
  void *d_cls_dt, *d_patch_dt;             // the heads' input gradients (dtype; aliases in float32 mode)
  void *out_cls, *out_patch;               // head outputs (dtype)
  float *out_cls_f, *out_patch_f;          // the same in float32 (aliases in float32 mode)
  float *d_out_cls, *d_out_patch;          // the losses' gradients (float32)
  void *d_out_cls_dt, *d_out_patch_dt;     // the same in dtype (aliases)
  float *t_in_cls, *t_in_patch;            // the teacher's data as received (float32)
  void *t_in_cls_dt, *t_in_patch_dt;       // prototypes: the last layers' input (dtype; aliases)
  float *center[2], *scratch, *ibot_w, *koleo_grad, *koleo_scratch;
  // Prototypes (model/cuda/proto_losses.h; out_* and d_out_* are the
  // feature mode's only): per head, the teacher's
  // logits, the one [rows, K] copy (dtype), and their targets' row and column
  // offsets; one chunk of the student's logits (dtype, the heads in turn),
  // which the cross-entropy overwrites with its gradient.
  void *t_logits[2];
  float *row_off[2], *col_off[2];
  void *logits_chunk;
  int chunk_rows[2];                       // the student's rows per chunk (dl_loss_chunk_rows)
  // iBOT's rows (dl_trainer_ibot_rows): t_logits[1], row_off[1] and
  // ibot_w hold ibot_rows rows. With the selection, the step's rows are drawn
  // on the host and gathered on the device.
  int ibot_rows;
  bool *ibot_masks_host;                   // [G * B, patches]
  int *ibot_index_host, *ibot_index;       // [ibot_rows]: the selected patch rows (host, device)
  float *ibot_w_host;                      // [ibot_rows]: their weights before the upload
  void *sel_x, *d_sel_dt, *t_sel_dt;       // selected patch tokens, their gradient (dtype), teacher bottlenecks
  float *d_sel_f;                          // the gradient in float32 (alias in float32 mode)
  double *norm_scratch;
  float *losses, *losses_host;             // per-row loss shares, then the gradient norms
  size_t loss_off[7], loss_n[7];           // dino, ibot, koleo, feat_cls, feat_cos, feat_l1, grad norms
  size_t loss_total;
  // Data parallel: the backbone's gradient buckets (model/cuda/grad_buckets.h),
  // each all-reduced as soon as the last backward pass has finished it; NULL
  // for one all-reduce after the backward pass (one rank, DISTILL_NCCL_BUCKET_MB=0).
  dl_grad_bucket *buckets;
  int bucket_count;
  int buckets_started;  // this step's, so far
} dl_cuda_trainer;

// As dl_trainer_init, on the current device (the trainer points into itself,
// its heads at its cuBLASLt handle: use it where it was initialized, never a
// copy): the student's parameters are
// copied (the host model is not trained), heads created as the CPU trainer
// creates them (same seeds), EMA = parameters. dp NULL or world <= 1: one rank.
int dl_cuda_trainer_init(dl_cuda_trainer *t, const dl_vit *student, const dl_train_config *cfg,
                         const dl_head *teacher_dino, const dl_head *teacher_ibot, unsigned long long seed,
                         dl_dtype dtype, const dl_cuda_data_parallel *dp, dl_err *err);
void dl_cuda_trainer_free(dl_cuda_trainer *t);

// As dl_trainer_step (the batch in host memory); waits for the step to end.
int dl_cuda_trainer_step(dl_cuda_trainer *t, const dl_train_batch *batch, dl_step_report *report, dl_err *err);

// The whole training state between the device and a host trainer made for
// the same student and configuration (dl_trainer_init): every module's
// parameters, Adam moments and EMA, the teacher centers, the step count.
// Upload: host -> device (the bf16 copies refreshed), e.g. after a resume;
// download: device -> host, e.g. before a checkpoint. Both wait for the copies.
void dl_cuda_trainer_upload(dl_cuda_trainer *t, const dl_trainer *host);
void dl_cuda_trainer_download(const dl_cuda_trainer *t, dl_trainer *host);

#endif
