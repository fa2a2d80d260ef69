// The teacher's compute pipeline: decode and augment on worker threads,
// the forward pass in batches on a compute thread, while the server's own
// thread encodes and sends what is done (DESIGN.md section 4).
//
// The server announces each job as it queues it (job_queued), in its FIFO
// order; workers build the job's global crops at the requested resolution
// (data/sample_stream.h: the same crops a student rebuilds), the compute
// thread runs the backbone over as many prepared jobs of one resolution as
// fit in `batch` images, and compute_block hands over the finished targets
// (waiting if needed). A job that was not announced is computed all the same.
//
// Targets of a block of S samples with G global crops of P patches, rows
// sample-major (row s * G + g, the order of dl_block.global_crops):
//   features:   "cls" [S*G, D] x_norm_clstoken, "patch" [S*G*P, D] x_norm_patchtokens
//   prototypes: "cls" [S*G, B] the DINO head's L2-normalized bottleneck of the CLS token,
//               "patch" [S*G*P, B] the iBOT head's of every patch token
//   both:       the features as "cls" and "patch", the bottlenecks as
//               "cls_proto" and "patch_proto" (one teacher for students of either kind)
#ifndef DISTILL_TEACHER_ENGINE_H
#define DISTILL_TEACHER_ENGINE_H

#include <stdint.h>

#include "common/err.h"
#include "data/sample_stream.h"
#include "model/heads.h"
#include "model/vit.h"
#include "transport/target_block.h"

// A forward pass on other hardware than the CPU (the CUDA forward in bf16:
// cli/teacher_cuda.c). start builds it from the host models on the thread
// that starts the engine; forward replaces dl_vit_forward (host images in,
// host float32 cls and patches out; regs may be NULL) and bottleneck replaces
// dl_head_forward(DL_HEAD_BOTTLENECK) of head 0 (DINO) or 1 (iBOT), both
// called on the engine's compute thread only; stop frees it after that
// thread has ended.
typedef struct dl_forward_backend {
  const char *name;
  void *(*start)(const dl_vit *vit, const dl_head *dino, const dl_head *ibot, dl_err *err);
  int (*forward)(void *ctx, const float *images, int n, int res, dl_vit_outputs *out, dl_err *err);
  int (*bottleneck)(void *ctx, int head, const float *x, int m, float *out, dl_err *err);
  void (*stop)(void *ctx);
} dl_forward_backend;

typedef struct dl_teacher_engine_config {
  const dl_vit *vit;              // borrowed
  const dl_head *dino, *ibot;     // prototypes and both: the heads; features: NULL
  int kind;                       // 0 features, 1 prototypes, 2 both (teacher_server.h)
  dl_sample_stream stream;        // the recipe's stream (dataset borrowed); local crops are not built
  int batch;                      // images per forward pass
  int workers;                    // decode + augment threads
  int max_resolution;             // larger requests fail (memory bound), e.g. 1036
  const dl_forward_backend *backend;  // NULL: the CPU forward
} dl_teacher_engine_config;

typedef struct dl_teacher_engine dl_teacher_engine;

typedef struct dl_teacher_engine_stats {
  uint64_t prepared, forward_passes, images, failed;
} dl_teacher_engine_stats;

dl_teacher_engine *dl_teacher_engine_start(const dl_teacher_engine_config *cfg, dl_err *err);
// A teacher_server job_queued callback (user: the engine).
void dl_teacher_engine_announce(void *engine, uint64_t block, uint32_t resolution);
// A teacher_server compute_block callback (user: the engine).
int dl_teacher_engine_compute(void *engine, uint64_t block, uint32_t resolution, dl_target_block *out, dl_err *err);
dl_teacher_engine_stats dl_teacher_engine_stats_get(dl_teacher_engine *e);
// Stops the threads and frees everything (jobs not handed over are dropped).
void dl_teacher_engine_stop(dl_teacher_engine *e);

// Widths of the "cls" and "patch" targets, dims[0] and dims[1]: the
// backbone's dim (features, both), or the DINO and the iBOT head's
// bottleneck (prototypes; ViT-g/14's are 384 and 256). With both, the
// "cls_proto" and "patch_proto" tensors have the bottlenecks' widths.
void dl_teacher_engine_target_dims(const dl_teacher_engine_config *cfg, int dims[2]);

#endif
