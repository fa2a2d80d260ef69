#!/usr/bin/env bash
# bench/gpu/teacher.sh RES BATCH: ViT-g/14 teacher inference on the GPU,
# distill's CUDA forward against PyTorch (SDPA + bf16 autocast) on the same
# card in the same run. Prints both rates, each one's MFU, a line `result
# gpu-teacher-RES distill=X pytorch=Y mfu_distill=A mfu_pytorch=B ratio=R`
# (what tests/gpu/check.sh tabulates), and ratio=R last.
# Environment: BENCH_REPEATS (default 10), DISTILL_GPU_BIN (folder holding
# bench_gpu_teacher; default build/bench/gpu), DISTILL_TORCH_PYTHON (a Python
# with a CUDA build of PyTorch 2.x; default python3).
set -euo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/result_line.sh
res=${1:?usage: bench/gpu/teacher.sh RES BATCH}
batch=${2:?usage: bench/gpu/teacher.sh RES BATCH}
repeats=${BENCH_REPEATS:-10}
bin=${DISTILL_GPU_BIN:-build/bench/gpu}/bench_gpu_teacher
py=${DISTILL_TORCH_PYTHON:-python3}
[ -x "$bin" ] || { echo "bench gpu-teacher: $bin not built (needs the CUDA build)" >&2; exit 2; }

echo "benchmark gpu-teacher-$res: DINOv2 ViT-g/14 inference, $res px, batch $batch, bf16, median of $repeats"
ours_line=$("$bin" "$res" "$batch" "$repeats" | tee >(cat >&2) | grep '^distill_images_per_s=')
theirs_line=$("$py" bench/gpu/torch_teacher.py "$res" "$batch" "$repeats" | tee >(cat >&2) | grep '^torch_images_per_s=')
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$2"; }
ours=$(field distill_images_per_s "$ours_line")
theirs=$(field torch_images_per_s "$theirs_line")
flops=$(field flops_per_image "$ours_line")
peak=$(field peak_tflops "$ours_line")
echo "device: $(field device "$ours_line")   torch: $(field torch "$theirs_line")"
awk -v a="$ours" -v b="$theirs" -v f="$flops" -v p="$peak" 'BEGIN {
  printf "distill: %.2f images/s   pytorch: %.2f images/s\n", a, b
  if (p > 0) printf "mfu_distill=%.3f mfu_pytorch=%.3f (peak %.1f TFLOP/s dense bf16)\n", a * f / (p * 1e12), b * f / (p * 1e12), p
  else print "mfu: unknown card, set BENCH_PEAK_TFLOPS" }'
line=$(result_line "gpu-teacher-$res" "$ours" "$theirs" "$flops" "$peak")
echo "$line"
echo "ratio=${line##*ratio=}"
