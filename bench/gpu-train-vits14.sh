#!/usr/bin/env bash
# bench/run gpu-train-vits14: the vits14 student training step on the GPU vs PyTorch (bench/gpu/train.sh).
exec "$(dirname "$0")/gpu/train.sh" vits14
