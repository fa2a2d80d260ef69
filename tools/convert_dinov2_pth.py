"""Convert an official DINOv2 PyTorch checkpoint (.pth) to safetensors.

Accepts the released hub backbones (dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth:
a flat state dict) and training checkpoints (a dict holding 'teacher', 'model'
or 'state_dict', names prefixed with 'backbone.', 'module.' or
'teacher.backbone.', blocks chunked as blocks.CHUNK.INDEX when block_chunks > 0).
Only the backbone is written, in the official names that `distill` reads;
--keep-heads also writes dino_head.* and ibot_head.* tensors.

usage: /usr/bin/python3 tools/convert_dinov2_pth.py IN.pth OUT.safetensors [--keep-heads] [--dtype f32|bf16|f16]
"""
import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

PREFIXES = ("module.", "teacher.", "backbone.")
HEADS = ("dino_head.", "ibot_head.")


def unwrap(obj):
    """The state dict inside a checkpoint, whatever it is wrapped in."""
    for key in ("teacher", "model", "state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return unwrap(obj[key])
    return obj


def canonical(name):
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
    # block_chunks > 0 stores blocks.CHUNK.INDEX.*; the index is global.
    return re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", name)


def to_entry(tensor, dtype):
    t = tensor.detach().cpu().contiguous()
    if dtype == "bf16":
        t = t.to(torch.bfloat16)
        return ("BF16", list(t.shape), t.view(torch.int16).numpy().tobytes())
    if dtype == "f16":
        t = t.to(torch.float16)
        return ("F16", list(t.shape), t.numpy().tobytes())
    t = t.float()
    return ("F32", list(t.shape), t.numpy().tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--keep-heads", action="store_true")
    ap.add_argument("--dtype", choices=("f32", "bf16", "f16"), default="f32")
    args = ap.parse_args()
    try:
        obj = torch.load(args.input, map_location="cpu")
    except Exception as e:  # a corrupt or foreign file: one line, exit 2
        sys.stderr.write(f"convert_dinov2_pth: {args.input}: cannot load: {e}\n")
        sys.exit(2)
    state = unwrap(obj)
    if not isinstance(state, dict) or not state:
        sys.stderr.write(f"convert_dinov2_pth: {args.input}: no state dict found\n")
        sys.exit(2)
    out, skipped = {}, 0
    for name, value in state.items():
        if not torch.is_tensor(value):
            continue
        name = canonical(name)
        if name.startswith(HEADS) and not args.keep_heads:
            skipped += 1
            continue
        if name in out:
            sys.stderr.write(f"convert_dinov2_pth: {args.input}: two tensors map to '{name}'\n")
            sys.exit(2)
        out[name] = to_entry(value, args.dtype)
    if "cls_token" not in out:
        sys.stderr.write(f"convert_dinov2_pth: {args.input}: no cls_token: not a DINOv2 backbone\n")
        sys.exit(2)
    st_io.write(args.output, out)
    print(f"wrote {len(out)} tensors to {args.output}" + (f" (skipped {skipped} head tensors)" if skipped else ""))


if __name__ == "__main__":
    main()
