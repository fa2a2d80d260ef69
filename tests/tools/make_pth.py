"""Writes the reference weights as PyTorch checkpoints the way the official
code saves them: a flat hub-style state dict, and a training checkpoint with
'teacher' -> 'backbone.' names, blocks chunked (block_chunks=2) and a DINO
head beside the backbone. tools/convert_dinov2_pth.py must turn both back.

usage: /usr/bin/python3 make_pth.py WEIGHTS.safetensors OUT_DIR
"""
import os
import re
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import st_io  # noqa: E402


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    tensors, _ = st_io.read(src)
    sd = {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape).clone()
          for k, (dt, shape, raw) in tensors.items()}
    stem = os.path.basename(src).replace(".safetensors", "")
    torch.save(sd, os.path.join(out_dir, stem + ".hub.pth"))
    depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
    chunk = (depth + 1) // 2
    chunked = {}
    for k, v in sd.items():
        m = re.match(r"blocks\.(\d+)\.(.*)", k)
        if m:
            i = int(m.group(1))
            k = f"blocks.{i // chunk}.{i}.{m.group(2)}"
        chunked["backbone." + k] = v
    chunked["dino_head.last_layer.weight_g"] = torch.ones(10, 1)
    torch.save({"teacher": chunked, "iteration": 7}, os.path.join(out_dir, stem + ".train.pth"))
    print(f"wrote {stem}.hub.pth and {stem}.train.pth")


if __name__ == "__main__":
    main()
