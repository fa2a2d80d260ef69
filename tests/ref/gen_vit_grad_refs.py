"""Gradient references beyond the shared official vectors, from
tools/dinov2_torch.py (checked against the official vectors by
gen_vit_refs.py's self-check, run here first): the cases the official
files leave out -- legacy interpolation upsampling and downsampling (the
gradient through bicubic a = -0.75 with clamped borders to the stored
table), masked patches (mask_token's gradient), registers with the legacy
mode, a non-square input. Same format as tests/ref/dinov2/*_io.safetensors:
TAG.input, TAG.masks, TAG.grad.R_cls / R_patch / R_reg, TAG.grad.<weight>,
TAG.grad.input, with loss = sum(cls * R_cls) + sum(patch * R_patch)
(+ sum(reg * R_reg)).

usage: /usr/bin/python3 tests/ref/gen_vit_grad_refs.py OUT_DIR
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402
from gen_vit_refs import f32, randomize, self_check  # noqa: E402

MODELS = {
    # name: (constructor kwargs, metadata, cases [(tag, n, h, w, masked)])
    "grad_mlp_legacy": (dict(dim=64, depth=2, heads=2, grid=4), {"heads": "2"},
                        [("s84m", 2, 84, 84, True), ("r42x70", 2, 42, 70, False)]),
    "grad_swiglu_reg2_legacy": (dict(dim=64, depth=2, heads=2, grid=4, swiglu=True, hidden=96, registers=2),
                                {"heads": "2", "interp": "legacy"}, [("s42", 2, 42, 42, False)]),
}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    self_check()
    for seed, (name, (kw, meta, cases)) in enumerate(sorted(MODELS.items())):
        gen = torch.Generator().manual_seed(2000 + seed)
        model = dinov2_torch.DinoVisionTransformer(**kw)
        randomize(model, gen)
        st_io.write(os.path.join(out_dir, name + ".safetensors"), {k: f32(v) for k, v in model.state_dict().items()})
        io = {}
        for tag, n, h, w, masked in cases:
            x = torch.randn(n, 3, h, w, generator=gen).requires_grad_(True)
            np_ = (h // 14) * (w // 14)
            masks = torch.rand(n, np_, generator=gen) < 0.4 if masked else None
            model.zero_grad(set_to_none=True)
            out = model.forward_features(x, masks)
            r_cls = torch.randn(out["x_norm_clstoken"].shape, generator=gen)
            r_patch = torch.randn(out["x_norm_patchtokens"].shape, generator=gen)
            loss = (out["x_norm_clstoken"] * r_cls).sum() + (out["x_norm_patchtokens"] * r_patch).sum()
            if kw.get("registers"):
                r_reg = torch.randn(out["x_norm_regtokens"].shape, generator=gen)
                loss = loss + (out["x_norm_regtokens"] * r_reg).sum()
                io[f"{tag}.grad.R_reg"] = f32(r_reg)
            loss.backward()
            io[f"{tag}.input"] = f32(x)
            if masked:
                io[f"{tag}.masks"] = ("U8", list(masks.shape), masks.to(torch.uint8).numpy().tobytes())
            io[f"{tag}.x_norm_clstoken"] = f32(out["x_norm_clstoken"])
            io[f"{tag}.x_norm_patchtokens"] = f32(out["x_norm_patchtokens"])
            io[f"{tag}.grad.R_cls"] = f32(r_cls)
            io[f"{tag}.grad.R_patch"] = f32(r_patch)
            io[f"{tag}.grad.loss"] = f32(loss.reshape(1))
            io[f"{tag}.grad.input"] = f32(x.grad)
            for k, p in model.named_parameters():
                if p.grad is not None:
                    io[f"{tag}.grad.{k}"] = f32(p.grad)
        st_io.write(os.path.join(out_dir, name + "_io.safetensors"), io, meta)
        print(f"gen_vit_grad_refs: wrote {name} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
