#!/usr/bin/env bash
# bench/run transport: one synthetic teacher serving 3 student groups over
# loopback TCP with 1 MiB blocks (f32, no zstd: the payload rate of the
# transport itself), then the codecs' encode+decode rate and the payload
# checksums' rate on one core.
# Prints payload GB/s, blocks/s and codec MB/s; the last line is gbps=X
# (payload gigabytes, 10^9 bytes, per second: not gigabits).
# The teacher keeps a 256 MiB cache: the groups run in step, so a block is
# computed once and its memory recycled after all three have it.
# Uses the binaries in build/ (scripts/build first).
#   BLOCKS=N    blocks per group (default 2000: 2000 x 1 MiB x 3 groups)
#   PORT=P      teacher port on 127.0.0.1 (default 47555)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/bin/distill
student=build/tests/transport_student
codec_bench=build/bin/transport_codec_bench
for f in "$bin" "$student" "$codec_bench"; do
  [ -x "$f" ] || { echo "bench/transport.sh: $f missing (run scripts/build)" >&2; exit 2; }
done
blocks=${BLOCKS:-2000}
port=${PORT:-47555}
endpoint=${ENDPOINT:-tcp://127.0.0.1:$port}
# 4 samples x 1 crop x (1 CLS + 63 patches) x 1024 floats x 4 bytes = 1 MiB per block.
synthetic=1024,63
common=(--synthetic $synthetic --block-size 4 --crops 1)
tmp=$(mktemp -d)
trap 'kill $teacher_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$bin" teacher "${common[@]}" --bind "$endpoint" --cache-mb 256 --quiet > "$tmp/teacher.out" &
teacher_pid=$!
sleep 0.3
start=$(date +%s.%N)
pids=()
for g in 0 1 2; do
  "$student" --connect "$endpoint" "${common[@]}" --group "group$g" --blocks "$blocks" \
    --window ${WINDOW:-16} --verify-stride 997 --quiet > "$tmp/student$g.out" &
  pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
end=$(date +%s.%N)
kill -TERM $teacher_pid
wait $teacher_pid || true
cat "$tmp"/student*.out | grep student_result
[ $status -eq 0 ] || { echo "bench/transport.sh: a student failed" >&2; exit 1; }
sum_field() { sed -n "s/.*student_result.* $1=\([0-9]*\).*/\1/p" "$tmp"/student*.out | awk '{s += $1} END {print s}'; }
bytes=$(sum_field payload_bytes)
nblocks=$(sum_field delivered)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
grep -o 'computed=[0-9]*' "$tmp/teacher.out" | sed 's/^/teacher /'
echo "codec and checksum throughput, one core, 1 MiB float32 tensor (MB of float32 per second):"
"$codec_bench"
awk -v by="$bytes" -v n="$nblocks" -v s="$secs" 'BEGIN {
  printf "payload_bytes=%.0f blocks=%d seconds=%.3f blocks_per_s=%.0f\n", by, n, s, n / s
  printf "gbps=%.2f\n", by / s / 1e9 }'
