#!/usr/bin/env bash
# Builds the GPU check binaries here (release build with CUDA) and gathers
# what a GPU machine needs into one folder (default build/gpu-check):
#   bin/   every test_cuda_* program of tests/gpu/CMakeLists.txt,
#          bench_gpu_teacher, bench_gpu_train and distill-gpu (the service:
#          teacher and student with --device cuda)
#   lib/   the non-system shared libraries they load (OpenBLAS and its
#          Fortran runtime, OpenMP; for distill-gpu ZeroMQ and what it
#          needs, protobuf-c, zstd, libyaml, libjpeg, libpng, ...), from
#          ldd; never glibc, the C++ runtime or the CUDA libraries (CUDA
#          runtime, cuBLAS, cuDNN, NCCL), which come from the GPU machine's
#          PyTorch wheels (see README.md)
#   service/, data/, models/: check.sh's service step (service_check.sh):
#          its two recipes, Fashion-MNIST's test split (4 MB) and the demo
#          teacher (models/demo-teacher, 5 MB)
#   ref/   the reference vectors; bench/, tools/: the benchmark scripts and
#          the PyTorch baselines with the model definitions they share
#   check.sh, sanitize.sh, service_check.sh
# and the same folder as OUT_DIR.tar.gz, the thing to carry to a GPU machine.
# usage: [BUILD_DIR=build] [PACK_NO_BUILD=1] tests/gpu/pack.sh [OUT_DIR]
#   BUILD_DIR      the CUDA build folder to build in and take from
#   PACK_NO_BUILD  take the binaries as they are in BUILD_DIR (no build)
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build}
out=${1:-$build/gpu-check}
fashion=${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
# Every GPU test program the build defines, so a new one travels too.
progs=$(sed -nE 's/^distill_gpu_test\(([a-z_]+) .*/\1/p' tests/gpu/CMakeLists.txt | tr '\n' ' ')
benches="bench_gpu_teacher bench_gpu_train"
if [ -z "${PACK_NO_BUILD:-}" ]; then
  BUILD_DIR=$build scripts/build -DDISTILL_CUDA=ON >/dev/null
  # shellcheck disable=SC2086
  cmake --build "$build" --target $progs $benches distill-gpu >/dev/null
fi
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib" "$out/ref" "$out/bench/gpu" "$out/tools" "$out/service" "$out/data/fashion-mnist" \
  "$out/models"
for p in $progs; do cp "$build/tests/gpu/$p" "$out/bin/"; done
for b in $benches; do cp "$build/bench/gpu/$b" "$out/bin/"; done
cp "$build/bin/distill-gpu" "$out/bin/"
cp tests/gpu/service/teacher.yaml tests/gpu/service/student.yaml "$out/service/"
cp "$fashion"/t10k-images-idx3-ubyte* "$fashion"/t10k-labels-idx1-ubyte* "$out/data/fashion-mnist/"
cp -r models/demo-teacher "$out/models/"
cp -r tests/ref/dinov2 "$out/ref/"
cp bench/gpu/teacher.sh bench/gpu/train.sh bench/gpu/result_line.sh bench/gpu/torch_teacher.py bench/gpu/torch_train_gpu.py "$out/bench/gpu/"
cp bench/torch_train.py "$out/bench/"
cp tools/dinov2_torch.py "$out/tools/"
cp tests/gpu/check.sh tests/gpu/sanitize.sh tests/gpu/service_check.sh "$out/"
# glibc, the C++ runtime and the CUDA/NCCL/cuDNN libraries are the GPU
# machine's own; everything else that ldd resolves travels.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|librt\.|libresolv\.|libpthread\.|libstdc\+\+|libgcc_s|libcuda\.|libcublas|libcudart|libnccl|libcudnn)'
for b in "$out"/bin/*; do
  ldd "$b" | awk '$3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  grep -Eq "$skip" <<<"$name" || cp -L "$path" "$out/lib/$name"
done
# The folder with the repository is over the device tool's 64 MiB for what
# travels; the tarball (about 26 MB) is what to carry.
tar -C "$(dirname "$out")" -czf "$out.tar.gz" "$(basename "$out")"
echo "packed $(du -sh "$out" | cut -f1) into $out ($(du -sh "$out.tar.gz" | cut -f1) as $out.tar.gz): $(ls "$out/lib" | tr '\n' ' ')"
