"""One distillation step in PyTorch (Debian's torch) with the teacher's
heads as released, for tests/train/test_head_widths.c: the losses and every
gradient before clipping, written from the official loss code
(dinov2/loss/dino_clstoken_loss.py, ibot_patch_loss.py, koleo_loss.py; the
loss functions are gen_step_trace.py's).

Two cases, each a reference file and the teacher's heads file the student
loads (dino_head.*, ibot_head.* as DINOv2 training checkpoints name them):
- widths: ViT-g/14's bottlenecks, DINO 384 and iBOT 256
  (dinov2/configs/train/vitg14.yaml, ssl_default_config.yaml
  ibot.head_bottleneck_dim), with their own prototype counts (32, 24);
- shared: one head (ibot.separate_head: false; the file has no ibot_head.*),
  bottleneck 384: the teacher's iBOT targets come from the DINO head's last
  layer. The student keeps its own two heads in both cases.
A small student (ViT dim 32, depth 2, patch 4), batch 3, 2 global crops
(16 px) and 2 local crops (8 px); Sinkhorn-Knopp targets at temperature
0.07; DINO over the 6 (student, teacher) pairs with the teacher's global
crops swapped, iBOT over every global patch, KoLeo (0.1) per global crop.

usage: /usr/bin/python3 tests/ref/gen_head_widths.py OUT_DIR
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
from gen_optim_trace import DEPTH, DINOHead, entry  # noqa: E402
from gen_step_trace import dino_loss, init_, koleo, sinkhorn_knopp  # noqa: E402

B, G, L, GS, LS, HIDDEN, TEMP = 3, 2, 2, 16, 8, 48, 0.07
CASES = {"widths": ((384, 32), (256, 24)), "shared": ((384, 32), None)}  # (bottleneck, prototypes) per head


def one_case(out, name, dino_spec, ibot_spec):
    torch.manual_seed(11 if ibot_spec else 12)
    (bn0, k0) = dino_spec
    (bn1, k1) = ibot_spec or dino_spec
    student = nn.ModuleDict({
        "backbone": dinov2_torch.DinoVisionTransformer(dim=32, depth=DEPTH, heads=2, patch=4, grid=GS // 4, hidden=64),
        "dino_head": DINOHead(32, k0, HIDDEN, bn0), "ibot_head": DINOHead(32, k1, HIDDEN, bn1)})
    # The teacher's heads as a ViT-g/14 checkpoint holds them (in_dim is the
    # teacher's width; only their last layers run on the student's side).
    t_dino = DINOHead(64, k0, 96, bn0)
    t_ibot = DINOHead(64, k1, 96, bn1) if ibot_spec else t_dino
    res, heads = {}, {}
    for mname, mod in student.items():
        init_(mod)
        for pname, p in mod.named_parameters():
            res[f"init.{mname}.{pname}"] = entry(p)
    for prefix, mod in (("dino_head", t_dino), ("ibot_head", t_ibot if ibot_spec else None)):
        if mod is None:
            continue
        init_(mod)
        for pname, p in mod.named_parameters():
            heads[f"{prefix}.{pname}"] = entry(p)
        mod.requires_grad_(False)
    gimg, limg = torch.randn(G * B, 3, GS, GS), torch.randn(L * B, 3, LS, LS)
    P = (GS // 4) ** 2
    tcls = F.normalize(torch.randn(G * B, bn0), dim=-1)
    tpatch = F.normalize(torch.randn(G * B * P, bn1), dim=-1)
    for k, v in (("global_images", gimg), ("local_images", limg), ("teacher_cls", tcls), ("teacher_patch", tpatch)):
        res[f"input.{k}"] = entry(v)

    og = student["backbone"].forward_features(gimg)
    ol = student["backbone"].forward_features(limg)
    cls_g, patch_g = og["x_norm_clstoken"], og["x_norm_patchtokens"]
    with torch.no_grad():
        # DINOLoss.sinkhorn_knopp_teacher / iBOTPatchLoss.sinkhorn_knopp_teacher
        # (every patch counted) on each head's own logits.
        t_cls = sinkhorn_knopp(t_dino.last_layer(tcls), TEMP).view(G, B, k0)
        t_patch = sinkhorn_knopp(t_ibot.last_layer(tpatch), TEMP)
    s_cls = student["dino_head"](torch.cat((cls_g, ol["x_norm_clstoken"])))
    dino = dino_loss(s_cls, t_cls, G, L, B)
    s_patch = student["ibot_head"](patch_g.flatten(0, 1))
    # iBOTPatchLoss.forward with every patch in the mask: the mean over a
    # crop's patches, then over the G * B crops.
    ibot = -(torch.sum(t_patch * F.log_softmax(s_patch / 0.1, dim=-1), dim=-1).view(G * B, P).mean(-1)).mean()
    ko = 0.1 * sum(koleo(c) for c in cls_g.chunk(G))
    (dino + ibot + ko).backward()
    norms = []
    for mname, mod in student.items():
        grads = [p.grad for p in mod.parameters() if p.grad is not None]
        # clip_grad_norm_'s total: the norm of the per-tensor norms.
        norms.append(float(torch.norm(torch.stack([torch.norm(g) for g in grads]))))
        for pname, p in mod.named_parameters():
            if p.grad is not None:  # mask_token takes no gradient when nothing is masked
                res[f"grad.{mname}.{pname}"] = entry(p.grad)
    res["losses"] = entry(torch.tensor([float(dino), float(ibot), float(ko)]))
    res["grad_norms"] = entry(torch.tensor(norms))
    meta = {"dino": f"{bn0}x{k0}", "ibot": f"{bn1}x{k1}", "shared": str(ibot_spec is None), "torch": torch.__version__}
    st_io.write(os.path.join(out, f"head_widths_{name}.safetensors"), res, meta)
    st_io.write(os.path.join(out, f"head_widths_{name}.heads.safetensors"), heads, {"format": "pt"})
    print(f"wrote head_widths_{name}: DINO bottleneck {bn0} ({k0} prototypes), iBOT {bn1} ({k1})"
          f"{' shared with DINO' if ibot_spec is None else ''}; losses dino {float(dino):.6f} ibot {float(ibot):.6f} "
          f"koleo {float(ko):.6f}; gradient norms {norms}")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (dino_spec, ibot_spec) in CASES.items():
        one_case(out, name, dino_spec, ibot_spec)


if __name__ == "__main__":
    main()
