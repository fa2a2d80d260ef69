#!/usr/bin/python3
"""Writes the parity references for data/ (run with Debian's /usr/bin/python3).

Inputs: three small photographs from python3-skimage's data folder, written
here as JPEG (and one PNG). References: torchvision 0.14's functional ops
applied to those files as PIL images, which is the path DINOv2's released
augmentation code takes. Each line of cases.txt names an op, its input, its
parameters and the PNG holding torchvision's result; test_data_parity.c
replays the line with data/ and compares.

    /usr/bin/python3 tests/ref/data/gen_refs.py   # rewrites this folder
"""
import os
import random

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image
from skimage import data as skdata

HERE = os.path.dirname(os.path.abspath(__file__))


def save_inputs():
    photos = {"chelsea": skdata.chelsea(), "coffee": skdata.coffee(), "astronaut": skdata.astronaut()}
    sizes = {"chelsea": (120, 90), "coffee": (100, 67), "astronaut": (72, 72)}
    names = []
    for name, arr in photos.items():
        im = Image.fromarray(arr).resize(sizes[name], Image.BICUBIC)
        path = f"in_{name}.jpg"
        im.save(os.path.join(HERE, path), quality=90)
        names.append(path)
    # A PNG input too (palette-free RGB), so both decoders feed the ops.
    Image.open(os.path.join(HERE, "in_coffee.jpg")).save(os.path.join(HERE, "in_coffee.png"))
    names.append("in_coffee.png")
    return names


def save_format_variants():
    """The same small picture in every layout the decoders must handle;
    their references are PIL's convert("RGB") of each file."""
    im = Image.open(os.path.join(HERE, "in_astronaut.jpg"))
    variants = {
        "fmt_progressive.jpg": lambda p: im.save(p, progressive=True, quality=85),
        "fmt_cmyk.jpg": lambda p: im.convert("CMYK").save(p, quality=90),
        "fmt_gray.jpg": lambda p: im.convert("L").save(p, quality=90),
        "fmt_palette.png": lambda p: im.convert("P").save(p),
        "fmt_gray_alpha.png": lambda p: im.convert("LA").save(p),
        "fmt_rgba.png": lambda p: im.convert("RGBA").save(p),
        "fmt_gray1.png": lambda p: im.convert("1").save(p),
    }
    for name, save in variants.items():
        save(os.path.join(HERE, name))
    # 16-bit gray: PIL opens it as mode I and clips to 255 when converting to
    # RGB, which destroys the picture; we keep the high byte instead, so the
    # reference is the 8-bit gray image the 16-bit one was made from.
    gray = np.asarray(im.convert("L")).astype(np.uint16)
    Image.fromarray(gray * 257).save(os.path.join(HERE, "fmt_gray16.png"))
    return list(variants), im.convert("L").convert("RGB")


def load(path):
    return Image.open(os.path.join(HERE, path)).convert("RGB")


def main():
    random.seed(4)
    torch.manual_seed(4)
    for old in os.listdir(HERE):  # numbering may shift: no stale references
        if old.startswith("ref_") and old.endswith(".png"):
            os.remove(os.path.join(HERE, old))
    inputs = save_inputs()
    variants, gray8 = save_format_variants()
    lines = []
    count = [0]

    def emit(op, src, params, img):
        count[0] += 1
        out = f"ref_{count[0]:03d}_{op}.png"
        img.save(os.path.join(HERE, out))
        lines.append(" ".join([op, src] + [repr(p) for p in params] + [out]))

    for src in inputs:
        im = load(src)
        emit("decode", src, [], im)
        if src == "in_coffee.png":  # the PNG path feeds the same ops; a few suffice
            emit("resized_crop", src, [3, 5, 50, 60, 56], F.resized_crop(im, 3, 5, 50, 60, [56, 56], T.InterpolationMode.BICUBIC))
            continue
        # Evaluation transform: shorter side then center crop, up- and downscaling.
        evals = ((256, 224), (60, 48), (81, 70)) if src == "in_chelsea.jpg" else ((60, 48), (81, 70))
        for short, crop in evals:
            emit("eval", src, [short, crop], F.center_crop(F.resize(im, short, T.InterpolationMode.BICUBIC), crop))
        w, h = im.size
        for size in (98, 40) if src != "in_coffee.png" else (56,):
            top, left = random.randint(0, h // 3), random.randint(0, w // 3)
            ch, cw = random.randint(8, h - top), random.randint(8, w - left)
            out = F.resized_crop(im, top, left, ch, cw, [size, size], T.InterpolationMode.BICUBIC)
            emit("resized_crop", src, [top, left, ch, cw, size], out)
        emit("hflip", src, [], F.hflip(im))
        for f in (0.6, 1.37):
            emit("brightness", src, [f], F.adjust_brightness(im, f))
            emit("contrast", src, [f], F.adjust_contrast(im, f))
            emit("saturation", src, [f], F.adjust_saturation(im, f))
        for f in (-0.1, -0.037, 0.052, 0.1):
            emit("hue", src, [f], F.adjust_hue(im, f))
        emit("grayscale", src, [], F.rgb_to_grayscale(im, num_output_channels=3))
        for s in (0.1, 0.77, 2.0):
            emit("blur", src, [s], F.gaussian_blur(im, [9, 9], [s, s]))
        emit("solarize", src, [], F.solarize(im, 128))

    # Whole crops: every op in DINOv2's order (crop+resize, flip, jitter in a
    # given order, grayscale, blur, solarize) with fixed parameters.
    ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
    composed = [
        # top left h w size flip jitter order(4) b c s h gray blur sigma solarize
        (5, 9, 70, 80, 64, 1, 1, 3, 0, 2, 1, 1.31, 0.72, 1.15, -0.06, 0, 1, 1.3, 1),
        (0, 0, 90, 120, 48, 0, 1, 1, 2, 0, 3, 0.64, 1.22, 0.83, 0.09, 1, 0, 0.5, 0),
        (20, 30, 40, 33, 56, 1, 0, 0, 1, 2, 3, 1.0, 1.0, 1.0, 0.0, 0, 1, 0.2, 1),
    ]
    for c in composed:
        top, left, h, w, size, flip, jitter = c[:7]
        order, factors = c[7:11], c[11:15]
        gray, blur, sigma, solarize = c[15:19]
        img = F.resized_crop(load("in_chelsea.jpg"), top, left, h, w, [size, size], T.InterpolationMode.BICUBIC)
        if flip:
            img = F.hflip(img)
        if jitter:
            for k in order:
                img = ops[k](img, factors[k])
        if gray:
            img = F.rgb_to_grayscale(img, num_output_channels=3)
        if blur:
            img = F.gaussian_blur(img, [9, 9], [sigma, sigma])
        if solarize:
            img = F.solarize(img, 128)
        emit("crop", "in_chelsea.jpg", list(c), img)

    for src in variants:
        emit("decode", src, [], load(src))
    emit("decode", "fmt_gray16.png", [], gray8)

    # RandomResizedCrop.get_params: record torch's own draws, so the C side can
    # replay them and must land on the same box.
    rrc_lines = []
    real_empty, real_randint = torch.empty, torch.randint
    for case in range(200):
        w, h = random.choice([(200, 150), (640, 480), (98, 400), (1000, 37), (37, 1000), (224, 224)])
        scale = random.choice([(0.32, 1.0), (0.05, 0.32), (0.9, 1.0)])
        draws = []

        class Recorder:
            def __init__(self, t):
                self.t = t

            def uniform_(self, a, b):
                v = self.t.uniform_(a, b)
                draws.append(("u", v.item()))
                return v

        def rec_empty(*a, **k):
            return Recorder(real_empty(*a, **k))

        def rec_randint(lo, hi, size):
            v = real_randint(lo, hi, size)
            draws.append(("i", v.item()))
            return v

        torch.empty, torch.randint = rec_empty, rec_randint
        try:
            i, j, ch, cw = T.RandomResizedCrop.get_params(Image.new("RGB", (w, h)), list(scale), [3 / 4, 4 / 3])
        finally:
            torch.empty, torch.randint = real_empty, real_randint
        # The second uniform of each try is log(ratio); torchvision exponentiates
        # it in float32, so record the float32 ratio it then used.
        vals = []
        for n, (kind, v) in enumerate(draws):
            vals.append(repr(v))
        rrc_lines.append(f"{w} {h} {scale[0]!r} {scale[1]!r} {i} {j} {ch} {cw} {len(vals)} " + " ".join(vals))

    with open(os.path.join(HERE, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(HERE, "rrc_params.txt"), "w") as f:
        f.write("# width height scale_lo scale_hi -> top left h w; then torch's raw draws in order\n")
        f.write("\n".join(rrc_lines) + "\n")


if __name__ == "__main__":
    main()
