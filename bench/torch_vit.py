"""PyTorch baseline for bench/run forward-*: the DINOv2 backbone of
tools/dinov2_torch.py with random weights, forward at RES, batch BATCH.

usage: /usr/bin/python3 bench/torch_vit.py SIZE BATCH RES REPEATS
"""
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import dinov2_torch  # noqa: E402


def main():
    size, batch, res, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    model = dinov2_torch.from_size(size).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(batch, 3, res, res)
    rates = []
    with torch.inference_mode():
        model.forward_features(x)  # warm-up
        for r in range(repeats):
            t0 = time.perf_counter()
            model.forward_features(x)
            rates.append(batch / (time.perf_counter() - t0))
            print(f"pytorch {size} repeat {r}: {rates[-1]:.3f} images/s", flush=True)
    print(f"torch_images_per_s={statistics.median(rates):.4f} torch={torch.__version__} "
          f"threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
