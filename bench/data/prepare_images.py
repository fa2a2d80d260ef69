#!/usr/bin/python3
"""Saves the photographs of python3-skimage's data folder as JPEG (quality
90) into the folder given, the benchmark's input for both pipelines."""
import os
import sys

from PIL import Image
from skimage import data as skdata

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field",
          "immunohistochemistry", "camera", "coins", "moon", "grass", "gravel", "brick"]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name in PHOTOS:
        fn = getattr(skdata, name, None)
        if fn is None:
            continue
        try:
            arr = fn()
        except Exception as e:  # a file missing from this skimage build
            print(f"prepare_images: skip {name}: {e}", file=sys.stderr)
            continue
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        Image.fromarray(arr).convert("RGB").save(os.path.join(out, f"{name}.jpg"), quality=90)


if __name__ == "__main__":
    main()
