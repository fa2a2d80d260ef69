"""Three whole distillation steps in PyTorch (Debian's torch), as the
official DINOv2 code computes them, for tests/train/test_step_trace.c: a
small student (ViT dim 32, depth 2, patch 4) with DINO and iBOT heads, 2
global crops (16 px) and 2 local crops (8 px) per image, batch 4; the
teacher's frozen last layers on fixed bottlenecks, Sinkhorn-Knopp targets
at the scheduled temperature; DINO over the 6 (student, teacher) pairs with
the teacher's global crops swapped, iBOT over every global patch, KoLeo
(0.1) per global crop; clip_grad_norm_ per module, AdamW with DINOv2's
groups and schedules (last layer frozen for 2 steps), the EMA.

usage: /usr/bin/python3 tests/ref/gen_step_trace.py OUT_DIR
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402
from gen_optim_trace import DEPTH, CosineScheduler, DINOHead, entry, lr_multiplier, wd_multiplier  # noqa: E402

STEPS, B, G, L, GS, LS, K, BN = 3, 4, 2, 2, 16, 8, 16, 8


@torch.no_grad()
def sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=3):
    Q = torch.exp(teacher_output.float() / teacher_temp).t()
    Bq, Kq = Q.shape[1], Q.shape[0]
    Q /= torch.sum(Q)
    for _ in range(n_iterations):
        Q /= torch.sum(Q, dim=1, keepdim=True)
        Q /= Kq
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= Bq
    Q *= Bq
    return Q.t()


def koleo(x, eps=1e-8):
    x = F.normalize(x, eps=eps, p=2, dim=-1)
    dots = torch.mm(x, x.t())
    dots.view(-1)[:: (x.shape[0] + 1)].fill_(-1)
    _, idx = torch.max(dots, dim=1)
    return -torch.log(nn.PairwiseDistance(2, eps=1e-8)(x, x[idx]) + eps).mean()


def dino_ce(student_list, teacher_list, temp=0.1):
    total = 0
    for s in student_list:
        lsm = F.log_softmax(s / temp, dim=-1)
        for t in teacher_list:
            total = total - torch.sum(t * lsm, dim=-1).mean()
    return total


def dino_loss(s_cls, t_cls, G, L, B):
    """DINOv2's DINO term over the (student crop, teacher crop) pairs: the
    local crops against every teacher global crop, the two global crops
    against each other, divided by the number of pairs."""
    n_terms = G * (G - 1) + L * G
    local = dino_ce(s_cls[G * B:].chunk(L), list(t_cls))
    glob = dino_ce([s_cls[: G * B]], [torch.cat((t_cls[1], t_cls[0]))]) * 2
    return (local + glob) / n_terms


def init_(mod):
    """Values of the size trained weights have (the official init's 1e-5
    LayerScale and zero biases would hide most of the backbone's gradient)."""
    with torch.no_grad():
        for name, p in mod.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.uniform_(0.7, 1.3)
            elif "gamma" in name:
                p.uniform_(0.3, 0.6)
            elif p.dim() >= 2 and "token" not in name and "pos_embed" not in name:
                p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.1)
            else:
                p.normal_(0.0, 0.1)


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(3)
    student = nn.ModuleDict({
        "backbone": dinov2_torch.DinoVisionTransformer(dim=32, depth=DEPTH, heads=2, patch=4, grid=GS // 4, hidden=64),
        "dino_head": DINOHead(32, K, 48, BN), "ibot_head": DINOHead(32, K, 48, BN)})
    teacher = {"teacher_dino": DINOHead(64, K, 48, BN), "teacher_ibot": DINOHead(64, K, 48, BN)}
    res = {}
    with torch.no_grad():
        for mname, mod in list(student.items()) + list(teacher.items()):
            init_(mod)
            for name, p in mod.named_parameters():
                res[f"init.{mname}.{name}"] = entry(p)
    for m in teacher.values():
        m.requires_grad_(False)
    gimg, limg = torch.randn(G * B, 3, GS, GS), torch.randn(L * B, 3, LS, LS)
    tcls = F.normalize(torch.randn(G * B, BN), dim=-1)
    tpatch = F.normalize(torch.randn(G * B * (GS // 4) ** 2, BN), dim=-1)
    for k, v in (("global_images", gimg), ("local_images", limg), ("teacher_cls", tcls), ("teacher_patch", tpatch)):
        res[f"input.{k}"] = entry(v)

    groups, named = [], []
    for mname, mod in student.items():
        for name, p in mod.named_parameters():
            groups.append({"params": [p], "lr_mult": lr_multiplier(mname, name), "wd_mult": wd_multiplier(name),
                           "last": "last_layer" in name})
            named.append((mname, name, p))
    opt = torch.optim.AdamW(groups, lr=0.0, betas=(0.9, 0.999), eps=1e-8)
    ema = [p.detach().clone() for _, _, p in named]
    lr_s = CosineScheduler(1e-2, 1e-3, STEPS, warmup_iters=2, start_warmup_value=5e-3)
    last_s = CosineScheduler(1e-2, 1e-3, STEPS, warmup_iters=2, start_warmup_value=5e-3)
    last_s.schedule[:2] = 0
    wd_s, mom_s = CosineScheduler(0.04, 0.2, STEPS), CosineScheduler(0.9, 1.0, STEPS)
    temp_s = CosineScheduler(0.07, 0.07, STEPS, warmup_iters=2, start_warmup_value=0.04)
    losses = []
    for it in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = (last_s[it] if g["last"] else lr_s[it]) * g["lr_mult"]
            g["weight_decay"] = wd_s[it] * g["wd_mult"]
        og = student["backbone"].forward_features(gimg)
        ol = student["backbone"].forward_features(limg)
        cls_g, patch_g = og["x_norm_clstoken"], og["x_norm_patchtokens"]
        with torch.no_grad():
            t_cls = sinkhorn_knopp(teacher["teacher_dino"].last_layer(tcls), temp_s[it]).view(G, B, K)
            t_patch = sinkhorn_knopp(teacher["teacher_ibot"].last_layer(tpatch), temp_s[it])
        s_cls = student["dino_head"](torch.cat((cls_g, ol["x_norm_clstoken"])))
        dino = dino_loss(s_cls, t_cls, G, L, B)
        s_patch = student["ibot_head"](patch_g.flatten(0, 1))
        p = patch_g.shape[1]
        ibot = -(torch.sum(t_patch * F.log_softmax(s_patch / 0.1, dim=-1), dim=-1) / p).sum() / (G * B)
        ko = 0.1 * sum(koleo(c) for c in cls_g.chunk(G))
        loss = dino + ibot + ko
        losses.append([float(dino), float(ibot), float(ko)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for mod in student.values():
            nn.utils.clip_grad_norm_(mod.parameters(), 3.0)
        opt.step()
        with torch.no_grad():
            for e, (_, _, p_) in zip(ema, named):
                e.mul_(mom_s[it]).add_(p_.detach(), alpha=1 - mom_s[it])
    for e, (mname, name, p_) in zip(ema, named):
        res[f"final.{mname}.{name}"] = entry(p_)
        res[f"ema.{mname}.{name}"] = entry(e)
    res["losses"] = entry(torch.tensor(losses))
    st_io.write(os.path.join(out, "step_trace.safetensors"), res, {"steps": str(STEPS), "torch": torch.__version__})
    print(f"wrote {out}/step_trace.safetensors: losses per step (dino, ibot, koleo) {losses}")


if __name__ == "__main__":
    main()
