// Activation buffers of the CUDA ViT forward inside one device allocation.
#ifndef DISTILL_MODEL_CUDA_VIT_CUDA_LAYOUT_H
#define DISTILL_MODEL_CUDA_VIT_CUDA_LAYOUT_H

#include <stddef.h>

#include "model/vit_config.h"

typedef struct dl_cuda_vit_buffers {
  void *x, *ln, *qkv, *attn, *hidden, *gated, *tmp, *unfold, *pos;
} dl_cuda_vit_buffers;

// Sets the buffers' addresses inside base (NULL: only measures) for n images
// of h x w pixels with elem-byte elements, except x, the residual stream,
// always float32; returns the bytes needed. Every
// buffer starts 256-byte aligned and none overlaps the next.
size_t dl_cuda_vit_carve(dl_cuda_vit_buffers *b, unsigned char *base, const dl_vit_config *c, size_t elem, int n,
                         int h, int w);

// Multiply-adds x 2 of one image's forward pass at h x w: every linear layer
// plus the two attention products (QK^T and PV); element-wise work is not
// counted, as model-FLOP utilization (MFU) is conventionally defined.
double dl_vit_forward_flops(const dl_vit_config *c, int h, int w);

#endif
