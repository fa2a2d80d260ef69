#!/usr/bin/env bash
# bench/transport.sh in miniature (50 blocks per group, one run), so the
# benchmark script, tcp_ceiling and the test student cannot rot unnoticed:
# every group must finish, and the output must hold the run, the bare-TCP
# reference and the final gbps= line with a positive figure. It checks that
# the benchmark works, not how fast: CI machines are too noisy for that.
#   bench_smoke.sh SOURCE_DIR BUILD_DIR PORT
set -euo pipefail
src=$1 build=$2 port=$3
out=$(BUILD_DIR="$build" BLOCKS=50 REPEATS=1 PORT="$port" "$src/bench/transport.sh" 2>&1) || {
  echo "$out"; echo "FAIL bench/transport.sh exited non-zero"; exit 1; }
fail=0
check() {  # check DESCRIPTION EXTENDED-REGEX
  if grep -Eq "$2" <<<"$out"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
check "the run moved 3 x 50 blocks of 1 MiB" '^run 1: payload_bytes=157286[0-9]+ blocks=150 '
check "the teacher computed each block once" 'teacher_computed=50 '
check "bare TCP carried the same bytes" '^ceiling 1: tcp_ceiling receivers=3 .*bytes=157286400 '
check "the codec rates are printed" '^codec=int8 zstd=1 encode_mbps=[0-9]+'
check "the ceiling and the ratio are printed" '^of_ceiling=[0-9.]+ '
last=$(tail -1 <<<"$out")
if [[ $last =~ ^gbps=[0-9]+\.[0-9]+$ ]] && awk -v g="${last#gbps=}" 'BEGIN { exit !(g > 0) }'; then
  echo "ok   last line: $last"
else
  echo "FAIL last line is not gbps=X with X > 0: $last"; fail=1
fi
[ $fail -eq 0 ] || echo "$out"
exit $fail
