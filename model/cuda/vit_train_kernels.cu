// Kernels of the ViT's training passes that no other op needs: the residual
// add, gathering the outputs' gradients into token order (and splitting the
// outputs out of it), and the backward
// pass of the embeddings (tokens, registers, mask token, positions).
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"
#include "model/cuda/vec_plan.h"

#define THREADS 256

static unsigned capped_blocks(size_t n) {
  const size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

// 16 bytes per thread and access over the first `head` elements (every
// pointer 16-byte aligned), one element at a time over the tail.
template <typename T>
__global__ void add_kernel(T *a, const T *b, size_t head, size_t n) {
  constexpr int W = dl_pack<T>::N;
  const size_t first = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = first * W; i < head; i += stride * W) {
    dl_pack<T> va = dl_ld_pack(a + i);
    const dl_pack<T> vb = dl_ld_pack(b + i);
    for (int k = 0; k < W; k++) dl_st(&va.v[k], dl_ld(&va.v[k]) + dl_ld(&vb.v[k]));
    dl_st_pack(a + i, va);
  }
  for (size_t i = head + first; i < n; i += stride) dl_st(a + i, dl_ld(a + i) + dl_ld(b + i));
}

extern "C" void dl_cuda_add(dl_dtype dt, void *a, const void *b, size_t n, cudaStream_t s) {
  const void *ptrs[] = {a, b};
  const dl_vec_split v = dl_vec_plan(n, dl_dtype_size(dt), ptrs, 2);
  DL_DISPATCH(dt, add_kernel<T><<<capped_blocks(v.head / v.width + v.tail), THREADS, 0, s>>>((T *)a, (const T *)b,
                                                                                             v.head, n));
  cudaCheckLaunch();
}

// g [n, t, D] in token order from the outputs' gradients (float, each may be NULL: zero).
template <typename T>
__global__ void gather_output_grads_kernel(T *g, const float *d_cls, const float *d_regs, const float *d_patches,
                                           int n, int np, int R, int D) {
  // Blocks over token rows, threads over channels: 32-bit division per row only.
  const int t = 1 + R + np;
  for (int row = blockIdx.x; row < n * t; row += gridDim.x) {
    const int tok = row % t, i = row / t;
    const float *src = tok == 0 ? (d_cls ? d_cls + (size_t)i * D : NULL)
                       : tok <= R ? (d_regs ? d_regs + ((size_t)i * R + tok - 1) * D : NULL)
                                  : (d_patches ? d_patches + ((size_t)i * np + tok - 1 - R) * D : NULL);
    for (int k = threadIdx.x; k < D; k += blockDim.x) dl_st(g + (size_t)row * D + k, src ? src[k] : 0.0f);
  }
}

extern "C" void dl_cuda_gather_output_grads(dl_dtype dt, void *g, const float *d_cls, const float *d_regs,
                                            const float *d_patches, int n, int np, int registers, int d,
                                            cudaStream_t s) {
  const int rows = n * (1 + registers + np);
  DL_DISPATCH(dt, gather_output_grads_kernel<T><<<rows < 65536 ? rows : 65536, THREADS, 0, s>>>(
                      (T *)g, d_cls, d_regs, d_patches, n, np, registers, d));
  cudaCheckLaunch();
}

// The reverse of the gather: x [n, t, D] in token order -> cls [n, D] and
// patches [n * np, D] (each may be NULL), same storage type.
template <typename T>
__global__ void split_tokens_kernel(T *cls, T *patches, const T *x, int n, int np, int R, int D) {
  const int t = 1 + R + np;
  for (int row = blockIdx.x; row < n * t; row += gridDim.x) {  // blocks over token rows, threads over channels
    const int tok = row % t, i = row / t;
    T *dst = tok == 0 ? (cls ? cls + (size_t)i * D : NULL)
                      : tok > R && patches ? patches + ((size_t)i * np + tok - 1 - R) * D : NULL;
    if (dst)
      for (int k = threadIdx.x; k < D; k += blockDim.x) dst[k] = x[(size_t)row * D + k];
  }
}

extern "C" void dl_cuda_split_tokens(dl_dtype dt, void *cls, void *patches, const void *x, int n, int np,
                                     int registers, int d, cudaStream_t s) {
  const int rows = n * (1 + registers + np);
  DL_DISPATCH(dt, split_tokens_kernel<T><<<rows < 65536 ? rows : 65536, THREADS, 0, s>>>((T *)cls, (T *)patches,
                                                                                    (const T *)x, n, np, registers,
                                                                                    d));
  cudaCheckLaunch();
}

// One thread per (token position, channel), summing over the images:
// cls and its position, registers, patch positions (into dpos), the tokens'
// gradient for the patch embedding (zero where masked) and the mask token's.
template <typename T>
__global__ void embed_backward_kernel(float *g_cls, float *g_pos0, float *g_reg, float *g_mask, float *dpos,
                                      T *dtok, const float *dx, const uint8_t *masks, int n, int np, int R, int D) {
  const int t = 1 + R + np;
  const size_t total = (size_t)t * D;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int k = (int)(e % D), tok = (int)(e / D);
    float sum = 0.0f, masked_sum = 0.0f;
    for (int i = 0; i < n; i++) {
      const float g = dx[((size_t)i * t + tok) * D + k];
      sum += g;
      if (tok > R) {
        const int q = tok - 1 - R;
        const bool masked = masks && masks[(size_t)i * np + q];
        if (masked) masked_sum += g;
        dl_st(dtok + ((size_t)i * np + q) * D + k, masked ? 0.0f : g);
      }
    }
    if (tok == 0) {
      g_cls[k] += sum;
      g_pos0[k] += sum;
    } else if (tok <= R) {
      g_reg[(size_t)(tok - 1) * D + k] += sum;
    } else {
      dpos[(size_t)(tok - 1 - R) * D + k] = sum;
      if (masked_sum != 0.0f) atomicAdd(g_mask + k, masked_sum);  // many positions share the mask token
    }
  }
}

extern "C" void dl_cuda_embed_backward(dl_dtype dt, float *g_cls, float *g_pos0, float *g_reg, float *g_mask,
                                       float *dpos, void *dtok, const float *dx, const uint8_t *masks, int n,
                                       int np, int registers, int d, cudaStream_t s) {
  const size_t total = (size_t)(1 + registers + np) * d;
  DL_DISPATCH(dt, embed_backward_kernel<T><<<capped_blocks(total), THREADS, 0, s>>>(
                      g_cls, g_pos0, g_reg, g_mask, dpos, (T *)dtok, dx, masks, n, np, registers, d));
  cudaCheckLaunch();
}

// The transpose of the resize: g_src[(a, b), c] += sum_{y, x} wy[y, a] wx[x, b] dpos[(y, x), c].
__global__ void pos_resize_backward_kernel(float *g_src, const float *dpos, const float *wy, const float *wx,
                                           int grid, int d, int gh, int gw) {
  const size_t total = (size_t)grid * grid * d;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int c = (int)(e % d), b = (int)(e / d % grid), a = (int)(e / d / grid);
    float acc = 0.0f;
    for (int y = 0; y < gh; y++) {
      const float wya = wy[(size_t)y * grid + a];
      if (wya == 0.0f) continue;
      float row = 0.0f;
      for (int x = 0; x < gw; x++) row += wx[(size_t)x * grid + b] * dpos[((size_t)y * gw + x) * d + c];
      acc += wya * row;
    }
    g_src[e] += acc;
  }
}

extern "C" void dl_cuda_pos_embed_resize_backward(float *g_src, const float *dpos, const float *wy, const float *wx,
                                                  int grid, int d, int gh, int gw, cudaStream_t s) {
  pos_resize_backward_kernel<<<capped_blocks((size_t)grid * grid * d), THREADS, 0, s>>>(g_src, dpos, wy, wx, grid,
                                                                                        d, gh, gw);
  cudaCheckLaunch();
}
