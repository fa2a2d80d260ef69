#!/usr/bin/env bash
# deploy/local/status on a fabricated OUT folder (no processes, no ports):
# teacher-metrics.jsonl / teacher.log lines and two groups' metrics.jsonl
# written here, one of them in its high-resolution phase with a partly
# written last line. Checks the terminal block (step/total, phase, loss,
# images/s, ETA from the last steps' seconds), the one-line mode, the
# teacher.log fallback, --every with a line completed while it runs, bad
# input (status 2, one line) and `bash -n` of deploy/local/launch.
# Usage: status_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1 work=$2/status_reader  # not launch_test.sh status's folder: they may run at once
status=$src/deploy/local/status
rm -rf "$work"
mkdir -p "$work/out/features" "$work/out/prototypes"
out=$work/out
fail() { echo "FAIL $*"; exit 1; }
ok() { echo "ok   $*"; }
expect() {  # TEXT PATTERN WHAT
  grep -qE -- "$2" <<< "$1" || fail "$3: expected /$2/ in:"$'\n'"$1"
}

bash -n "$src/deploy/local/launch" || fail "bash -n deploy/local/launch"
ok "bash -n deploy/local/launch"

# features: 3 steps of 0.5 s at 64 images/s, 100 in all: 97 left * 0.5 s = 48.5 s.
for i in 0 1 2; do
  echo "{\"step\":$i,\"resolution\":56,\"loss\":1.25,\"seconds\":0.5,\"images_per_s\":64.00,\"total_steps\":100}"
done > "$out/features/metrics.jsonl"
echo '{"event":"checkpoint","step":2}' >> "$out/features/metrics.jsonl"
# prototypes: a step at 56 px, the switch, a step at 84 px, and half a line.
{
  echo '{"step":48,"resolution":56,"loss":2.5,"seconds":1.0,"images_per_s":32.00,"total_steps":60}'
  echo '{"event":"hires","step":49}'
  echo '{"step":49,"resolution":84,"loss":2.125,"seconds":2.0,"images_per_s":16.00,"total_steps":60}'
  echo '{"event":"eval","step":40,"status":"done","knn_top1":71.25,"k":20}'
  echo '{"event":"eval","step":48,"status":"failed","reason":"distill knn: killed by signal 9"}'
  printf '{"step":50,"resolution":84,"lo'
} > "$out/prototypes/metrics.jsonl"
# The teacher: 150 computed, 120 unique; 50 blocks in the last 10 s.
{
  echo '{"event":"teacher_status","seconds":10.0,"computed":100,"computed_unique":90,"families":[]}'
  echo '{"event":"teacher_status","seconds":20.0,"computed":150,"computed_unique":120,"families":[]}'
} > "$out/teacher-metrics.jsonl"
echo 'teacher id=t event=status computed=150 unique=120 again=0 served=300' > "$out/teacher.log"

block=$("$status" --tty "$out")
echo "$block"
expect "$block" '^teacher +5\.0 blocks/s +computed 150 / unique 120 \(1\.25x\)$' "teacher line"
expect "$block" '^features +step +3/100 +56 px +loss 1\.2500 +64\.0 img/s +ETA 0m49s$' "features line"
# (1 + 2 s) / 2 steps = 1.5 s a step, 10 left; 64 images in 3 s.
expect "$block" '^prototypes +step +50/60 +hires 84 px +loss 2\.1250 +21\.3 img/s +ETA 0m15s +k-NN 71\.25 \(step 40\)$' "prototypes line"
[[ $(wc -l <<< "$block") == 3 ]] || fail "3 lines expected"
ok "terminal block: teacher 5.0 blocks/s and computed/unique, step/total, phase (56 px, hires 84 px), loss, img/s, ETA, the latest evaluated export's k-NN (a failed evaluation not shown); the half line ignored"

line=$("$status" --lines --groups features,prototypes,late "$out")
echo "$line"
[[ $(wc -l <<< "$line") == 1 ]] || fail "one line expected"
expect "$line" '^status: teacher 5\.0 blocks/s .*\| features step 3/100 56 px loss 1\.2500 64\.0 img/s ETA 0m49s \| prototypes step 50/60 hires 84 px .*ETA 0m15s k-NN 71\.25 \(step 40\) \| late waiting$' "line mode"
ok "line mode: one line, groups in --groups order, a group without a file 'waiting'"

# Without the JSON lines, computed/unique from teacher.log (no clock there: blocks/s '?').
rm "$out/teacher-metrics.jsonl"
line=$("$status" --lines "$out")
expect "$line" '^status: teacher \? blocks/s +computed 150 / unique 120' "teacher.log fallback"
ok "teacher.log fallback: computed 150 / unique 120"

# --every: the half line completed (and a last step) while it runs; SIGTERM draws once more.
"$status" --every 0.2 --lines "$out" > "$work/every.out" &
pid=$!
sleep 0.5
{
  echo 'ss":2.0,"seconds":2.0,"images_per_s":16.00,"total_steps":60}'
  for i in $(seq 51 59); do
    echo "{\"step\":$i,\"resolution\":84,\"loss\":1.5,\"seconds\":2.0,\"images_per_s\":16.00,\"total_steps\":60}"
  done
} >> "$out/prototypes/metrics.jsonl"
sleep 0.6
kill -TERM "$pid"
wait "$pid" || fail "status --every exited $? after SIGTERM"
last=$(tail -1 "$work/every.out")
echo "$last"
(($(wc -l < "$work/every.out") >= 3)) || fail "fewer than 3 lines in 1.1 s at --every 0.2"
# The last 12 steps: (32 + 11 * 32) images in (1 + 11 * 2) s = 16.7 images/s.
expect "$last" 'prototypes step 60/60 hires 84 px loss 1\.5000 16\.7 img/s ETA done' "after the file grew"
ok "--every: $(wc -l < "$work/every.out") lines; the completed line and the last step read, ETA done"

for bad in "" "--every x $out" "--bogus $out" "$work/no-such-folder"; do
  # shellcheck disable=SC2086
  "$status" $bad > "$work/bad.out" 2>&1 && rc=0 || rc=$?
  ((rc == 2)) && [[ $(wc -l < "$work/bad.out") == 1 ]] || fail "'status $bad': status $rc, $(cat "$work/bad.out")"
done
ok "bad input (no OUT, --every x, an unknown option, a missing folder): status 2, one line"
