#!/usr/bin/env bash
# bench/run transport: one synthetic teacher serving 3 student groups over
# loopback TCP with 1 MiB blocks (f32, no zstd: the payload rate of the
# transport itself), then the codecs' encode+decode rate and the payload
# checksums' rate on one core.
# Prints payload GB/s, blocks/s and codec MB/s; the last line is gbps=X, the
# median of REPEATS runs
# (payload gigabytes, 10^9 bytes, per second: not gigabits).
# After each run, bench/tcp_ceiling sends the same bytes in the same shape
# over bare loopback TCP (no ZeroMQ, codec or checksum): what the kernel
# alone allows at that moment. Its median and the median ratio of the two are
# printed before the last line, since on a small shared machine the kernel's
# loopback TCP, not the transport, sets the figure.
# The teacher keeps a 256 MiB cache: the groups run in step, so a block is
# computed once and its memory recycled after all three have it.
# Uses the binaries in build/ (scripts/build first).
#   BLOCKS=N    blocks per group (default 2000: 2000 x 1 MiB x 3 groups)
#   PORT=P      teacher port on 127.0.0.1 (default 47555)
#   REPEATS=N   runs; the last line is their median (default 5)
#   IO_THREADS=N  the teacher's --io-threads (default: the teacher's default)
#   CEILING=0   skip the bare-TCP reference runs
#   COLD_CEILING=1  also run bare TCP in the transport's shape (the sender
#               cycling through 256 blocks like the teacher's cache, each
#               receiver through 17 like a student's window: bytes rarely in
#               cache) and print tcp_cold_ceiling_gbps and of_cold_ceiling
#   BUILD_DIR=D where the binaries are (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
bin=$build/bin/distill
student=$build/tests/transport_student
codec_bench=$build/bin/transport_codec_bench
ceiling=$build/bin/tcp_ceiling
for f in "$bin" "$student" "$codec_bench" "$ceiling"; do
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

# run_once N: one teacher and three groups, the whole stream; prints the
# run's line and appends its gbps to $tmp/gbps.
run_once() {
  "$bin" teacher "${common[@]}" --bind "$endpoint" --cache-mb 256 ${IO_THREADS:+--io-threads $IO_THREADS} \
    --quiet > "$tmp/teacher.out" &
  teacher_pid=$!
  sleep 0.3
  local start end status=0 pids=() g p
  start=$(date +%s.%N)
  for g in 0 1 2; do
    "$student" --connect "$endpoint" "${common[@]}" --group "group$g" --blocks "$blocks" \
      --window ${WINDOW:-16} --verify-stride 997 --quiet > "$tmp/student$g.out" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  end=$(date +%s.%N)
  kill -TERM $teacher_pid
  wait $teacher_pid || true
  [ "$1" = 1 ] && cat "$tmp"/student*.out | grep student_result
  [ $status -eq 0 ] || { echo "bench/transport.sh: a student failed" >&2; exit 1; }
  local bytes nblocks secs computed
  bytes=$(sum_field payload_bytes)
  nblocks=$(sum_field delivered)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN {print b - a}')
  computed=$(grep -o 'computed=[0-9]*' "$tmp/teacher.out")
  awk -v r="$1" -v by="$bytes" -v n="$nblocks" -v s="$secs" -v c="$computed" 'BEGIN {
    printf "run %d: payload_bytes=%.0f blocks=%d seconds=%.3f blocks_per_s=%.0f teacher_%s gbps=%.2f\n", r, by, n, s, n / s, c, by / s / 1e9 }'
  awk -v by="$bytes" -v s="$secs" 'BEGIN { printf "%.4f\n", by / s / 1e9 }' >> "$tmp/gbps"
  [ "${CEILING:-1}" = 0 ] && return
  # 256 KiB socket buffers: the fastest bare-TCP setting on the machine this
  # was written on (kernel autotuning, 1 MiB and 4 MiB were slower).
  local line
  line=$("$ceiling" --receivers 3 --blocks "$blocks" --block-bytes 1048576 --sockbuf 262144)
  echo "ceiling $1: $line"
  local g=${line##*gbps=}
  echo "$g" >> "$tmp/ceiling"
  awk -v a="$(tail -1 "$tmp/gbps")" -v b="$g" 'BEGIN { printf "%.4f\n", a / b }' >> "$tmp/ratio"
  [ "${COLD_CEILING:-0}" = 1 ] || return 0
  line=$("$ceiling" --receivers 3 --blocks "$blocks" --block-bytes 1048576 --sockbuf 262144 \
    --send-buffers 256 --recv-buffers 17)
  echo "cold ceiling $1: $line"
  g=${line##*gbps=}
  echo "$g" >> "$tmp/cold"
  awk -v a="$(tail -1 "$tmp/gbps")" -v b="$g" 'BEGIN { printf "%.4f\n", a / b }' >> "$tmp/cold_ratio"
}
# stats FILE: the minimum, maximum and median of its numbers, one per line.
stats() { sort -g "$1" | awk '{v[NR] = $1} END {
  printf "%.2f %.2f %.2f\n", v[1], v[NR], NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
median() { stats "$1" | cut -d' ' -f3; }
sum_field() { sed -n "s/.*student_result.* $1=\([0-9]*\).*/\1/p" "$tmp"/student*.out | awk '{s += $1} END {print s}'; }

# The machine is shared and one run's rate swings by 10-20 %: the figure is
# the median of REPEATS runs (default 5), each printed.
repeats=${REPEATS:-5}
for r in $(seq "$repeats"); do run_once "$r"; done
echo "codec and checksum throughput, one core, 1 MiB float32 tensor (MB of float32 per second):"
"$codec_bench"
if [ "${CEILING:-1}" != 0 ]; then
  echo "tcp_ceiling_gbps=$(median "$tmp/ceiling") (bare loopback TCP, median)"
  echo "of_ceiling=$(median "$tmp/ratio") (transport / bare TCP, median of the per-run ratios)"
  if [ "${COLD_CEILING:-0}" = 1 ]; then
    echo "tcp_cold_ceiling_gbps=$(median "$tmp/cold") (bare loopback TCP, buffers cycled as the transport's, median)"
    echo "of_cold_ceiling=$(median "$tmp/cold_ratio") (transport / that, median of the per-run ratios)"
  fi
fi
read -r lo hi med < <(stats "$tmp/gbps")
echo "runs=$repeats min=$lo max=$hi (payload GB/s)"
echo "gbps=$med"
