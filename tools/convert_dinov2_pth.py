"""Convert an official DINOv2 PyTorch checkpoint (.pth) to safetensors.

Accepts the released hub backbones (dinov2_vit{s,b,l,g}14[_reg4]_pretrain.pth:
a flat state dict) and training checkpoints (a dict holding 'teacher', 'model'
or 'state_dict', names prefixed with 'backbone.', 'module.' or
'teacher.backbone.', blocks chunked as blocks.CHUNK.INDEX when block_chunks > 0).
A training run's teacher_checkpoint.pth ({'teacher': backbone.*, dino_head.*,
ibot_head.*}) and a full checkpoint holding student.* and teacher.* (only the
teacher's tensors are taken) both qualify.

The backbone is written to OUT in the official names that `distill` reads.
--heads HEADS.safetensors writes the teacher's DINO and iBOT heads to their
own file, the one `teacher.heads` and `train.teacher_heads` name
(dino_head.mlp.N.weight/bias, dino_head.last_layer.weight_g [K, 1] and
weight_v [K, bottleneck], the same under ibot_head.; each head keeps its own
bottleneck width, e.g. ViT-g/14's 384 and 256). A checkpoint trained with
ibot.separate_head: false has no ibot_head.*: the file then holds dino_head.*
only, which both sides read as one shared head. --keep-heads instead keeps the
head tensors in OUT (not loadable as a backbone; kept for inspection).

usage: /usr/bin/python3 tools/convert_dinov2_pth.py IN.pth OUT.safetensors [--heads HEADS.safetensors]
                                                   [--keep-heads] [--dtype f32|bf16|f16]
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
# torch >= 2.1 saves weight_norm as a parametrization; distill reads the
# names torch.nn.utils.weight_norm gives (the official code's).
WEIGHT_NORM = {"last_layer.parametrizations.weight.original0": "last_layer.weight_g",
               "last_layer.parametrizations.weight.original1": "last_layer.weight_v"}


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
    for old, new in WEIGHT_NORM.items():
        for head in HEADS:
            if name == head + old:
                name = head + new
    # block_chunks > 0 stores blocks.CHUNK.INDEX.*; the index is global.
    return re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", name)


def teacher_only(state):
    """A full training checkpoint holds the student and the teacher under
    student.* and teacher.*: the teacher's tensors are the ones served."""
    names = [k for k in state if torch.is_tensor(state[k])]
    if any(k.startswith("teacher.") for k in names) and any(k.startswith("student.") for k in names):
        return {k: v for k, v in state.items() if k.startswith("teacher.")}
    return state


def fail(path, msg):
    sys.stderr.write(f"convert_dinov2_pth: {path}: {msg}\n")
    sys.exit(2)


def head_summary(heads):
    """'DINO head: bottleneck B, K prototypes; ...' from the converted head tensors."""
    parts = []
    for prefix, label in (("dino_head.", "DINO"), ("ibot_head.", "iBOT")):
        v = heads.get(prefix + "last_layer.weight_v")
        if v is not None:
            parts.append(f"{label} head: bottleneck {v[1][1]}, {v[1][0]} prototypes")
    if not any(k.startswith("ibot_head.") for k in heads):
        parts.append("no ibot_head.*: a shared head (iBOT uses the DINO head)")
    return "; ".join(parts)


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
    ap.add_argument("--heads", metavar="HEADS.safetensors", help="write the DINO and iBOT heads to this file")
    ap.add_argument("--keep-heads", action="store_true")
    ap.add_argument("--dtype", choices=("f32", "bf16", "f16"), default="f32")
    args = ap.parse_args()
    if args.heads and args.keep_heads:
        fail(args.input, "--heads and --keep-heads exclude each other")
    try:
        obj = torch.load(args.input, map_location="cpu")
    except Exception as e:  # a corrupt or foreign file: one line, exit 2
        fail(args.input, f"cannot load: {e}")
    state = unwrap(obj)
    if not isinstance(state, dict) or not state:
        fail(args.input, "no state dict found")
    out, heads = {}, {}
    for name, value in teacher_only(state).items():
        if not torch.is_tensor(value):
            continue
        name = canonical(name)
        dest = heads if name.startswith(HEADS) and not args.keep_heads else out
        if name in dest:
            fail(args.input, f"two tensors map to '{name}'")
        dest[name] = to_entry(value, args.dtype)
    if "cls_token" not in out:
        fail(args.input, "no cls_token: not a DINOv2 backbone")
    if args.heads and "dino_head.last_layer.weight_v" not in heads:
        fail(args.input, "no dino_head.last_layer.weight_v: --heads needs a training checkpoint with the DINO head")
    st_io.write(args.output, out)
    skipped = f" (skipped {len(heads)} head tensors)" if heads and not args.heads else ""
    print(f"wrote {len(out)} tensors to {args.output}{skipped}")
    if args.heads:
        st_io.write(args.heads, heads, {"format": "pt"})
        print(f"wrote {len(heads)} head tensors to {args.heads}: {head_summary(heads)}")


if __name__ == "__main__":
    main()
