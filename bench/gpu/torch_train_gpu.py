"""PyTorch baseline for bench/run gpu-train-*: the student training step of
bench/gpu/bench_gpu_train.c on the GPU, written as the official DINOv2 code
trains (bf16 autocast, scaled-dot-product attention, losses in float32,
clip_grad_norm_ per module, AdamW over DINOv2's fused parameter groups, the
EMA with _foreach ops). The model definitions are the shared ones: the
backbone of tools/dinov2_torch.py with bench/gpu/torch_teacher.py's SDPA
attention, and DINOHead, sinkhorn_knopp and koleo of bench/torch_train.py.
Both target kinds: prototypes (DINO + iBOT + KoLeo against the teacher's
frozen last layers and Sinkhorn-Knopp) and features (adaptors to the ViT-g
teacher's 1536 features, cosine + smooth-L1). The host batch is pinned and
copied to the GPU every step, as distill's step receives it.

usage: python3 bench/gpu/torch_train_gpu.py SIZE BATCH REPEATS [prototypes|features ...]
Prints, per kind: torch_train kind=K images_per_s=X torch=VERSION device=NAME
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "tools"))
sys.path.insert(0, os.path.join(here, ".."))
sys.path.insert(0, here)
import dinov2_torch  # noqa: E402
import torch_teacher  # noqa: E402
import torch_train  # noqa: E402

G, L, K, BN = torch_train.G, torch_train.L, torch_train.K, torch_train.BN
TEACHER_DIM, P = 1536, 256  # the ViT-g teacher's width; patches per 224 px crop


def fused_param_groups(modules, depth):
    """DINOv2's get_params_groups_with_decay + fuse_params_groups: one group
    per (lr multiplier, weight-decay multiplier, last layer)."""
    groups = {}
    for mname, mod in modules.items():
        for name, p in mod.named_parameters():
            groups.setdefault(torch_train.param_multipliers(mname, name, depth), []).append(p)
    return [{"params": ps, "lr_mult": k[0], "wd_mult": k[1], "last": k[2]} for k, ps in groups.items()]


def prototype_loss(student, teacher_last, og, ol, tcls, tpatch, batch, temp):
    cls_g, patch_g, cls_l = og["x_norm_clstoken"], og["x_norm_patchtokens"], ol["x_norm_clstoken"]
    with torch.no_grad():
        t_cls = torch_train.sinkhorn_knopp(teacher_last[0](tcls), temp).view(G, batch, K)
        t_patch = torch_train.sinkhorn_knopp(teacher_last[1](tpatch), temp)
    s_cls = student["head0"](torch.cat((cls_g, cls_l)))
    s_patch = student["head1"](patch_g.flatten(0, 1))
    # DINO: local crops against both teacher crops, each global crop against
    # the other (the teacher's crops swapped), over the 18 pairs.
    lsm = F.log_softmax(s_cls.float() / 0.1, dim=-1)
    loss_local = 0
    for s in lsm[G * batch:].chunk(L):
        for t in t_cls:
            loss_local = loss_local - torch.sum(t * s, dim=-1).mean()
    swapped = torch.cat((t_cls[1], t_cls[0]))
    loss_global = -torch.sum(swapped * lsm[: G * batch], dim=-1).mean() * 2
    dino = (loss_local + loss_global) / (G * (G - 1) + L * G)
    ibot_l = torch.sum(t_patch * F.log_softmax(s_patch.float() / 0.1, dim=-1), dim=-1)
    ibot = -(ibot_l * (1.0 / P)).sum() / (G * batch)
    ko = 0.1 * sum(torch_train.koleo(c.float()) for c in cls_g.chunk(G))
    return dino + ibot + ko


def feature_loss(student, og, ol, tcls, tpatch, batch):
    cls_g, patch_g, cls_l = og["x_norm_clstoken"], og["x_norm_patchtokens"], ol["x_norm_clstoken"]
    s_cls = student["head0"](torch.cat((cls_g, cls_l))).float().view(G + L, batch, TEACHER_DIM)
    s_patch = student["head1"](patch_g.flatten(0, 1)).float()
    t_cls = tcls.view(G, batch, TEACHER_DIM)
    # Each global crop against the teacher's same crop, each local crop
    # against every teacher crop; the mean over the pairs and the batch.
    cos_g = 1 - F.cosine_similarity(s_cls[:G], t_cls, dim=-1, eps=1e-8)
    cos_l = 1 - F.cosine_similarity(s_cls[G:].unsqueeze(1), t_cls.unsqueeze(0), dim=-1, eps=1e-8)
    feat_cls = (cos_g.sum() + cos_l.sum()) / ((G + L * G) * batch)
    feat_cos = (1 - F.cosine_similarity(s_patch, tpatch, dim=-1, eps=1e-8)).mean()
    feat_l1 = F.smooth_l1_loss(s_patch, tpatch, beta=1.0)
    return feat_cls + 0.9 * feat_cos + 0.1 * feat_l1


def run_kind(size, kind, batch, repeats):
    torch.manual_seed(0)
    backbone = dinov2_torch.from_size(size, grid=16)
    dim = backbone.norm.weight.shape[0]
    if kind == "prototypes":
        heads = [torch_train.DINOHead(dim) for _ in range(2)]
    else:
        heads = [nn.Sequential(nn.Linear(dim, TEACHER_DIM), nn.GELU(), nn.Linear(TEACHER_DIM, TEACHER_DIM))
                 for _ in range(2)]
    student = nn.ModuleDict({"backbone": backbone, "head0": heads[0], "head1": heads[1]}).cuda()
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            p.normal_(0.0, 0.02) if "norm" not in name else p.fill_(1.0)
    teacher_last = [nn.utils.weight_norm(nn.Linear(BN, K, bias=False)).cuda().requires_grad_(False)
                    for _ in range(2)]
    opt = torch.optim.AdamW(fused_param_groups(student, len(backbone.blocks)), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    params = list(student.parameters())
    ema = [p.detach().clone() for p in params]
    width = BN if kind == "prototypes" else TEACHER_DIM
    gimg = torch.randn(G * batch, 3, 224, 224).pin_memory()
    limg = torch.randn(L * batch, 3, 98, 98).pin_memory()
    tcls = torch.randn(G * batch, width)
    tpatch = torch.randn(G * batch * P, width)
    if kind == "prototypes":
        tcls, tpatch = F.normalize(tcls, dim=-1), F.normalize(tpatch, dim=-1)
    tcls, tpatch = tcls.pin_memory(), tpatch.pin_memory()

    def step(it):
        lr, wd, mom, temp = 1e-3 * min(1.0, (it + 1) / 10), 0.04, 0.994, 0.04
        for g in opt.param_groups:
            g["lr"], g["weight_decay"] = lr * g["lr_mult"], wd * g["wd_mult"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            og = backbone.forward_features(gimg.cuda(non_blocking=True))
            ol = backbone.forward_features(limg.cuda(non_blocking=True))
            tc, tp = tcls.cuda(non_blocking=True), tpatch.cuda(non_blocking=True)
            if kind == "prototypes":
                loss = prototype_loss(student, teacher_last, og, ol, tc, tp, batch, temp)
            else:
                loss = feature_loss(student, og, ol, tc, tp, batch)
        torch_train.backward_and_update(loss, opt, student.values(), params, ema, mom)
        return float(loss)

    times = []
    for it in range(-2, repeats):  # two warm-up steps
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = step(it + 2)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"pytorch {size} {kind} step {it + 2}: {dt:.4f} s  loss {loss:.4f}", flush=True)
        if it >= 0:
            times.append(dt)
    print(f"torch_train kind={kind} images_per_s={batch / statistics.median(times):.4f} torch={torch.__version__} "
          f"device={torch.cuda.get_device_name(0).replace(' ', '_')}", flush=True)


def main():
    size, batch, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    kinds = sys.argv[4:] or ["prototypes", "features"]
    dinov2_torch.Attention.forward = torch_teacher.sdpa_forward
    for kind in kinds:
        run_kind(size, kind, batch, repeats)
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
