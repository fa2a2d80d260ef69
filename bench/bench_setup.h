// What the training benchmarks share (bench/bench_train.c on the CPU,
// bench/gpu/bench_gpu_train.c on the GPU): the step they time and a random
// student, so both time the same thing.
#ifndef DISTILL_BENCH_BENCH_SETUP_H
#define DISTILL_BENCH_BENCH_SETUP_H

#include <stdint.h>

#include "model/train_step.h"

#define DL_BENCH_PROTOTYPES 65536
#define DL_BENCH_BOTTLENECK 256
#define DL_BENCH_TEACHER_DIM 1536  // ViT-g/14: its heads' input and its features

// 2 global crops at 224 and 8 local crops at 98; DINO and iBOT heads
// student_dim -> 2048 -> 2048 -> 256 -> 65536; Sinkhorn-Knopp; the default
// loss weights; clipping at 3, layer decay 0.9, patch-embedding lr x 0.2;
// warmup-then-cosine schedules over 1000 steps. Features mode: teacher_dim
// 1536.
dl_train_config dl_bench_train_config(dl_train_mode mode, int batch, int student_dim);

// Uniform in [-0.5, 0.5) from a 64-bit LCG.
float dl_bench_uniform(uint64_t *state);

// A student with random weights: LayerNorm gains 1, LayerScale 1e-5 (as
// DINOv2 initializes it), everything else uniform in [-0.02, 0.02).
void dl_bench_random_student(dl_vit *vit, const dl_vit_config *cfg, uint64_t *state);

// The teacher's DINO and iBOT heads (ViT-g width in, the step's prototypes
// out), randomly initialized; only their last layers run in the step.
void dl_bench_teacher_heads(dl_head *dino, dl_head *ibot, const dl_train_config *cfg);

#endif
