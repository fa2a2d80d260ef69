"""Write a randomly initialised DINOv2 teacher: a backbone file and a DINO/iBOT
heads file in the official names `distill` reads (the heads file as
teacher/model_io.h describes it).

Defaults are ViT-g/14 as released and as it was trained: 1536 wide, 24 heads,
patch 14, 4 register tokens, a 37x37 position grid (518 px), the fused SwiGLU
("swiglufused") whose hidden width the official SwiGLUFFNFused derives from
mlp_ratio 4 as (int(4 * 1536 * 2 / 3) + 7) // 8 * 8 = 4096, LayerScale 1e-5;
heads of 3 layers, 2048 wide, bottlenecks 384 (DINO, configs/train/vitg14.yaml)
and 256 (iBOT, ssl_default_config.yaml), 131072 prototypes. --depth cuts the
blocks (the official model has 40); nothing else changes unless asked.

Initialization as the official code's (vision_transformer.py init_weights,
dino_head.py): trunc_normal(std 0.02) for pos_embed and every Linear weight,
zero biases, cls and register tokens normal(1e-6), mask_token 0, the patch
conv PyTorch's default, LayerNorm 1 and 0, LayerScale `--layerscale`; head MLP
weights trunc_normal(0.02), weight_g 1, weight_v a Linear's default.

usage: /usr/bin/python3 tools/random_teacher.py BACKBONE.safetensors HEADS.safetensors
           [--depth 40] [--dim 1536] [--attn-heads 24] [--registers 4] [--grid 37] [--patch 14]
           [--mlp-ratio 4] [--head-hidden 2048] [--head-layers 3] [--dino-bottleneck 384]
           [--ibot-bottleneck 256] [--prototypes 131072] [--seed 0]
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def swiglu_fused_hidden(dim, mlp_ratio):
    """The official SwiGLUFFNFused's hidden width for mlp_ratio * dim."""
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


def trunc_normal(shape, gen, std=0.02):
    # The official trunc_normal_(std=.02) keeps torch's default absolute bounds
    # (-2, 2), 100 standard deviations out: in effect a normal.
    return torch.randn(shape, generator=gen) * std


def uniform(shape, bound, gen):
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def backbone(a, gen):
    d, hidden = a.dim, swiglu_fused_hidden(a.dim, a.mlp_ratio)
    t = {
        "cls_token": torch.randn(1, 1, d, generator=gen) * 1e-6,
        "pos_embed": trunc_normal((1, 1 + a.grid * a.grid, d), gen),
        "mask_token": torch.zeros(1, d),
        "patch_embed.proj.weight": uniform((d, 3, a.patch, a.patch), 1 / math.sqrt(3 * a.patch * a.patch), gen),
        "patch_embed.proj.bias": uniform((d,), 1 / math.sqrt(3 * a.patch * a.patch), gen),
    }
    if a.registers:
        t["register_tokens"] = torch.randn(1, a.registers, d, generator=gen) * 1e-6
    for b in range(a.depth):
        p = f"blocks.{b}."
        t.update({
            p + "norm1.weight": torch.ones(d), p + "norm1.bias": torch.zeros(d),
            p + "attn.qkv.weight": trunc_normal((3 * d, d), gen), p + "attn.qkv.bias": torch.zeros(3 * d),
            p + "attn.proj.weight": trunc_normal((d, d), gen), p + "attn.proj.bias": torch.zeros(d),
            p + "ls1.gamma": torch.full((d,), a.layerscale),
            p + "norm2.weight": torch.ones(d), p + "norm2.bias": torch.zeros(d),
            p + "mlp.w12.weight": trunc_normal((2 * hidden, d), gen), p + "mlp.w12.bias": torch.zeros(2 * hidden),
            p + "mlp.w3.weight": trunc_normal((d, hidden), gen), p + "mlp.w3.bias": torch.zeros(d),
            p + "ls2.gamma": torch.full((d,), a.layerscale),
        })
    t["norm.weight"], t["norm.bias"] = torch.ones(d), torch.zeros(d)
    return t, hidden


def head(prefix, a, bottleneck, gen):
    t, width = {}, a.dim
    for layer in range(a.head_layers):
        out = bottleneck if layer == a.head_layers - 1 else a.head_hidden
        t[f"{prefix}.mlp.{2 * layer}.weight"] = trunc_normal((out, width), gen)
        t[f"{prefix}.mlp.{2 * layer}.bias"] = torch.zeros(out)
        width = out
    t[f"{prefix}.last_layer.weight_g"] = torch.ones(a.prototypes, 1)
    t[f"{prefix}.last_layer.weight_v"] = uniform((a.prototypes, bottleneck), 1 / math.sqrt(bottleneck), gen)
    return t


def write(path, tensors):
    st_io.write(path, {k: ("F32", list(v.shape), v.contiguous().float().numpy().tobytes()) for k, v in tensors.items()},
                {"format": "pt", "writer": "tools/random_teacher.py"})


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("backbone")
    p.add_argument("heads")
    for name, default in [("depth", 40), ("dim", 1536), ("attn-heads", 24), ("registers", 4), ("grid", 37),
                          ("patch", 14), ("head-hidden", 2048), ("head-layers", 3), ("dino-bottleneck", 384),
                          ("ibot-bottleneck", 256), ("prototypes", 131072), ("seed", 0)]:
        p.add_argument("--" + name, type=int, default=default)
    p.add_argument("--mlp-ratio", type=float, default=4.0)
    p.add_argument("--layerscale", type=float, default=1e-5)
    a = p.parse_args()
    if a.dim % a.attn_heads or a.dim // a.attn_heads != 64:
        sys.exit(f"random_teacher: --dim {a.dim} in {a.attn_heads} heads: DINOv2 heads are 64 wide "
                 "(distill infers dim / 64)")
    gen = torch.Generator().manual_seed(a.seed)
    t, hidden = backbone(a, gen)
    write(a.backbone, t)
    print(f"random_teacher: {a.backbone}: {a.dim} wide, {a.depth} blocks, {a.attn_heads} heads, SwiGLU hidden "
          f"{hidden} (fused, mlp_ratio {a.mlp_ratio:g}), {a.registers} registers, {a.grid}x{a.grid} positions, "
          f"patch {a.patch}: {sum(v.numel() for v in t.values()) / 1e6:.1f} M parameters")
    del t
    h = head("dino_head", a, a.dino_bottleneck, gen)
    h.update(head("ibot_head", a, a.ibot_bottleneck, gen))
    write(a.heads, h)
    print(f"random_teacher: {a.heads}: {a.head_layers}-layer {a.head_hidden}-wide heads, bottlenecks "
          f"{a.dino_bottleneck} (DINO) and {a.ibot_bottleneck} (iBOT), {a.prototypes} prototypes: "
          f"{sum(v.numel() for v in h.values()) / 1e6:.1f} M parameters")


if __name__ == "__main__":
    main()
