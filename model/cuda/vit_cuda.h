// The DINOv2 ViT forward pass on the GPU (the teacher's path): the structure
// of model/vit_forward.c, with every linear layer a cuBLASLt GEMM over all
// tokens of the batch, flash attention, and fused element-wise kernels.
// Storage bf16 (float32 for the parity tests), float32 accumulation.
#ifndef DISTILL_MODEL_CUDA_VIT_CUDA_H
#define DISTILL_MODEL_CUDA_VIT_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "model/cuda/matmul.h"
#include "model/vit.h"

typedef struct dl_cuda_vit {
  dl_vit_config cfg;
  const dl_vit_layout *layout;  // the host model's (not owned)
  dl_dtype dtype;
  bool fuse_gelu;               // cuBLASLt's tanh GELU in the fc1 epilogue (MLP blocks); off: exact GELU
  void *params;                 // device, layout.total elements of dtype
  dl_cuda_blas blas;
  cudaStream_t stream;
  // Grown on demand, reused across calls.
  void *work;
  size_t work_bytes;
  float *images, *outputs, *axis_weights;
  size_t images_cap, outputs_cap, axis_cap;  // floats
  unsigned char *masks;
  size_t masks_cap;
  float *host_outputs;
  size_t host_outputs_cap;
} dl_cuda_vit;

// Copies the host model's parameters to the current device in dtype.
void dl_cuda_vit_init(dl_cuda_vit *g, const dl_vit *host, dl_dtype dtype);
void dl_cuda_vit_free(dl_cuda_vit *g);

// The same contract as dl_vit_forward: host images in, host float32 outputs.
int dl_cuda_vit_forward(dl_cuda_vit *g, const float *images, int n, int h, int w, const bool *masks,
                        dl_vit_outputs *out, dl_err *err);

#endif
