"""`distill embed --images` end to end against the official pipeline: PIL
decode, torchvision's evaluation transform (Resize with bicubic, CenterCrop,
ToTensor, Normalize) and the DINOv2 backbone (tools/dinov2_torch.py, checked
against the official vectors). Relative error <= 1e-4 per output tensor.

usage: /usr/bin/python3 embed_images.py DISTILL WEIGHTS WORK_DIR IMAGE...
"""
import os
import subprocess
import sys

import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, os.path.join(HERE, "..", "ref"))
import gen_vit_refs  # noqa: E402
import st_io  # noqa: E402


def main():
    distill, weights, work, images = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    os.makedirs(work, exist_ok=True)
    resize, crop = 128, 112  # a 8x8 grid: the 4x4 position table is interpolated
    out = os.path.join(work, "embed_images.safetensors")
    subprocess.run([distill, "embed", "--weights", weights, "--images", *images, "--resize", str(resize),
                    "--size", str(crop), "--batch", "2", "--out", out], check=True)
    ours, _ = st_io.read(out)
    model = gen_vit_refs.load_official(weights, dim=128, depth=2, grid=4, swiglu=True, hidden=344, registers=4,
                                       interpolate_offset=0, interpolate_antialias=True)
    tf = transforms.Compose([
        transforms.Resize(resize, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(crop), transforms.ToTensor(),
        transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))])
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in images])
    with torch.no_grad():
        ref = model.forward_features(x)
    failures = 0
    for name in ("x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens", "x_prenorm"):
        dtype, shape, raw = ours[name]
        got = torch.frombuffer(bytearray(raw), dtype=torch.float32).reshape(shape)
        err = ((got - ref[name]).norm() / ref[name].norm()).item()
        ok = list(shape) == list(ref[name].shape) and err <= 1e-4
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {len(images)} images, {name} {list(shape)}: relative error {err:.3g} <= 1e-4")
    # A broken file among the images: exit 2 and one line naming it, no output file.
    broken = os.path.join(HERE, "..", "data", "broken", "truncated.jpg")
    bad_out = os.path.join(work, "embed_broken.safetensors")
    p = subprocess.run([distill, "embed", "--weights", weights, "--images", images[0], broken, "--out", bad_out],
                       capture_output=True, text=True)
    lines = p.stderr.strip().splitlines()
    ok = p.returncode == 2 and len(lines) == 1 and "truncated.jpg" in lines[0] and not os.path.exists(bad_out)
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} a truncated JPEG among the images: exit {p.returncode}, {lines}")
    print(f"embed_images: 5 checks, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
