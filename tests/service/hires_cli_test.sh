#!/usr/bin/env bash
# `distill student` with a bad value in the recipe's hires section: one line
# on stderr naming the file, line and key, exit status 2, before anything
# else happens (--export-init: no teacher, no port).
set -euo pipefail
distill=$1 src=$2 work=$3
mkdir -p "$work"
base=$src/tests/service/hires.yaml
fails=0
check() {  # check NAME 'sed expression' WANT
  local recipe=$work/hires-bad-$1.yaml err=$work/hires-bad-$1.err rc=0
  sed "$2" "$base" > "$recipe"
  "$distill" student --recipe "$recipe" --export-init "$work/hires-bad-$1.safetensors" 2> "$err" >/dev/null || rc=$?
  local lines
  lines=$(wc -l < "$err")
  if [ "$rc" -eq 2 ] && [ "$lines" -eq 1 ] && grep -q -- "$3" "$err"; then
    echo "ok   $1: exit 2, one line: $(cat "$err")"
  else
    echo "FAIL $1: exit $rc, $lines line(s): $(cat "$err")"
    fails=$((fails + 1))
  fi
}
check lr 's/^  lr: 0.004$/  lr: fast/' "lr.yaml:[0-9]*: hires.lr: 'fast' is not a number"
check momentum 's/^  momentum: 0.9$/  momentum: 1.5/' "hires.momentum: 1.5 is outside \[0, 1\]"
check warmup 's/^  warmup: 2$/  warmup: 5/' "hires.warmup 5 exceeds hires.steps 4"
check local_size 's/^  local_size: 28$/  local_size: 30/' "hires.local_size 30 is not a multiple of model.patch 14"
check key 's/^  min_lr: 0.0005$/  min_lrr: 0.0005/' "unknown key 'min_lrr' in section hires"
[ "$fails" -eq 0 ] && echo "hires_cli_test: 5 checks, 0 failed" || { echo "hires_cli_test: $fails failed"; exit 1; }
