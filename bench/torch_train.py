"""PyTorch baseline for bench/run train-vits14: the same training step as
bench/bench_train.c, written as the official DINOv2 code computes it
(ssl_meta_arch.py's losses, DINOHead, sinkhorn_knopp_teacher, KoLeo,
clip_grad_norm_ per module, AdamW over per-parameter groups, the EMA with
_foreach ops), with the ViT-S/14 backbone of tools/dinov2_torch.py.

usage: /usr/bin/python3 bench/torch_train.py BATCH REPEATS
"""
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import dinov2_torch  # noqa: E402

G, L, K, BN, HIDDEN = 2, 8, 65536, 256, 2048


class DINOHead(nn.Module):
    def __init__(self, in_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN), nn.GELU(),
                                 nn.Linear(HIDDEN, BN))
        self.last_layer = nn.utils.weight_norm(nn.Linear(BN, K, bias=False))
        self.last_layer.weight_g.data.fill_(1)

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1, p=2, eps=1e-12)
        return self.last_layer(x)


@torch.no_grad()
def sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=3):
    Q = torch.exp(teacher_output.float() / teacher_temp).t()
    B, K_ = Q.shape[1], Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(n_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= K_
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def koleo(x, eps=1e-8):
    x = F.normalize(x, eps=eps, p=2, dim=-1)
    dots = torch.mm(x, x.t())
    dots.view(-1)[:: (x.shape[0] + 1)].fill_(-1)
    _, I = torch.max(dots, dim=1)
    return -torch.log(nn.PairwiseDistance(2, eps=1e-8)(x, x[I]) + eps).mean()


def param_multipliers(module, name, depth, layer_decay=0.9, patch_embed_lr_mult=0.2):
    """DINOv2's parameter groups (utils/param_groups.py): the learning-rate
    multiplier (layer decay by block, patch embedding scaled), the weight
    decay multiplier and whether the parameter is a last layer."""
    layer_id = depth + 1
    if module == "backbone":
        if name.startswith(("pos_embed", "patch_embed", "mask_token", "cls_token")):
            layer_id = 0
        elif name.startswith("blocks."):
            layer_id = int(name.split(".")[1]) + 1
    lr_mult = layer_decay ** (depth + 1 - layer_id) * (patch_embed_lr_mult if "patch_embed" in name else 1.0)
    wd_mult = 0.0 if (name.endswith(".bias") or "norm" in name or "gamma" in name) else 1.0
    return lr_mult, wd_mult, "last_layer" in name


def backward_and_update(loss, opt, modules, params, ema, mom, clip=3.0):
    """The end of a DINOv2 step: backward, clip_grad_norm_ per module, the
    optimizer step, and the EMA of the parameters with _foreach ops."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for mod in modules:
        nn.utils.clip_grad_norm_(mod.parameters(), clip)
    opt.step()
    with torch.no_grad():
        torch._foreach_mul_(ema, mom)
        torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - mom)


def main():
    batch, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    student = nn.ModuleDict({"backbone": dinov2_torch.from_size("vits14"), "dino_head": DINOHead(384),
                             "ibot_head": DINOHead(384)})
    for name, p in student["backbone"].named_parameters():
        with torch.no_grad():
            p.normal_(0.0, 0.02) if "norm" not in name else p.fill_(1.0)
    teacher_last = [nn.utils.weight_norm(nn.Linear(BN, K, bias=False)) for _ in range(2)]
    for m in teacher_last:
        m.requires_grad_(False)
    groups = []
    depth = 12
    for mname, mod in student.items():
        for name, p in mod.named_parameters():
            lr_mult, wd_mult, last = param_multipliers(mname, name, depth)
            groups.append({"params": [p], "lr_mult": lr_mult, "wd_mult": wd_mult, "last": last})
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    ema = [p.detach().clone() for p in student.parameters()]
    params = list(student.parameters())
    gimg = torch.randn(G * batch, 3, 224, 224)
    limg = torch.randn(L * batch, 3, 98, 98)
    tcls = F.normalize(torch.randn(G * batch, BN), dim=-1)
    tpatch = F.normalize(torch.randn(G * batch * 256, BN), dim=-1)

    def step(it):
        lr, wd, mom, temp = 1e-3 * min(1.0, (it + 1) / 10), 0.04, 0.994, 0.04
        for g in opt.param_groups:
            g["lr"], g["weight_decay"] = lr * g["lr_mult"], wd * g["wd_mult"]
        og = student["backbone"].forward_features(gimg)
        ol = student["backbone"].forward_features(limg)
        cls_g, patch_g, cls_l = og["x_norm_clstoken"], og["x_norm_patchtokens"], ol["x_norm_clstoken"]
        with torch.no_grad():
            t_cls = sinkhorn_knopp(teacher_last[0](tcls), temp).view(G, batch, K)
            t_patch = sinkhorn_knopp(teacher_last[1](tpatch), temp)
        s_cls = student["dino_head"](torch.cat((cls_g, cls_l)))
        s_patch = student["ibot_head"](patch_g.flatten(0, 1))
        # DINO: local crops against both teacher crops, each global crop
        # against the other (the teacher's crops swapped), over the 18 pairs.
        n_terms = G * (G - 1) + L * G
        lsm = F.log_softmax(s_cls / 0.1, dim=-1)
        loss_local, loss_global = 0, 0
        for s in lsm[G * batch:].chunk(L):
            for t in t_cls:
                loss_local = loss_local - torch.sum(t * s, dim=-1).mean()
        swapped = torch.cat((t_cls[1], t_cls[0]))
        loss_global = -torch.sum(swapped * lsm[: G * batch], dim=-1).mean() * 2
        dino = (loss_local + loss_global) / n_terms
        ibot_l = torch.sum(t_patch * F.log_softmax(s_patch / 0.1, dim=-1), dim=-1)
        ibot = -(ibot_l * (1.0 / 256)).sum() / (G * batch)
        ko = 0.1 * sum(koleo(c) for c in cls_g.chunk(G))
        loss = dino + ibot + ko
        backward_and_update(loss, opt, student.values(), params, ema, mom)
        return float(loss), float(dino), float(ibot), float(ko)

    times = []
    for it in range(-1, repeats):
        t0 = time.perf_counter()
        losses = step(it + 1)
        dt = time.perf_counter() - t0
        print(f"pytorch step {it + 1}: {dt:.3f} s  loss {losses[0]:.4f} (dino {losses[1]:.4f} ibot {losses[2]:.4f} "
              f"koleo {losses[3]:.4f})", flush=True)
        if it >= 0:
            times.append(dt)
    print(f"torch_step_s={statistics.median(times):.4f} torch={torch.__version__} threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
