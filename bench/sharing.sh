#!/usr/bin/env bash
# bench/run sharing: one synthetic teacher, three student families whose
# speeds differ 1:3:6 (transport_student ranks that sleep after each block:
# slow 1 rank, medium 2 ranks, fast 1 rank), a block cache of about 16
# blocks, far smaller than their drift. For each lead policy (pace, spill,
# free) it prints:
#   computed_per_unique  blocks the teacher computed per distinct block (1.00: each once)
#   leader_paced_fraction  the fast family's seconds held back by pacing over its run
#   waiting_fraction     per family, the seconds its ranks waited for targets over their run
# The last line is computed_per_unique= of the pace policy, the median of
# REPEATS runs (each printed).
#   BLOCKS=N (default 600)  PORT=P (default 47655)  REPEATS=N (default 3)  BUILD_DIR=D (default build)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
bin=$build/bin/distill
student=$build/tests/transport_student
for f in "$bin" "$student"; do
  [ -x "$f" ] || { echo "bench/sharing.sh: $f missing (run scripts/build)" >&2; exit 2; }
done
blocks=${BLOCKS:-600}
port=${PORT:-47655}
repeats=${REPEATS:-3}
endpoint=tcp://127.0.0.1:$port
# 4 samples x 2 crops x (1 + 16) tokens x 128 floats x 4 bytes = 68 KiB per block: 1 MiB holds about 15.
common=(--synthetic 128,16 --block-size 4 --crops 2)
tmp=$(mktemp -d)
teacher_pid=
trap 'kill $teacher_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
echo "benchmark sharing: $blocks blocks, families slow (1 rank), medium (2 ranks), fast (1 rank) at speeds 1:3:6"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2" | tail -1; }

run_once() {  # run_once POLICY: prints the run's line, appends computed_per_unique to $tmp/ratio.POLICY
  local policy=$1
  local flags=(--lead-policy "$policy")
  [ "$policy" = spill ] && flags+=(--spill "$tmp/spill-store" --spill-mb 256)
  "$bin" teacher "${common[@]}" --bind "$endpoint" --cache-mb 1 "${flags[@]}" --heartbeat-ms 200 \
    --status-every-s 1 --metrics-file "$tmp/teacher.jsonl" --quiet >"$tmp/teacher.out" &
  teacher_pid=$!
  sleep 0.2
  local pids=() spec
  for spec in slow:0:1:0.02 medium:0:2:0.0133 medium:1:2:0.0133 fast:0:1:0.0033; do
    IFS=: read -r fam r w spb <<<"$spec"
    "$student" --connect "$endpoint" "${common[@]}" --group "$fam" --rank "$r" --world "$w" --blocks "$blocks" \
      --window 4 --seconds-per-block "$spb" --verify-stride 64 --quiet >"$tmp/$fam.$r.out" &
    pids+=($!)
  done
  local status=0 p
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  kill -TERM "$teacher_pid"
  wait "$teacher_pid" || true
  teacher_pid=
  [ "$status" = 0 ] || { echo "bench/sharing.sh: a student failed ($policy)" >&2; cat "$tmp"/*.out >&2; exit 1; }
  local computed unique
  computed=$(field computed "$tmp/teacher.out")
  unique=$(field computed_unique "$tmp/teacher.out")
  local ratio
  ratio=$(awk -v c="$computed" -v u="$unique" 'BEGIN { printf "%.2f", c / u }')
  echo "$ratio" >>"$tmp/ratio.$policy"
  local fast_s paced waits=""
  fast_s=$(field seconds "$tmp/fast.0.out")
  paced=$(tail -1 "$tmp/teacher.jsonl" | tr '{' '\n' | sed -n 's/.*"name":"fast".*"paced_seconds":\([0-9.]*\).*/\1/p')
  for fam in slow medium fast; do
    waits+=" $fam=$(cat "$tmp/$fam".*.out | awk '/student_result/ { for (i = 1; i <= NF; i++) { split($i, kv, "=");
      if (kv[1] == "wait_seconds") w += kv[2]; if (kv[1] == "seconds") s += kv[2] } } END { printf "%.2f", w / s }')"
  done
  echo "policy=$policy computed=$computed unique=$unique computed_per_unique=$ratio" \
       "held=$(field held "$tmp/teacher.out") spilled=$(field spilled "$tmp/teacher.out")" \
       "leader_paced_fraction=$(awk -v p="${paced:-0}" -v s="$fast_s" 'BEGIN { printf "%.2f", p / s }')" \
       "waiting_fraction:$waits"
}

for ((i = 0; i < repeats; i++)); do
  for policy in pace spill free; do run_once "$policy"; done
done
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for policy in spill free; do echo "$policy: computed_per_unique median $(median "$tmp/ratio.$policy")"; done
echo "computed_per_unique=$(median "$tmp/ratio.pace")"
