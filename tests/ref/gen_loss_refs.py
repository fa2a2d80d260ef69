"""References for the DINO and iBOT losses and Sinkhorn-Knopp with finite values.

In tests/ref/dinov2/heads_losses.safetensors, `sk.teacher_logits` reach 11.5,
so exp(logits / 0.04) overflows float32 in the official Sinkhorn-Knopp: its
`sk.*.probs`, and the `dino.*` and `ibot.*` teachers, losses and gradients
derived from them, are NaN. This script recomputes them with Debian's torch
by the official formulas (dinov2/loss/dino_clstoken_loss.py,
ibot_patch_loss.py), on the same student logits and masks, with teacher
logits scaled by 1/4 (so float32 stays finite).

usage: /usr/bin/python3 tests/ref/gen_loss_refs.py OUT_DIR
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import st_io  # noqa: E402


def load(tensors, name, dtype=torch.float32):
    dt, shape, raw = tensors[name]
    if dt == "BOOL":
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape).bool()
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape).clone()


def entry(t):
    t = t.detach().contiguous().float()
    return ("F32", list(t.shape), t.numpy().tobytes())


def sinkhorn_knopp(teacher_output, teacher_temp, n_iterations=3):
    # The official sinkhorn_knopp_teacher on one rank.
    teacher_output = teacher_output.float()
    Q = torch.exp(teacher_output / teacher_temp).t()
    B = Q.shape[1]
    K = Q.shape[0]
    sum_Q = torch.sum(Q)
    Q /= sum_Q
    for _ in range(n_iterations):
        sum_of_rows = torch.sum(Q, dim=1, keepdim=True)
        Q /= sum_of_rows
        Q /= K
        Q /= torch.sum(Q, dim=0, keepdim=True)
        Q /= B
    Q *= B
    return Q.t()


def dino_loss(student_output_list, teacher_list, student_temp=0.1):
    total_loss = 0
    for s in student_output_list:
        lsm = torch.nn.functional.log_softmax(s / student_temp, dim=-1)
        for t in teacher_list:
            loss = torch.sum(t * lsm, dim=-1)
            total_loss -= loss.mean()
    return total_loss


def ibot_forward_masked(s, t, masks, student_temp=0.1):
    loss = torch.sum(t * torch.nn.functional.log_softmax(s / student_temp, dim=-1), dim=-1)
    w = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
    return -(loss * w).sum() / masks.shape[0]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    tensors, _ = st_io.read(os.path.join(HERE, "dinov2", "heads_losses.safetensors"))
    res = {}
    logits = load(tensors, "sk.teacher_logits")
    scaled = logits * 0.25
    res["sk.scaled_logits"] = entry(scaled)
    for tag, temp in (("t004", 0.04), ("t007", 0.07)):
        res[f"sk.{tag}.probs"] = entry(sinkhorn_knopp(scaled.clone(), temp))

    student = load(tensors, "dino.student_logits").requires_grad_(True)
    teacher = sinkhorn_knopp(scaled.clone(), 0.04).view(2, 8, -1)
    loss = dino_loss(list(student.unbind(0)), list(teacher.unbind(0)))
    loss.backward()
    res["dino.teacher_probs"] = entry(teacher)
    res["dino.loss"] = entry(loss.reshape(1))
    res["dino.grad.student_logits"] = entry(student.grad)

    masks = load(tensors, "ibot.masks")
    s_ibot = load(tensors, "ibot.student_logits").requires_grad_(True)
    m = s_ibot.shape[0]
    t_logits = torch.roll(load(tensors, "ibot.student_logits"), 1, dims=0) * 0.25
    t_ibot = sinkhorn_knopp(t_logits, 0.07)
    loss = ibot_forward_masked(s_ibot, t_ibot, masks)
    loss.backward()
    res["ibot.teacher_probs"] = entry(t_ibot)
    res["ibot.loss"] = entry(loss.reshape(1))
    res["ibot.grad.student_logits"] = entry(s_ibot.grad)
    assert all(torch.isfinite(torch.frombuffer(bytearray(v[2]), dtype=torch.float32)).all() for v in res.values())
    st_io.write(os.path.join(out, "losses_finite.safetensors"), res,
                {"source": "official formulas, torch " + torch.__version__, "masked": str(m)})
    print(f"wrote {out}/losses_finite.safetensors ({m} masked patches)")


if __name__ == "__main__":
    main()
