#!/usr/bin/env bash
# bench/gpu/train.sh SIZE: the student's training step on the GPU (vits14,
# vitb14 or vitl14; 2 x 224 + 8 x 98 crops per image, bf16), distill's CUDA
# step against PyTorch (SDPA + bf16 autocast, the same model definitions) on
# the same card in the same run, for both target kinds. Prints per kind a
# line `result gpu-train-SIZE/KIND distill=X pytorch=Y mfu_distill=A
# mfu_pytorch=B ratio=R` (images/s; ratio = ours over PyTorch's), and last
# `ratio=R`, the smaller of the two kinds' ratios.
# Environment: BENCH_REPEATS (default 5), BENCH_TRAIN_BATCH (images per step,
# default 32), DISTILL_GPU_BIN (folder holding bench_gpu_train; default
# build/bench/gpu), DISTILL_TORCH_PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/result_line.sh
size=${1:?usage: bench/gpu/train.sh vits14|vitb14|vitl14}
repeats=${BENCH_REPEATS:-5}
batch=${BENCH_TRAIN_BATCH:-32}
bin=${DISTILL_GPU_BIN:-build/bench/gpu}/bench_gpu_train
py=${DISTILL_TORCH_PYTHON:-python3}
[ -x "$bin" ] || { echo "bench gpu-train: $bin not built (needs the CUDA build)" >&2; exit 2; }

echo "benchmark gpu-train-$size: student training step, batch $batch, 2x224 + 8x98 crops, bf16, prototypes and features, median of $repeats"
ours=$("$bin" "$size" "$batch" "$repeats" | tee >(cat >&2) | grep '^distill_train ')
theirs=$("$py" bench/gpu/torch_train_gpu.py "$size" "$batch" "$repeats" | tee >(cat >&2) | grep '^torch_train ')
field() { sed -n "s/.*[ ^]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
echo "device: $(field device "$(head -1 <<<"$ours")")   torch: $(field torch "$(head -1 <<<"$theirs")")"
worst=""
for kind in prototypes features; do
  o=$(grep " kind=$kind " <<<"$ours" || true)
  t=$(grep " kind=$kind " <<<"$theirs" || true)
  [ -n "$o" ] && [ -n "$t" ] || { echo "bench gpu-train-$size: no $kind figure from one side" >&2; exit 1; }
  line=$(result_line "gpu-train-$size/$kind" "$(field images_per_s "$o")" "$(field images_per_s "$t")" \
                     "$(field flops_per_image "$o")" "$(field peak_tflops "$o")")
  echo "$line"
  r=${line##*ratio=}
  if [ -z "$worst" ] || awk -v a="$r" -v b="$worst" 'BEGIN { exit !(a < b) }'; then worst=$r; fi
done
echo "ratio=$worst"
