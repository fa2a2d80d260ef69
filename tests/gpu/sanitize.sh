#!/usr/bin/env bash
# tests/gpu/check.sh's sanitizer steps: compute-sanitizer's TOOL (memcheck
# or racecheck) on the two small GPU programs, test_cuda_heads and
# test_cuda_vit_train (with the reference models); any error it reports
# fails the step. Exits 78 with one line when compute-sanitizer is not on
# this machine (PyTorch's wheels do not carry it): check.sh shows a skip.
# usage: sanitize.sh TOOL BIN_DIR REF_DIR
set -uo pipefail
tool=$1 bin=$2 ref=$3
cs=$(command -v compute-sanitizer || true)
[ -z "$cs" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && cs=/usr/local/cuda/bin/compute-sanitizer
[ -n "$cs" ] || { echo "skip compute-sanitizer is not on this machine (PATH, /usr/local/cuda/bin)"; exit 78; }
rc=0
for prog in "test_cuda_heads" "test_cuda_vit_train $ref"; do
  # shellcheck disable=SC2086
  "$cs" --tool "$tool" --error-exitcode 99 $bin/$prog >"/tmp/sanitize.$$.out" 2>&1
  r=$?
  summary=$(grep -aE '^========= (ERROR SUMMARY|RACECHECK SUMMARY)' "/tmp/sanitize.$$.out" | tail -n 1)
  echo "info $tool ${prog%% *}: exit $r ${summary:-(no summary)}"
  if [ "$r" -ne 0 ]; then
    grep -aE '^=========' "/tmp/sanitize.$$.out" | head -n 20
    echo "FAIL $tool ${prog%% *}: exit $r"
    rc=1
  fi
done
rm -f "/tmp/sanitize.$$.out"
exit "$rc"
