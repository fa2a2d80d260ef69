"""`distill pca` against numpy: the same patch features (from `distill embed`
with resize = crop, the transform `distill pca` uses), PCA by numpy.linalg.eigh
in float64, the same foreground rule and colour mapping; the map in the PNG
must give the same foreground and colours within 1 of 255, and the printed
variances must agree.

usage: /usr/bin/python3 pca_numpy.py DISTILL WEIGHTS WORK_DIR
"""
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import st_io  # noqa: E402

SIZE, PATCH, GAP, THRESHOLD = 224, 14, 4, 0.0


def make_images(work):
    """Two images unlike test_pca's: a bright ellipse with a gradient, and a
    smaller disc, on a dark, slightly noisy ground."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    paths = []
    for i, (cx, cy, rx, ry) in enumerate([(112, 100, 70, 50), (80, 140, 40, 40)]):
        inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        img = rng.integers(0, 25, (SIZE, SIZE, 3)).astype(np.float64)
        img[inside] = 150 + 100 * (xx[inside] / SIZE)[:, None] * np.array([1.0, 0.8, 0.6])
        path = os.path.join(work, f"pca_numpy_{i}.png")
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def fit(x, k):
    """Top-k components (unit rows, largest-magnitude entry positive), variances, mean."""
    mean = x.mean(0)
    c = x - mean
    w, v = np.linalg.eigh(c.T @ c / (len(x) - 1))
    comps = v[:, ::-1][:, :k].T.copy()
    for row in comps:
        if row[np.argmax(np.abs(row))] < 0:
            row *= -1
    return comps, w[::-1][:k], mean


def reference(feats, images, grid):
    comps, _, mean = fit(feats, 1)
    pc0 = (feats - mean) @ comps[0]
    border = np.zeros((images, grid, grid), bool)
    border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
    border = border.reshape(-1)
    sign = -1 if pc0[border].mean() > pc0.mean() else 1
    fg = sign * pc0 / pc0.std(ddof=1) > THRESHOLD  # pc0 is centred
    comps, var, mean = fit(feats[fg], 3)
    proj = (feats - mean) @ comps.T
    lo, hi = proj[fg].min(0), proj[fg].max(0)
    rgb = np.rint(255 * (proj - lo) / (hi - lo))
    rgb[~fg] = 0
    return fg, rgb, var


def main():
    distill, weights, work = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    images = make_images(work)
    feats_path = os.path.join(work, "pca_numpy_feats.safetensors")
    subprocess.run([distill, "embed", "--weights", weights, "--images", *images, "--resize", str(SIZE),
                    "--size", str(SIZE), "--out", feats_path], check=True, stdout=subprocess.DEVNULL)
    dtype, shape, raw = st_io.read(feats_path)[0]["x_norm_patchtokens"]
    feats = np.frombuffer(raw, dtype=np.float32).reshape(-1, shape[2]).astype(np.float64)
    grid = SIZE // PATCH
    fg, rgb, var = reference(feats, len(images), grid)

    out = os.path.join(work, "pca_numpy.png")
    run = subprocess.run([distill, "pca", "--weights", weights, "--images", *images, "--out", out,
                          "--threshold", str(THRESHOLD)], check=True, capture_output=True, text=True)
    printed = [float(v) for v in re.search(r"components (\S+) (\S+) (\S+)", run.stdout).groups()]
    pic = np.asarray(Image.open(out).convert("RGB")).astype(np.int64)
    ours = []
    for i in range(len(images)):
        y0, x0 = GAP + i * (SIZE + GAP), 2 * GAP + SIZE
        centres = pic[y0 + PATCH // 2:y0 + SIZE:PATCH, x0 + PATCH // 2:x0 + SIZE:PATCH]
        ours.append(centres.reshape(-1, 3))
    ours = np.concatenate(ours)
    ours_fg = ours.any(1)

    failures = 0

    def check(ok, msg):
        nonlocal failures
        failures += not ok
        print(("ok   " if ok else "FAIL ") + msg)

    check(fg.sum() > 0 and (~fg).sum() > 0, f"numpy: {fg.sum()} of {len(fg)} patches are foreground")
    # A foreground patch coloured (0, 0, 0) would read as background: allow those.
    mismatch = int(((ours_fg != fg) & ~((rgb == 0).all(1))).sum())
    check(mismatch == 0, f"foreground of distill pca equals numpy's ({mismatch} patches differ)")
    diff = int(np.abs(ours - rgb).max())
    check(diff <= 1, f"colours: largest difference {diff} of 255 (<= 1) over {len(rgb)} patches")
    rel = max(abs(a - b) / b for a, b in zip(printed, var))
    check(rel < 1e-3, f"variances {printed} against numpy's {[f'{v:.4g}' for v in var]} (rel {rel:.1e})")
    print(f"pca_numpy: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
