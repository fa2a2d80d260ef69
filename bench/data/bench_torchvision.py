#!/usr/bin/python3
"""The reference side of bench/data.sh: DINOv2's augmentation pipeline as its
released code builds it (torchvision transforms on PIL images: 2 global crops
of 224 at 0.32-1.0, 8 local crops of 98 at 0.05-0.32, ColorJitter, grayscale,
blur, solarize, ToTensor + Normalize), with PIL decoding, on the same JPEGs,
in a torch DataLoader with the same number of worker processes.

    bench_torchvision.py DIR WORKERS SAMPLES REPEATS
"""
import os
import statistics
import sys
import time

import torch
from PIL import Image
from torchvision import transforms as T


class RandomBlur(T.RandomApply):
    """Blur applied with probability p (the released code's GaussianBlur(p))."""

    def __init__(self, p):
        super().__init__([T.GaussianBlur(kernel_size=9, sigma=(0.1, 2.0))], p=p)


def dino_augmentation():
    bicubic = T.InterpolationMode.BICUBIC
    geo_global = T.Compose([T.RandomResizedCrop(224, scale=(0.32, 1.0), interpolation=bicubic), T.RandomHorizontalFlip(0.5)])
    geo_local = T.Compose([T.RandomResizedCrop(98, scale=(0.05, 0.32), interpolation=bicubic), T.RandomHorizontalFlip(0.5)])
    color = T.Compose([T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), T.RandomGrayscale(0.2)])
    norm = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    g1 = T.Compose([color, norm])   # blur p 0 on the first global crop (what ran)
    g2 = T.Compose([color, RandomBlur(0.9), T.RandomSolarize(128, p=0.2), norm])
    loc = T.Compose([color, RandomBlur(0.5), norm])

    def apply(img):
        return ([g1(geo_global(img)), g2(geo_global(img))], [loc(geo_local(img)) for _ in range(8)])

    return apply


class Files(torch.utils.data.Dataset):
    def __init__(self, folder, samples):
        self.paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jpg"))
        self.samples = samples
        self.aug = dino_augmentation()

    def __len__(self):
        return self.samples

    def __getitem__(self, i):
        with open(self.paths[i % len(self.paths)], "rb") as f:
            img = Image.open(f).convert("RGB")
        return self.aug(img)


def main():
    folder, workers, samples, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    rates = []
    for r in range(repeats):
        loader = torch.utils.data.DataLoader(Files(folder, samples), batch_size=8, num_workers=workers,
                                             collate_fn=lambda batch: batch, persistent_workers=False)
        # The clock starts at the first batch, so worker start-up is not counted.
        it = iter(loader)
        next(it)
        t0 = time.perf_counter()
        n = sum(len(batch) for batch in it)
        rate = n / (time.perf_counter() - t0)
        rates.append(rate)
        print(f"torchvision repeat {r + 1}: {n} samples, {rate:.1f} samples/s")
    print(f"torchvision median: {statistics.median(rates):.1f} samples/s")


if __name__ == "__main__":
    main()
