#!/usr/bin/env bash
# bench/run gpu-train-vitb14: the vitb14 student training step on the GPU vs PyTorch (bench/gpu/train.sh).
exec "$(dirname "$0")/gpu/train.sh" vitb14
