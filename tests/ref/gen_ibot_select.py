"""iBOT with patch selection as DINOv3 distils (Debian's torch), for
tests/train/test_ibot_parity.c: a rank's 2 x 4 global crops of 6 x 6
patches, fixed masks with the collate's counts (dinov3/data/collate.py:
int(2B * 0.5) crops masked, the i-th with int(N * linspace(0.1, 0.5,
n + 1)[i + 1]) patches, then shuffled), written into the file. On them the
loss as dinov3/train/ssl_meta_arch.py and loss/ibot_patch_loss.py compute
it: the student's iBOT head on the selected rows of its (unmasked) patch
tokens (index_select by mask_indices_list), the teacher's frozen last layer
on the selected rows of its bottlenecks, Sinkhorn-Knopp over those rows
with B = n_masked_patches, forward_masked with masks_weight (1 / n per
crop) divided by every crop (student_masks_flat.shape[0]). Autograd gives
the gradient with respect to every patch token and the head's parameters.
The same inputs with every patch scored (weights 1 / N, DINOv2's way when
distilling) make the `all.*` case.

Also the collate's per-crop counts for a table of crop and patch counts
(float32 linspace, as torch computes it), so the C side's rule is checked
against torch itself.

usage: /usr/bin/python3 tests/ref/gen_ibot_select.py OUT_DIR
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import st_io  # noqa: E402
from gen_optim_trace import DINOHead, entry  # noqa: E402
# SinkhornKnoppTeacher of dinov3/loss/ibot_patch_loss.py on one rank: its
# B = n_masked_patches is the number of rows it is given.
from gen_step_trace import sinkhorn_knopp  # noqa: E402

G, B, GRID, D, HIDDEN, BN, TBN, K = 2, 4, 6, 32, 48, 16, 24, 64
STUDENT_TEMP, TEACHER_TEMP, PROBABILITY, RATIOS = 0.1, 0.07, 0.5, (0.1, 0.5)
COUNT_TABLE = {"crops": [2, 4, 8, 10, 16, 32, 64, 128], "patches": [16, 36, 196, 256, 1024, 1369]}


def collate_counts(crops, patches):
    # The collate's rule: n masked crops, the i-th with int(N * prob_max).
    n = int(crops * PROBABILITY)
    probs = torch.linspace(*RATIOS, n + 1)
    return [int(patches * probs[i + 1]) for i in range(n)]


def fixed_masks(gen):
    n_tokens = GRID * GRID
    masks = [torch.zeros(n_tokens, dtype=torch.bool) for _ in range(G * B)]
    for i, count in enumerate(collate_counts(G * B, n_tokens)):
        masks[i][torch.randperm(n_tokens, generator=gen)[:count]] = True
    order = torch.randperm(G * B, generator=gen)
    return torch.stack([masks[j] for j in order])


def ibot_case(head, teacher_last, tokens, bottlenecks, masks):
    """The loss, d loss / d tokens and the head's gradients for `masks`."""
    head.zero_grad(set_to_none=True)
    x = tokens.clone().requires_grad_(True)
    flat = masks.flatten()
    index = flat.nonzero().flatten()
    s = head(torch.index_select(x, 0, index))
    with torch.no_grad():
        q = sinkhorn_knopp(teacher_last(torch.index_select(bottlenecks, 0, index)), TEACHER_TEMP)
    weight = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    per_row = torch.sum(q * F.log_softmax(s / STUDENT_TEMP, dim=-1), dim=-1)
    loss = -(per_row * weight).sum() / masks.shape[0]
    loss.backward()
    grads = {name: p.grad for name, p in head.named_parameters()}
    return loss, x.grad, grads


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(11)
    gen = torch.Generator().manual_seed(5)
    head = DINOHead(D, K, HIDDEN, BN)
    teacher_last = nn.utils.weight_norm(nn.Linear(TBN, K, bias=False))
    res = {}
    with torch.no_grad():
        for name, p in head.named_parameters():
            p.normal_(0.0, 1.0 / p.shape[-1] ** 0.5 if p.dim() == 2 and "weight_v" not in name else 0.1)
            if name.endswith("weight_g"):
                p.uniform_(0.5, 1.5)
            res[f"ibot_head.{name}"] = entry(p)
        teacher_last.weight_g.uniform_(0.5, 1.5)
        teacher_last.weight_v.normal_(0.0, 1.0)
        res["teacher_ibot.last_layer.weight_g"] = entry(teacher_last.weight_g)
        res["teacher_ibot.last_layer.weight_v"] = entry(teacher_last.weight_v)
    for p in teacher_last.parameters():
        p.requires_grad_(False)
    n_tokens = GRID * GRID
    tokens = torch.randn(G * B * n_tokens, D)
    bottlenecks = F.normalize(torch.randn(G * B * n_tokens, TBN), dim=-1)
    masks = fixed_masks(gen)
    res["input.patch_tokens"] = entry(tokens)
    res["input.teacher_patch"] = entry(bottlenecks)
    res["input.masks"] = entry(masks.float())
    cases = {"selected": masks, "all": torch.ones_like(masks)}
    summary = []
    for case, m in cases.items():
        loss, d_tokens, grads = ibot_case(head, teacher_last, tokens, bottlenecks, m)
        res[f"{case}.loss"] = entry(loss.reshape(1))
        res[f"{case}.grad_patch_tokens"] = entry(d_tokens)
        for name, g in grads.items():
            res[f"{case}.grad.ibot_head.{name}"] = entry(g)
        summary.append(f"{case}: {int(m.sum())} rows, loss {float(loss):.6f}")
    for crops in COUNT_TABLE["crops"]:
        for patches in COUNT_TABLE["patches"]:
            res[f"collate.counts.{crops}.{patches}"] = entry(torch.tensor(collate_counts(crops, patches) or [-1.0]))
    st_io.write(os.path.join(out, "ibot_select.safetensors"), res, {"torch": torch.__version__})
    print(f"wrote {out}/ibot_select.safetensors: " + "; ".join(summary))


if __name__ == "__main__":
    main()
