"""PyTorch baseline for bench/run gpu-teacher-*: the DINOv2 ViT-g/14 of
tools/dinov2_torch.py on the GPU with random weights, bf16 autocast and
scaled-dot-product attention (as the official code runs with xFormers or
SDPA). Times what distill's teacher does per batch: host images in, host
outputs out.

usage: python3 bench/gpu/torch_teacher.py RES BATCH REPEATS
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import dinov2_torch  # noqa: E402


def sdpa_forward(self, x):
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return self.proj(out.transpose(1, 2).reshape(b, n, c))


def main():
    res, batch, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    dinov2_torch.Attention.forward = sdpa_forward
    torch.manual_seed(0)
    model = dinov2_torch.from_size("vitg14").cuda().eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(batch, 3, res, res).pin_memory()

    def step():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            out = model.forward_features(x.cuda(non_blocking=True))
            cls, patches = out["x_norm_clstoken"].float().cpu(), out["x_norm_patchtokens"].float().cpu()
        return cls, patches

    step()  # warm-up: kernels chosen, memory pooled
    step()
    rates = []
    for r in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        rates.append(batch / (time.perf_counter() - t0))
        print(f"pytorch vitg14 {res}px batch {batch} repeat {r}: {rates[-1]:.2f} images/s", flush=True)
    print(f"torch_images_per_s={statistics.median(rates):.4f} torch={torch.__version__} "
          f"device={torch.cuda.get_device_name(0).replace(' ', '_')}")


if __name__ == "__main__":
    main()
