// Kernels that only the ViT needs: patch unfolding, token assembly and the
// position-embedding resize (the separable 1-D weights of model/pos_embed.h).
#include "model/cuda/cuda_check.h"
#include "model/cuda/kernels_common.cuh"

#define THREADS 256

template <typename T>
__global__ void unfold_kernel(T *out, const float *img, int n, int h, int w, int p) {
  // Blocks over patches, threads over a patch's 3 p p values: 32-bit index
  // math, no 64-bit division per element.
  const int gh = h / p, gw = w / p, row = 3 * p * p;
  for (int patch = blockIdx.x; patch < n * gh * gw; patch += gridDim.x) {
    const int gx = patch % gw, gy = patch / gw % gh, i = patch / gw / gh;
    for (int col = threadIdx.x; col < row; col += blockDim.x) {
      const int c = col / (p * p), ky = col / p % p, kx = col % p;
      dl_st(out + (size_t)patch * row + col, img[(((size_t)i * 3 + c) * h + gy * p + ky) * w + gx * p + kx]);
    }
  }
}

template <typename T>
__global__ void assemble_kernel(float *x, const T *patch_tokens, const T *cls, const T *pos0, const T *regs,
                                const T *mask_token, const T *pos, const uint8_t *masks, int n, int np, int R,
                                int d) {
  // Blocks over token rows, threads over channels: 32-bit division per row only.
  const int t = 1 + R + np;
  for (int row = blockIdx.x; row < n * t; row += gridDim.x) {
    const int tok = row % t, i = row / t, q = tok - 1 - R;
    const bool masked = tok > R && masks && masks[(size_t)i * np + q];
    float *xr = x + (size_t)row * d;
    for (int k = threadIdx.x; k < d; k += blockDim.x) {
      float v;
      if (tok == 0) v = dl_ld(cls + k) + dl_ld(pos0 + k);
      else if (tok <= R) v = dl_ld(regs + (size_t)(tok - 1) * d + k);  // registers carry no position
      else
        v = (masked ? dl_ld(mask_token + k) : dl_ld(patch_tokens + ((size_t)i * np + q) * d + k)) +
            dl_ld(pos + (size_t)q * d + k);
      xr[k] = v;
    }
  }
}

// dst[(y, x), c] = sum_{a, b} wy[y, a] wx[x, b] src[(a, b), c]: separable,
// so first along x into tmp-free form per output (grid <= 37: 1369 terms).
template <typename T>
__global__ void pos_resize_kernel(T *dst, const T *src, const float *wy, const float *wx, int grid, int d, int gh,
                                  int gw) {
  const size_t total = (size_t)gh * gw * d;
  for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
    const int c = (int)(e % d), xo = (int)(e / d % gw), yo = (int)(e / d / gw);
    float acc = 0.0f;
    for (int a = 0; a < grid; a++) {
      const float wya = wy[(size_t)yo * grid + a];
      if (wya == 0.0f) continue;  // bicubic rows have at most a few non-zero taps
      float row = 0.0f;
      for (int b = 0; b < grid; b++) row += wx[(size_t)xo * grid + b] * dl_ld(src + ((size_t)a * grid + b) * d + c);
      acc += wya * row;
    }
    dl_st(dst + e, acc);
  }
}

static unsigned capped_blocks(size_t n) {
  const size_t b = (n + THREADS - 1) / THREADS;
  return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}

extern "C" void dl_cuda_unfold_patches(dl_dtype dt, void *out, const float *images, int n, int h, int w, int p,
                                       cudaStream_t s) {
  const int patches = n * (h / p) * (w / p);
  DL_DISPATCH(dt, unfold_kernel<T><<<patches < 65536 ? (patches > 0 ? patches : 1) : 65536, THREADS, 0, s>>>(
                      (T *)out, images, n, h, w, p));
  cudaCheckLaunch();
}

extern "C" void dl_cuda_assemble_tokens(dl_dtype dt, float *x, const void *patch_tokens, const void *cls,
                                        const void *pos0, const void *regs, const void *mask_token, const void *pos,
                                        const uint8_t *masks, int n, int np, int registers, int d, cudaStream_t s) {
  const int rows = n * (1 + registers + np);
  DL_DISPATCH(dt, assemble_kernel<T><<<rows < 65536 ? rows : 65536, THREADS, 0, s>>>(
                      x, (const T *)patch_tokens, (const T *)cls, (const T *)pos0, (const T *)regs,
                      (const T *)mask_token, (const T *)pos, masks, n, np, registers, d));
  cudaCheckLaunch();
}

extern "C" void dl_cuda_pos_embed_resize(dl_dtype dt, void *dst, const void *src, const float *wy, const float *wx,
                                         int grid, int d, int gh, int gw, cudaStream_t s) {
  const size_t total = (size_t)gh * gw * d;
  DL_DISPATCH(dt, pos_resize_kernel<T><<<capped_blocks(total), THREADS, 0, s>>>((T *)dst, (const T *)src, wy, wx,
                                                                                grid, d, gh, gw));
  cudaCheckLaunch();
}
