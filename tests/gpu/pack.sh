#!/usr/bin/env bash
# Builds the GPU check binaries here (release build with CUDA) and gathers
# what a GPU machine needs into one folder (default build/gpu-check):
#   bin/   test_cuda_ops, test_cuda_vit, test_cuda_vit_train, test_cuda_heads,
#          test_cuda_train_steps,
#          bench_gpu_teacher, bench_gpu_train
#   lib/   the non-system shared libraries they load (OpenBLAS and its
#          Fortran runtime, OpenMP), from ldd; never the CUDA libraries,
#          which come from the GPU machine's PyTorch wheels (see README.md)
#   ref/   the reference vectors; bench/, tools/: the benchmark scripts and
#          the PyTorch baselines with the model definitions they share
#   check.sh
# and the same folder as OUT_DIR.tar.gz, the thing to carry to a GPU machine.
# usage: tests/gpu/pack.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-build/gpu-check}
scripts/build -DDISTILL_CUDA=ON >/dev/null
progs="test_cuda_ops test_cuda_vit test_cuda_vit_train test_cuda_heads test_cuda_train_steps test_cuda_memory_plan"
benches="bench_gpu_teacher bench_gpu_train"
# shellcheck disable=SC2086
cmake --build build --target $progs $benches >/dev/null
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/ref" "$out/bench/gpu" "$out/tools"
for p in $progs; do cp "build/tests/gpu/$p" "$out/bin/"; done
for b in $benches; do cp "build/bench/gpu/$b" "$out/bin/"; done
cp -r tests/ref/dinov2 "$out/ref/"
cp bench/gpu/teacher.sh bench/gpu/train.sh bench/gpu/result_line.sh bench/gpu/torch_teacher.py bench/gpu/torch_train_gpu.py "$out/bench/gpu/"
cp bench/torch_train.py "$out/bench/"
cp tools/dinov2_torch.py "$out/tools/"
cp tests/gpu/check.sh "$out/"
# glibc, the C++ runtime and the CUDA/NCCL/cuDNN libraries are the GPU
# machine's own; everything else that ldd resolves travels.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcublas|libcudart|libnccl|libcudnn)'
for b in "$out"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  grep -Eq "$skip" <<<"$name" || cp -L "$path" "$out/lib/$name"
done
# The folder with the repository is over the device tool's 64 MiB for what
# travels; the tarball (about 26 MB) is what to carry.
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "packed $(du -sh "$out" | cut -f1) into $out ($(du -sh "$out.tar.gz" | cut -f1) as $out.tar.gz): $(ls "$out/lib" | tr '\n' ' ')"
