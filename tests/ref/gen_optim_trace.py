"""A 10-step optimizer trace with PyTorch (Debian's torch): torch.optim.AdamW
over DINOv2's parameter groups (layer-wise decay, patch-embed multiplier, no
weight decay on biases/norms/LayerScale (tokens decayed), last layer frozen first),
torch.nn.utils.clip_grad_norm_ per module, the schedules as DINOv2's
CosineScheduler computes them, and the EMA as DINOv2's update_teacher.

The gradients are fixed random tensors per step (stored in the file), sized
so that clipping acts on some steps and not on others; the trace checks the
optimizer, not a backward pass.

usage: /usr/bin/python3 tests/ref/gen_optim_trace.py OUT_DIR
"""
import math
import os
import sys

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402

STEPS = 10
DEPTH = 2
CLIP = 3.0
LAYER_DECAY = 0.9
PATCH_EMBED_LR_MULT = 0.2
FREEZE_LAST_LAYER = 4
GRAD_NORMS = [0.5, 8.0, 1.0, 20.0, 2.9, 3.1, 0.1, 50.0, 1.5, 6.0]


class CosineScheduler:
    # dinov2/utils/utils.py
    def __init__(self, base_value, final_value, total_iters, warmup_iters=0, start_warmup_value=0, freeze_iters=0):
        self.final_value = final_value
        self.total_iters = total_iters
        freeze_schedule = np.zeros((freeze_iters))
        warmup_schedule = np.linspace(start_warmup_value, base_value, warmup_iters)
        iters = np.arange(total_iters - warmup_iters - freeze_iters)
        schedule = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * iters / len(iters)))
        self.schedule = np.concatenate((freeze_schedule, warmup_schedule, schedule))

    def __getitem__(self, it):
        return self.final_value if it >= self.total_iters else self.schedule[it]


class DINOHead(nn.Module):
    # dinov2/layers/dino_head.py with nlayers 3
    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)

    def forward(self, x):
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2, eps=1e-12)
        return self.last_layer(x)


def lr_multiplier(module, name):
    # get_vit_lr_decay_rate: embeddings layer 0, block i layer i + 1, the
    # rest (final norm, heads) depth + 1.
    layer_id = DEPTH + 1
    if module == "backbone":
        if name.startswith(("pos_embed", "patch_embed", "mask_token", "cls_token", "register_tokens")):
            layer_id = 0
        elif name.startswith("blocks."):
            layer_id = int(name.split(".")[1]) + 1
    mult = LAYER_DECAY ** (DEPTH + 1 - layer_id)
    if "patch_embed" in name:
        mult *= PATCH_EMBED_LR_MULT
    return mult


def wd_multiplier(name):
    # DINOv2's rule, plus the tokens and position embeddings (this project's
    # layout exempts them too).
    no_wd = name.endswith(".bias") or "norm" in name or "gamma" in name
    return 0.0 if no_wd else 1.0


def entry(t):
    t = t.detach().contiguous().float()
    return ("F32", list(t.shape), t.numpy().tobytes())


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    modules = {
        "backbone": dinov2_torch.DinoVisionTransformer(dim=32, depth=DEPTH, heads=1, grid=2, hidden=64),
        "dino_head": DINOHead(32, 24, 48, 16),
    }
    res = {}
    groups, named = [], {}
    for mname, mod in modules.items():
        for name, p in mod.named_parameters():
            with torch.no_grad():
                p.normal_(0.0, 0.5)
            res[f"init.{mname}.{name}"] = entry(p)
            named[(mname, name)] = p
            groups.append({"params": [p], "lr": 0.0, "weight_decay": 0.0, "module": mname, "pname": name,
                           "lr_mult": lr_multiplier(mname, name), "wd_mult": wd_multiplier(name),
                           "is_last_layer": "last_layer" in name})
    ema = {k: p.detach().clone() for k, p in named.items()}
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
    lr_s = CosineScheduler(1e-2, 1e-4, STEPS, warmup_iters=3)
    last_s = CosineScheduler(1e-2, 1e-4, STEPS, warmup_iters=3)
    last_s.schedule[:FREEZE_LAST_LAYER] = 0
    wd_s = CosineScheduler(0.04, 0.2, STEPS)
    mom_s = CosineScheduler(0.9, 1.0, STEPS)
    temp_s = CosineScheduler(0.07, 0.07, STEPS, warmup_iters=4, start_warmup_value=0.04)
    sched = {k: [] for k in ("lr", "last_layer_lr", "wd", "momentum", "teacher_temp", "norm_backbone", "norm_dino_head")}
    for it in range(STEPS):
        lr, wd, mom, last_lr = lr_s[it], wd_s[it], mom_s[it], last_s[it]
        for k, v in (("lr", lr), ("last_layer_lr", last_lr), ("wd", wd), ("momentum", mom), ("teacher_temp", temp_s[it])):
            sched[k].append(v)
        for g in opt.param_groups:
            g["weight_decay"] = wd * g["wd_mult"]
            g["lr"] = (last_lr if g["is_last_layer"] else lr) * g["lr_mult"]
        for mname, mod in modules.items():
            params = list(mod.parameters())
            total = sum(p.numel() for p in params)
            for name, p in mod.named_parameters():
                p.grad = torch.randn_like(p) * (GRAD_NORMS[it] / math.sqrt(total))
                res[f"grad.{it}.{mname}.{name}"] = entry(p.grad)
            norm = torch.nn.utils.clip_grad_norm_(params, CLIP)
            sched[f"norm_{mname}"].append(float(norm))
        opt.step()
        with torch.no_grad():
            for k, p in named.items():
                ema[k].mul_(mom).add_(p.detach(), alpha=1 - mom)
    for (mname, name), p in named.items():
        res[f"final.{mname}.{name}"] = entry(p)
        res[f"ema.{mname}.{name}"] = entry(ema[(mname, name)])
    for k, v in sched.items():
        res[f"sched.{k}"] = ("F64", [STEPS], np.array(v, dtype=np.float64).tobytes())
    st_io.write(os.path.join(out, "optim_trace.safetensors"), res, {"steps": str(STEPS), "torch": torch.__version__})
    print(f"wrote {out}/optim_trace.safetensors: {len(named)} tensors, {STEPS} steps, "
          f"clipped backbone norms {['%.2f' % n for n in sched['norm_backbone']]}")


if __name__ == "__main__":
    main()
