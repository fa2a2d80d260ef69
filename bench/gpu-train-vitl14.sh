#!/usr/bin/env bash
# bench/run gpu-train-vitl14: the vitl14 student training step on the GPU vs PyTorch (bench/gpu/train.sh).
exec "$(dirname "$0")/gpu/train.sh" vitl14
