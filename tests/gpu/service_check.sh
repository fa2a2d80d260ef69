#!/usr/bin/env bash
# tests/gpu/check.sh's service step: the service itself on one GPU. One
# `distill-gpu teacher --device cuda` (the demo teacher, service/teacher.yaml)
# serves two student groups one after the other: `student --device cuda`
# and `student --device cpu` of service/student.yaml, 20 steps each on the
# same blocks. Their total losses must agree at every step within
# LOSS_TOL (relative to the CPU's): 0.05, the bound test_cuda_train_steps
# uses for 20 bf16 steps against float32, since the GPU student trains in
# bf16 and the CPU one in float32 (a bound chosen, not yet measured).
# Prints "ok|FAIL ... result service_losses bf16 rel_err=E tol=T" for
# check.sh's parity table; exits 0 only if both students finished and agree.
# usage: service_check.sh DISTILL_GPU FASHION_MNIST_DIR DEMO_TEACHER_DIR WORK_DIR
# SERVICE_DEVICE=cpu runs the teacher and the first student on the CPU: a
# dry run of this script on a machine without a GPU (with `distill`).
set -uo pipefail
bin=$1 data=$2 models=$3 work=$4
here=$(cd "$(dirname "$0")" && pwd)
LOSS_TOL=0.05
port=${SERVICE_PORT:-15871}
device=${SERVICE_DEVICE:-cuda}
gpu_flag=(); [ "$device" = cuda ] && gpu_flag=(--gpu 0)
mkdir -p "$work"
for f in teacher student; do
  sed "s|@DATA@|$data|g; s|@MODELS@|$models|g" "$here/service/$f.yaml" >"$work/$f.yaml"
done
[ -f "$data/t10k-images-idx3-ubyte.gz" ] || [ -f "$data/t10k-images-idx3-ubyte" ] ||
  { echo "FAIL service: no Fashion-MNIST test split in $data"; exit 1; }

"$bin" teacher --recipe "$work/teacher.yaml" --device "$device" "${gpu_flag[@]}" --bind "tcp://127.0.0.1:$port" --quiet \
  >"$work/teacher.log" 2>&1 &
teacher=$!
stop_teacher() { kill -TERM "$teacher" 2>/dev/null; wait "$teacher" 2>/dev/null; }
trap stop_teacher EXIT
sleep 1
kill -0 "$teacher" 2>/dev/null || { echo "FAIL service: the teacher exited: $(tail -n 2 "$work/teacher.log")"; exit 1; }

rc=0
for run in "gpu $device" "cpu cpu"; do
  name=${run% *} dev=${run#* }
  t0=$(date +%s)
  "$bin" student --recipe "$work/student.yaml" --device "$dev" --teachers "tcp://127.0.0.1:$port" \
    --out "$work/student-$name" --group "service-$name" --quiet >"$work/student-$name.log" 2>&1
  r=$?
  echo "info student --device $dev: exit $r in $(($(date +%s) - t0)) s"
  [ "$r" -eq 0 ] || { echo "FAIL service: student --device $dev: $(tail -n 2 "$work/student-$name.log")"; rc=1; }
done
stop_teacher
trap - EXIT
[ "$rc" -eq 0 ] || exit 1

# The largest relative difference of the total loss over the 20 steps.
losses() { sed -nE 's/^\{"step":([0-9]+),.*"loss":([^,]+),.*/\1 \2/p' "$1"; }
losses "$work/student-gpu/metrics.jsonl" >"$work/loss-gpu.txt"
losses "$work/student-cpu/metrics.jsonl" >"$work/loss-cpu.txt"
join "$work/loss-gpu.txt" "$work/loss-cpu.txt" | awk -v tol="$LOSS_TOL" '
  { d = $2 - $3; if (d < 0) d = -d; c = $3 < 0 ? -$3 : $3; e = d / (c > 1e-12 ? c : 1e-12)
    if (e > worst) { worst = e; at = $1 } n++ ; last_g = $2; last_c = $3 }
  END {
    if (n != 20) { printf "FAIL service: %d steps in both students, expected 20\n", n; exit 1 }
    printf "info step 19 loss: gpu %s cpu %s; worst step %d\n", last_g, last_c, at
    ok = worst <= tol
    printf "%s   result service_losses bf16 rel_err=%.3g tol=%g\n", ok ? "ok" : "FAIL", worst, tol
    exit ok ? 0 : 1
  }'
