// Shared by the memory plan's files (student/memory_plan*.c): a phase's
// row counts and a head's sizes, as the step (model/train_step.c) forms them.
#ifndef DISTILL_STUDENT_MEMORY_PLAN_ROWS_H
#define DISTILL_STUDENT_MEMORY_PLAN_ROWS_H

#include "student/memory_plan.h"

#define DL_MEM_F32 sizeof(float)

static inline size_t dl_mem_max(size_t a, size_t b) { return a > b ? a : b; }

// Patch tokens per global crop.
static inline size_t dl_mem_patches(const dl_mem_shape *s) {
  const size_t g = (size_t)(s->global_size / s->student.patch);
  return g * g;
}
// Rows of the DINO head (every crop's CLS), of the global crops' patches,
// and of the iBOT head (the selection's, or every patch).
static inline size_t dl_mem_rows_cls(const dl_mem_shape *s) {
  return (size_t)(s->global_crops + s->local_crops) * s->batch;
}
static inline size_t dl_mem_rows_patch(const dl_mem_shape *s) {
  return (size_t)s->global_crops * s->batch * dl_mem_patches(s);
}
static inline size_t dl_mem_rows_ibot(const dl_mem_shape *s) {
  return s->ibot_rows > 0 ? (size_t)s->ibot_rows : dl_mem_rows_patch(s);
}
static inline bool dl_mem_proto(const dl_mem_shape *s) { return s->mode == DL_TRAIN_PROTOTYPES; }

// The teacher's last layer as the student loads it (student_model.c
// read_last_layer): a one-layer head of width `bottleneck`.
static inline dl_head_config dl_mem_teacher_last(int bottleneck, int prototypes) {
  return (dl_head_config){bottleneck, bottleneck, bottleneck, 1, prototypes};
}

// Input and output width of a head's MLP layer l.
static inline size_t dl_mem_layer_in(const dl_head_config *c, int l) {
  return l == 0 ? (size_t)c->in_dim : (size_t)c->hidden_dim;
}
static inline size_t dl_mem_layer_out(const dl_head_config *c, int l) {
  return l == c->nlayers - 1 ? (size_t)c->out_dim : (size_t)c->hidden_dim;
}

// The CPU's BLAS state (student/memory_plan_blas.c): the own sgemm's packed
// operand, bytes.
size_t dl_mem_sgemm_pack(const dl_mem_shape *s);

#endif
