"""Rewrites official-layout DINOv2 weights into the timm and Hugging Face
layouts (the same numbers under other names), so the tests can check that
every layout loads to the same model.

usage: rename_layouts.py OFFICIAL.safetensors OUT_DIR
writes OUT_DIR/NAME.timm.safetensors and OUT_DIR/NAME.hf.safetensors
"""
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import st_io  # noqa: E402


def f32_add(a, b):
    n = len(a) // 4
    x = struct.unpack(f"<{n}f", a)
    y = struct.unpack(f"<{n}f", b)
    return struct.pack(f"<{n}f", *(p + q for p, q in zip(x, y)))


def to_timm(t):
    """timm's dinov2 models: mask_token dropped; SwiGLU as fc1/fc2; with
    registers, reg_token and the class position folded into cls_token."""
    out = {}
    dim = t["cls_token"][1][-1]
    for name, (dtype, shape, raw) in t.items():
        if name == "mask_token":
            continue
        if "register_tokens" in t and name in ("cls_token", "pos_embed", "register_tokens"):
            continue
        out[name.replace("mlp.w12", "mlp.fc1").replace("mlp.w3", "mlp.fc2")] = (dtype, shape, raw)
    if "register_tokens" in t:
        dtype, shape, pos = t["pos_embed"]
        row = dim * 4
        out["cls_token"] = ("F32", t["cls_token"][1], f32_add(t["cls_token"][2], pos[:row]))
        out["reg_token"] = t["register_tokens"]
        out["pos_embed"] = ("F32", [1, shape[1] - 1, dim], pos[row:])
    return out


HF_BLOCK = {
    "norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense",
    "ls1.gamma": "layer_scale1.lambda1", "ls2.gamma": "layer_scale2.lambda1",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "mlp.w12": "mlp.weights_in", "mlp.w3": "mlp.weights_out",
}
HF_GLOBAL = {
    "cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
    "register_tokens": "embeddings.register_tokens", "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
}


def to_hf(t):
    """Hugging Face Dinov2Model: embeddings.*, encoder.layer.N.*, q/k/v split."""
    out = {}
    for name, (dtype, shape, raw) in t.items():
        if name in HF_GLOBAL:
            out[HF_GLOBAL[name]] = (dtype, shape, raw)
            continue
        m = re.match(r"blocks\.(\d+)\.(.*)$", name)
        i, rest = m.group(1), m.group(2)
        prefix = f"encoder.layer.{i}."
        if rest.startswith("attn.qkv."):
            kind = rest.split(".")[-1]
            third = len(raw) // 3
            rows = shape[0] // 3
            for j, part in enumerate(("query", "key", "value")):
                out[f"{prefix}attention.attention.{part}.{kind}"] = (
                    dtype, [rows] + shape[1:], raw[j * third:(j + 1) * third])
            continue
        for old, new in HF_BLOCK.items():
            if rest.startswith(old + ".") or rest == old:
                out[prefix + new + rest[len(old):]] = (dtype, shape, raw)
                break
        else:
            raise KeyError(name)
    return out


def main():
    src, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    tensors, _ = st_io.read(src)
    stem = os.path.basename(src).replace(".safetensors", "")
    st_io.write(os.path.join(out_dir, stem + ".timm.safetensors"), to_timm(tensors))
    st_io.write(os.path.join(out_dir, stem + ".hf.safetensors"), to_hf(tensors))
    print(f"wrote {stem}.timm.safetensors and {stem}.hf.safetensors to {out_dir}")


if __name__ == "__main__":
    main()
