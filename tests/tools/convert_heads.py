"""tools/convert_dinov2_pth.py on DINOv2 training checkpoints written here by
torch the way the official code writes them, checking that every produced
tensor equals its input exactly:

- teacher_checkpoint.pth ({'teacher': model.teacher.state_dict()}):
  backbone.* with chunked blocks, dino_head.* with a 384-wide bottleneck and
  ibot_head.* with a 256-wide one (ViT-g/14's), weight-normed last layers;
  --heads writes the heads to their own file, the backbone file has none;
- the same with a shared head (ibot.separate_head: false: no ibot_head.*):
  the heads file holds dino_head.* only;
- a full checkpoint ({'model': student.* and teacher.*, plus the losses'
  centers}): the teacher's tensors are taken, not the student's, and last
  layers saved as torch >= 2.1's weight_norm parametrization get the
  official names;
- --heads on a hub backbone (no heads) ends with exit 2 and one line.

usage: /usr/bin/python3 tests/tools/convert_heads.py OUT_DIR
"""
import os
import subprocess
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "..", "..", "tools")
sys.path.insert(0, TOOLS)
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402

CONVERT = os.path.join(TOOLS, "convert_dinov2_pth.py")
failures = 0


def check(cond, msg):
    global failures
    print(("ok   " if cond else "FAIL ") + msg)
    failures += 0 if cond else 1


def dino_head(in_dim, hidden, bottleneck, prototypes):
    """dinov2/layers/dino_head.py's module layout: mlp.0/2/4 and a
    weight-normed last layer (weight_g, weight_v)."""
    mod = nn.Module()
    mod.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                            nn.Linear(hidden, bottleneck))
    mod.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck, prototypes, bias=False))
    with torch.no_grad():
        for p in mod.parameters():
            p.normal_()
    return mod


def teacher_state(separate_head):
    """model.teacher.state_dict() of a small run: blocks chunked in 2 (block_chunks 2)."""
    backbone = dinov2_torch.DinoVisionTransformer(dim=32, depth=4, heads=2, patch=4, grid=4, hidden=64)
    with torch.no_grad():
        for p in backbone.parameters():
            p.normal_()
    sd = {}
    for k, v in backbone.state_dict().items():
        parts = k.split(".")
        if parts[0] == "blocks":
            k = f"blocks.{int(parts[1]) // 2}." + ".".join(parts[1:])
        sd["backbone." + k] = v
    heads = {"dino_head": dino_head(32, 48, 384, 40)}
    if separate_head:
        heads["ibot_head"] = dino_head(32, 48, 256, 24)
    for name, mod in heads.items():
        for k, v in mod.state_dict().items():
            sd[f"{name}.{k}"] = v
    return sd


def expected(sd):
    """Canonical name -> tensor: the backbone's official names, the heads' as they are."""
    out = {}
    for k, v in sd.items():
        k = k[len("backbone."):] if k.startswith("backbone.") else k
        parts = k.split(".")
        if parts[0] == "blocks":
            k = "blocks." + ".".join(parts[2:])
        out[k] = v
    return out


def read(path):
    tensors, _ = st_io.read(path)
    return {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape) if raw else torch.zeros(shape)
            for k, (dt, shape, raw) in tensors.items()}


def run(*args):
    return subprocess.run([sys.executable, CONVERT, *args], capture_output=True, text=True)


def compare(label, got, want):
    names_ok = sorted(got) == sorted(want)
    bad = [k for k in want if k in got and (list(got[k].shape) != list(want[k].shape) or
                                            not torch.equal(got[k], want[k].float()))]
    check(names_ok and not bad, f"{label}: {len(got)} tensors, names {'equal' if names_ok else 'DIFFER'} "
          f"({sorted(set(got) ^ set(want))[:4]}), {len(bad)} differ in shape or value {bad[:4]}")


def case_teacher_checkpoint(out, separate_head):
    name = "separate" if separate_head else "shared"
    sd = teacher_state(separate_head)
    pth = os.path.join(out, f"teacher_checkpoint.{name}.pth")
    torch.save({"teacher": sd}, pth)
    backbone, heads = os.path.join(out, f"{name}.backbone.safetensors"), os.path.join(out, f"{name}.heads.safetensors")
    r = run(pth, backbone, "--heads", heads)
    check(r.returncode == 0, f"{name} head: the tool converts teacher_checkpoint.pth: {r.stdout.strip()}{r.stderr.strip()}")
    if r.returncode:
        return
    want = expected(sd)
    compare(f"{name} head: backbone file", read(backbone), {k: v for k, v in want.items() if "_head." not in k})
    compare(f"{name} head: heads file", read(heads), {k: v for k, v in want.items() if "_head." in k})
    got = read(heads)
    widths = [got[p + "last_layer.weight_v"].shape[1] for p in ("dino_head.", "ibot_head.")
              if p + "last_layer.weight_v" in got]
    check(widths == ([384, 256] if separate_head else [384]),
          f"{name} head: bottleneck widths in the heads file {widths}, "
          f"{'ibot_head.* present' if separate_head else 'no ibot_head.*'}")


def case_full_checkpoint(out):
    teacher, student = teacher_state(True), teacher_state(True)
    model = {f"teacher.{k}": v for k, v in teacher.items()}
    model.update({f"student.{k}": v for k, v in student.items()})
    model["dino_loss.center"] = torch.zeros(1, 40)
    model["ibot_patch_loss.center"] = torch.zeros(1, 1, 24)
    for head in ("dino_head", "ibot_head"):  # torch >= 2.1's weight_norm names
        model[f"teacher.{head}.last_layer.parametrizations.weight.original0"] = model.pop(
            f"teacher.{head}.last_layer.weight_g")
        model[f"teacher.{head}.last_layer.parametrizations.weight.original1"] = model.pop(
            f"teacher.{head}.last_layer.weight_v")
    pth = os.path.join(out, "model_final.pth")
    torch.save({"model": model, "iteration": 9}, pth)
    backbone, heads = os.path.join(out, "full.backbone.safetensors"), os.path.join(out, "full.heads.safetensors")
    r = run(pth, backbone, "--heads", heads)
    check(r.returncode == 0, f"full checkpoint (student.* and teacher.*): converted: {r.stdout.strip()}{r.stderr.strip()}")
    if r.returncode:
        return
    want = expected(teacher)
    compare("full checkpoint: backbone file = the teacher's backbone", read(backbone),
            {k: v for k, v in want.items() if "_head." not in k})
    compare("full checkpoint: heads file = the teacher's heads (parametrization names mapped)", read(heads),
            {k: v for k, v in want.items() if "_head." in k})


def case_no_heads(out):
    sd = expected(teacher_state(False))
    pth = os.path.join(out, "hub.pth")
    torch.save({k: v for k, v in sd.items() if "_head." not in k}, pth)
    r = run(pth, os.path.join(out, "hub.safetensors"), "--heads", os.path.join(out, "hub.heads.safetensors"))
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "no dino_head" in lines[0],
          f"--heads on a hub backbone: exit {r.returncode}, {len(lines)} line: {lines[:1]}")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(5)
    case_teacher_checkpoint(out, True)
    case_teacher_checkpoint(out, False)
    case_full_checkpoint(out)
    case_no_heads(out)
    print(f"convert_heads: {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
