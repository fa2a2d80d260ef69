#!/usr/bin/env bash
# The one GPU check: every CUDA op's parity with the CPU op, the CUDA ViT
# against the reference vectors and the CPU forward, its training passes
# (outputs and every parameter gradient) against the CPU's, the heads and
# feature losses of the training step against the CPU's, 20 whole
# training steps against the CPU's (both target kinds, float32 and bf16),
# compute-sanitizer's memcheck and racecheck on the two small programs
# (sanitize.sh; skipped with a line where the tool is absent), the service
# itself (service_check.sh: `distill-gpu teacher --device cuda` serving a
# `student --device cuda` and a CPU student for 20 steps, losses within
# 5 %), and the benchmarks against PyTorch on the same card (teacher
# inference, student training steps); ends with one table and exits 0 only
# if every step passed or was skipped (1 otherwise, 2 for a bad
# CHECK_STEPS). A test that finds no usable GPU counts as a failure here
# (ctest skips it; this script exists to run it).
#
# Runs from a bundle made by tests/gpu/pack.sh (bin/, lib/, ref/ beside this
# script) or from the repository after a CUDA build (build/tests/gpu, ...).
# Environment:
#   DISTILL_TORCH_PYTHON  Python with a CUDA PyTorch 2.x (default python3)
#   CHECK_SKIP_BENCH=1    parity steps only
#   CHECK_STEPS="a b"     only these steps (names as in the table), e.g. to
#                         rerun what failed
#   BENCH_REPEATS         timed repeats per benchmark (default 3 here)
# Budget: 8 minutes on an H100. Each step has a time limit (below; a step
# past it is killed and fails): the parity, sanitizer and service steps'
# limits add up to 430 s, the benchmarks' to 275 s, so a first run that
# hits every limit takes 11.75 minutes; CHECK_SKIP_BENCH=1 keeps it within 8.
# The real durations have not been measured yet: the table prints each
# step's.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -d "$here/bin" ]; then
  root=$here; bin=$here/bin; bench_bin=$here/bin; ref=$here/ref/dinov2
  service_bin=$here/bin/distill-gpu; data=$here/data/fashion-mnist; models=$here/models/demo-teacher
else
  root=$(cd "$here/../.." && pwd); bin=$root/build/tests/gpu; bench_bin=$root/build/bench/gpu
  ref=$root/tests/ref/dinov2
  service_bin=$root/build/bin/distill-gpu; data=/usr/share/datasets/fashion-mnist; models=$root/models/demo-teacher
fi
py=${DISTILL_TORCH_PYTHON:-python3}
log=$(mktemp -d)

# name:seconds of every step, in running order.
parity_steps="ops:65 matmul:15 vit:40 vit_train:30 heads:15 proto_losses:10 train_steps:50 memory_plan:25 memcheck:60 racecheck:60 service:60"
bench_steps="gpu-teacher-224:55 gpu-teacher-518:45 gpu-train-vits14:45 gpu-train-vitb14:55 gpu-train-vitl14:75"
steps=$parity_steps
[ "${CHECK_SKIP_BENCH:-0}" = 1 ] || steps="$steps $bench_steps"
if [ -n "${CHECK_STEPS:-}" ]; then
  all=" $(sed 's/:[0-9]*//g' <<<"$parity_steps $bench_steps") "
  for want in $CHECK_STEPS; do
    [[ $all == *" $want "* ]] || { echo "check: unknown step '$want' (steps:$all)"; exit 2; }
  done
  steps=$(for s in $parity_steps $bench_steps; do [[ " $CHECK_STEPS " == *" ${s%%:*} "* ]] && echo "$s"; done)
fi

# CUDA libraries: the pip wheels' nvidia/*/lib (cuBLAS, NCCL, cuDNN, the CUDA
# 13 wheels' cu13/lib), then the bundle's own lib/.
libs=""
site=$("$py" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null || true)
for s in $site; do
  for d in "$s"/nvidia/*/lib; do [ -d "$d" ] && libs="$libs:$d"; done
done
[ -d "$root/lib" ] && libs="$libs:$root/lib"
[ -d /usr/local/cuda/lib64 ] && libs="$libs:/usr/local/cuda/lib64"
export LD_LIBRARY_PATH="${libs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

echo "== GPU check: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1) =="
for b in "$bin/test_cuda_ops" "$bench_bin/bench_gpu_train" "$service_bin"; do
  [ -x "$b" ] || { echo "check: $b is missing (build with -DDISTILL_CUDA=ON, or run tests/gpu/pack.sh)"; exit 1; }
  missing=$(ldd "$b" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    echo "check: libraries not found for $(basename "$b"): $missing"
    echo "check: the binaries were built with CUDA 13 (libcublasLt.so.13); install a CUDA 13 PyTorch wheel or"
    echo "       point LD_LIBRARY_PATH at a CUDA 13 toolkit's lib64 (see tests/gpu/README.md)"
    exit 1
  fi
done

export BENCH_REPEATS=${BENCH_REPEATS:-3} DISTILL_GPU_BIN=$bench_bin DISTILL_TORCH_PYTHON=$py
command_of() {  # the command line of a step
  case $1 in
    ops) echo "$bin/test_cuda_ops" ;;
    vit) echo "$bin/test_cuda_vit $ref" ;;
    vit_train) echo "$bin/test_cuda_vit_train $ref" ;;
    heads) echo "$bin/test_cuda_heads" ;;
    proto_losses) echo "$bin/test_cuda_proto_losses" ;;
    train_steps) echo "$bin/test_cuda_train_steps" ;;
    memory_plan) echo "$bin/test_cuda_memory_plan" ;;
    matmul) echo "$bin/test_cuda_matmul" ;;
    memcheck|racecheck) echo "bash $here/sanitize.sh $1 $bin $ref" ;;
    service) echo "bash $here/service_check.sh $service_bin $data $models $log/service" ;;
    gpu-teacher-224) echo "bash $root/bench/gpu/teacher.sh 224 64" ;;
    gpu-teacher-518) echo "bash $root/bench/gpu/teacher.sh 518 8" ;;
    gpu-train-*) echo "bash $root/bench/gpu/train.sh ${1#gpu-train-}" ;;
  esac
}

status=0
for s in $steps; do
  name=${s%%:*} secs=${s##*:}
  echo "-- $name (limit ${secs}s)"
  t0=$(date +%s)
  # shellcheck disable=SC2046
  timeout -k 5 "$secs" $(command_of "$name") >"$log/$name.out" 2>&1
  rc=$?
  echo "$rc $(($(date +%s) - t0))" >"$log/$name.rc"
  tail -n 3 "$log/$name.out"
  [ "$rc" -eq 0 ] || [ "$rc" -eq 78 ] || status=1  # 78: skipped (a tool this machine lacks)
done

verdict() {  # rc -> words
  case $1 in
    0) echo "pass" ;;
    77) echo "FAIL: no usable GPU" ;;
    78) echo "skip: tool absent" ;;
    124|137) echo "FAIL: time limit" ;;
    *) echo "FAIL: exit $1" ;;
  esac
}

echo
echo "== steps =="
printf '%-18s %-8s %-8s %s\n' "step" "limit_s" "took_s" "status"
for s in $steps; do
  name=${s%%:*}
  read -r rc took <"$log/$name.rc"
  printf '%-18s %-8s %-8s %s\n' "$name" "${s##*:}" "$took" "$(verdict "$rc")"
done

echo
echo "== parity =="
printf '%-56s %-5s %-10s %-9s %s\n' "check" "type" "rel_err" "tol" "status"
for s in $steps; do
  name=${s%%:*}
  case $name in gpu-*) continue ;; esac
  grep -aE '^(ok|FAIL).* result ' "$log/$name.out" |
    sed -E 's/^(ok|FAIL).* result ([^ ]+) ([^ ]+) rel_err=([^ ]+) tol=([^ ]+).*/\2 \3 \4 \5 \1/' |
    awk '{ printf "%-56s %-5s %-10s %-9s %s\n", $1, $2, $3, $4, ($5 == "ok" ? "pass" : "FAIL") }'
  grep -aE '^FAIL' "$log/$name.out" | grep -v ' result ' | sed "s/^/  $name: /"
  grep -a -m1 '^skip' "$log/$name.out" | sed "s/^/  $name: /"
done

if grep -q 'gpu-' <<<"$steps"; then
  echo
  echo "== benchmarks (images/s; ratio = distill / PyTorch) =="
  printf '%-30s %-10s %-10s %-11s %-11s %s\n' "benchmark" "distill" "pytorch" "mfu_ours" "mfu_torch" "ratio"
  for s in $steps; do
    name=${s%%:*}
    case $name in gpu-*) ;; *) continue ;; esac
    lines=$(grep -a '^result gpu-' "$log/$name.out" || true)
    if [ -z "$lines" ]; then
      read -r rc _ <"$log/$name.rc"
      printf '%-30s %s\n' "$name" "$(verdict "$rc") (see $log/$name.out)"
      continue
    fi
    sed -E 's/^result ([^ ]+) distill=([^ ]+) pytorch=([^ ]+) mfu_distill=([^ ]+) mfu_pytorch=([^ ]+) ratio=([^ ]+).*/\1 \2 \3 \4 \5 \6/' <<<"$lines" |
      awk '{ printf "%-30s %-10s %-10s %-11s %-11s ratio=%s\n", $1, $2, $3, $4, $5, $6 }'
  done
fi
echo
echo "logs: $log"
[ "$status" -eq 0 ] && echo "GPU check: pass" || echo "GPU check: FAIL"
exit "$status"
