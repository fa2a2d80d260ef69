"""Reference cases beyond the shared official-code vectors: other sizes, patch
16, registers in both interpolation modes, SwiGLU without registers, heads
other than dim/64, non-square inputs and masked patches.

It first checks that tools/dinov2_torch.py reproduces the official vectors in
tests/ref/dinov2 (so its outputs stand for the official code's), then writes
MODEL.safetensors (official names) and MODEL_io.safetensors (same format as
tests/ref/dinov2; overrides the loader cannot infer are in the io file's
__metadata__) into OUT_DIR.

usage: /usr/bin/python3 tests/ref/gen_vit_refs.py OUT_DIR
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import dinov2_torch  # noqa: E402
import st_io  # noqa: E402

MODELS = {
    # name: (constructor kwargs, metadata overrides, cases [(tag, n, h, w, masked)])
    "vit_d192_mlp_legacy": (
        dict(dim=192, depth=3, grid=5),
        {},
        [("s70", 2, 70, 70, False), ("r56x98", 2, 56, 98, False), ("r112x42", 1, 112, 42, False),
         ("s84", 1, 84, 84, False), ("m70", 2, 70, 70, True)]),
    "vit_d128_swiglu_reg2_p16": (
        dict(dim=128, depth=2, patch=16, grid=3, swiglu=True, hidden=160, registers=2,
             interpolate_offset=0, interpolate_antialias=True),
        {},
        [("s48", 2, 48, 48, False), ("r32x80", 2, 32, 80, False), ("r96x64", 1, 96, 64, False)]),
    "vit_d128_mlp_reg4_legacy": (
        dict(dim=128, depth=2, grid=4, registers=4),
        {"interp": "legacy"},
        [("s42", 2, 42, 42, False), ("r70x28", 1, 70, 28, False), ("r56x70", 1, 56, 70, False)]),
    "vit_d192_h4_swiglu_antialias": (
        dict(dim=192, depth=2, heads=4, grid=4, swiglu=True, hidden=256,
             interpolate_offset=0, interpolate_antialias=True),
        {"heads": "4", "interp": "antialias"},
        [("r84x56", 2, 84, 56, False), ("s28", 1, 28, 28, False), ("s56", 1, 56, 56, False)]),
}


def randomize(model, gen):
    """Every path matters: linear weights std 1/sqrt(fan_in), LayerScale in
    [0.5, 1], norms and biases perturbed, tokens std 0.5."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2 and "token" not in name and "pos_embed" not in name:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            else:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def f32(t):
    t = t.detach().contiguous().float()
    return ("F32", list(t.shape), t.numpy().tobytes())


def load_official(path, **kw):
    tensors, _ = st_io.read(path)
    sd = {k: torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
          for k, (dt, shape, raw) in tensors.items()}
    model = dinov2_torch.DinoVisionTransformer(**kw)
    model.load_state_dict(sd)
    return model.eval()


def self_check():
    """tools/dinov2_torch.py against the official-code vectors."""
    ref = os.path.join(HERE, "dinov2")
    configs = {
        "vit_mlp": dict(dim=128, depth=2, grid=4),
        "vit_swiglu_reg4": dict(dim=128, depth=2, grid=4, swiglu=True, hidden=344, registers=4,
                                interpolate_offset=0, interpolate_antialias=True),
    }
    worst = 0.0
    for name, kw in configs.items():
        model = load_official(os.path.join(ref, name + ".safetensors"), **kw)
        io, _ = st_io.read(os.path.join(ref, name + "_io.safetensors"))
        for key in io:
            if not key.endswith(".input") or key.count(".") != 1:
                continue
            tag = key[:-6]
            x = torch.frombuffer(bytearray(io[key][2]), dtype=torch.float32).reshape(io[key][1])
            with torch.no_grad():
                out = model.forward_features(x)
            for k in ("x_norm_clstoken", "x_norm_patchtokens", "x_prenorm"):
                r = torch.frombuffer(bytearray(io[f"{tag}.{k}"][2]), dtype=torch.float32).reshape(io[f"{tag}.{k}"][1])
                err = ((out[k] - r).norm() / r.norm()).item()
                worst = max(worst, err)
                if err > 1e-5:
                    sys.exit(f"gen_vit_refs: tools/dinov2_torch.py differs from the official vectors: "
                             f"{name} {tag} {k} relative error {err:.3g}")
    print(f"gen_vit_refs: tools/dinov2_torch.py matches the official vectors (worst relative error {worst:.2g})")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    self_check()
    for seed, (name, (kw, meta, cases)) in enumerate(sorted(MODELS.items())):
        gen = torch.Generator().manual_seed(1000 + seed)
        model = dinov2_torch.DinoVisionTransformer(**kw).eval()
        randomize(model, gen)
        st_io.write(os.path.join(out_dir, name + ".safetensors"),
                    {k: f32(v) for k, v in model.state_dict().items()})
        io = {}
        for tag, n, h, w, masked in cases:
            x = torch.randn(n, 3, h, w, generator=gen)
            p = kw.get("patch", 14)
            masks = torch.rand(n, (h // p) * (w // p), generator=gen) < 0.4 if masked else None
            with torch.no_grad():
                out = model.forward_features(x, masks)
            io[f"{tag}.input"] = f32(x)
            if masked:
                io[f"{tag}.masks"] = ("U8", list(masks.shape), masks.to(torch.uint8).numpy().tobytes())
            for k, v in out.items():
                if k == "x_norm_regtokens" and not kw.get("registers"):
                    continue
                io[f"{tag}.{k}"] = f32(v)
        st_io.write(os.path.join(out_dir, name + "_io.safetensors"), io, meta)
        print(f"gen_vit_refs: wrote {name} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
