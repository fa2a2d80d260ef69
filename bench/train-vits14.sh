#!/usr/bin/env bash
# bench/run train-vits14: one full distillation training step of a ViT-S/14
# student (2 global crops at 224 + 8 local crops at 98 per image, batch 4,
# DINO and iBOT heads with 65536 prototypes, losses, AdamW, EMA), ours and
# PyTorch's in the same run, same thread count; median of BENCH_REPEATS
# (default 3) after one warm-up step. Last line: ratio=R (PyTorch's step
# time over ours: above 1 means ours is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${BENCH_REPEATS:-3}
threads=${BENCH_THREADS:-2}
batch=${BENCH_BATCH:-4}
[ -x build/bin/bench_train ] || scripts/build >/dev/null
echo "benchmark train-vits14: ViT-S/14 training step, batch $batch, 2x224 + 8x98 crops, 65536 prototypes, $threads threads, median of $repeats"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
ours=$(OMP_NUM_THREADS=$threads build/bin/bench_train "$batch" "$repeats" | tee /dev/stderr | \
       sed -n 's/^distill_step_s=\([0-9.]*\).*/\1/p')
theirs=$(BENCH_THREADS=$threads OMP_NUM_THREADS=$threads /usr/bin/python3 bench/torch_train.py "$batch" "$repeats" | \
         tee /dev/stderr | sed -n 's/^torch_step_s=\([0-9.]*\).*/\1/p')
echo "distill: $ours s/step   pytorch: $theirs s/step"
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "ratio=%.2f\n", b / a }'
