"""The student's exported EMA backbone in PyTorch: loads the export with the
official names into tools/dinov2_torch.py (load_state_dict, strict) and
compares its features with `distill embed` on the same random input, at the
stored grid and at a larger one (position interpolation). Relative error
<= 1e-4 per output tensor.

usage: /usr/bin/python3 export_torch.py DISTILL EXPORT WORK_DIR
"""
import os
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402


def main():
    distill, export, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    tensors, _ = st_io.read(export)
    sd = {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape) if raw else torch.zeros(shape)
          for k, (dt, shape, raw) in tensors.items()}
    dim = sd["cls_token"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    grid = int(round((sd["pos_embed"].shape[1] - 1) ** 0.5))
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    model = dinov2_torch.DinoVisionTransformer(dim, depth, heads=2, patch=14, grid=grid, hidden=hidden)
    model.load_state_dict(sd, strict=True)
    model.eval()
    failures = 0
    torch.manual_seed(0)
    for size in (14 * grid, 14 * (grid + 1)):
        x = torch.randn(3, 3, size, size)
        inp, out = os.path.join(work, f"in{size}.safetensors"), os.path.join(work, f"out{size}.safetensors")
        st_io.write(inp, {"x": ("F32", list(x.shape), x.numpy().tobytes())})
        subprocess.run([distill, "embed", "--weights", export, "--heads", "2", "--input", inp, "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        ours, _ = st_io.read(out)
        with torch.no_grad():
            ref = model.forward_features(x)
        for name in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
            dt, shape, raw = ours[name]
            got = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
            want = ref[name].reshape(shape)
            rel = float((got - want).norm() / want.norm())
            ok = rel <= 1e-4
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {size} px {name}: relative error {rel:.3g} (<= 1e-4)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
