#!/usr/bin/env bash
# bench/run eval-overhead: does evaluating every export slow training?
# The demo's features student (recipes/demo-student-features.yaml) trains
# 200 steps against the demo teacher with a checkpoint every 25 steps,
# once without its eval section and once with it (each export: distill knn
# on 10,000 / 2,000 Fashion-MNIST images at 56 px, in a SCHED_IDLE process),
# alternating, REPEATS times each; a fresh teacher per run (no cached
# blocks). Prints the median step time of each run and, last,
# step_time_ratio=R (median with eval over median without). Environment:
# REPEATS (default 3), EVAL_BENCH_PORT (default 47651), DISTILL_BIN (default
# build/bin/distill).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${REPEATS:-3}
port=${EVAL_BENCH_PORT:-47651}
bin=${DISTILL_BIN:-build/bin/distill}
[ -x "$bin" ] || scripts/build >/dev/null
work=$(mktemp -d /tmp/distill-eval-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
base=recipes/demo-student-features.yaml
# Both variants in recipes/ beside the original (its relative paths stay valid), removed on exit.
with=recipes/.eval-bench-with.yaml without=recipes/.eval-bench-without.yaml
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work" "$with" "$without"' EXIT
sed -e 's/^  steps: [0-9]*\( .*\)\?$/  steps: 200/' -e 's/^  every_steps: 100/  every_steps: 25/' \
    -e 's/^hires:/hires_unused:/' "$base" | awk '/^hires_unused:/ {skip = 1; next} /^[a-z]/ {skip = 0} !skip' > "$with"
awk '/^eval:/ {skip = 1; next} /^[a-z]/ {skip = 0} !skip' "$with" > "$without"
grep -q '^eval:' "$with" && ! grep -q '^eval:' "$without" || { echo "eval-overhead: could not make the recipes" >&2; exit 1; }
echo "benchmark eval-overhead: demo features student, 200 steps, an export every 25, $repeats runs each"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
export OMP_WAIT_POLICY=passive
run() {  # RECIPE NAME -> median step seconds
  "$bin" teacher --recipe recipes/demo-serve.yaml --listen "tcp://127.0.0.1:$port" --quiet > "$work/teacher.log" 2>&1 &
  local teacher=$!
  rm -rf "$work/$2"
  "$bin" student --recipe "$1" --teachers "tcp://127.0.0.1:$port" --out "$work/$2" --quiet
  kill "$teacher"; wait "$teacher" 2>/dev/null || true
  /usr/bin/python3 - "$work/$2/metrics.jsonl" <<'PY'
import json, statistics, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steps = [l["seconds"] for l in lines if "loss" in l]
evals = [l for l in lines if l.get("event") == "eval" and l.get("status") == "done"]
print(f"{statistics.median(steps):.4f} {len(steps)} {len(evals)}")
PY
}
with_t=() without_t=()
for i in $(seq "$repeats"); do
  read -r t n e < <(run "$without" "without-$i"); without_t+=("$t"); echo "run $i without eval: median step $t s ($n steps, $e evaluations)"
  read -r t n e < <(run "$with" "with-$i"); with_t+=("$t"); echo "run $i with eval:    median step $t s ($n steps, $e evaluations)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
a=$(median "${with_t[@]}") b=$(median "${without_t[@]}")
echo "median step: with eval $a s, without $b s"
awk -v a="$a" -v b="$b" 'BEGIN { printf "step_time_ratio=%.3f\n", a / b }'
