#!/usr/bin/env bash
# deploy/local/launch end to end, with the synthetic teacher and the service
# tests' tiny student (tests/service/features.yaml, made endless):
#   sigint   two groups training; SIGINT to the launcher stops every child
#            within 10 s, each group's last checkpoint is the step it stopped
#            at, and a second launch resumes both groups from exactly there
#   failure  a group that fails (a recipe that does not exist: status 2)
#            makes the launcher stop the others and exit 1
#   restart  a group killed with SIGKILL is started again from its newest
#            checkpoint (--restarts 1), as scripts/demo does
#   finish   CURVE on (distill keygen; the teacher's --curve-key/--allow, the
#            group's --curve-key/--teacher-key): the group trains to its last
#            step, and the launcher then stops the teacher and exits 0
#   usage    a bad config line: status 2 naming the line
#   status   --status --status-every 1 with the output not a terminal: a
#            status line every second while group a trains, with the
#            teacher's blocks/s; after SIGTERM a last line, 'ETA stopped'
# Usage: launch_test.sh CASE DISTILL SOURCE_DIR WORK_DIR
set -euo pipefail
set -m  # the launcher in its own process group: SIGINT reaches it as Ctrl-C would
case_name=$1 distill=$2 src=$3 work=$4/$1
launch=$src/deploy/local/launch
rm -rf "$work"
mkdir -p "$work"
out=$work/out
# A port range per case: the cases run in parallel under ctest -j. Below the
# kernel's ephemeral range (32768-60999), so no client socket of another test
# can hold the port.
case $case_name in sigint) base=21000 ;; restart) base=21250 ;; failure) base=21500 ;; finish) base=21750 ;; status) base=22250 ;; *) base=22000 ;; esac
port=$((base + RANDOM % 250))
sed 's/^  steps: 40 .*$/  steps: 100000/; s/^  steps: 40$/  steps: 100000/' "$src/tests/service/features.yaml" > "$work/endless.yaml"
grep -q 'steps: 100000' "$work/endless.yaml"

launcher=""
cleanup() {
  set +e
  [[ -n $launcher ]] && kill -KILL "$launcher" 2>/dev/null
  for f in "$out"/pids/*; do [[ -f $f ]] && kill -KILL "$(cat "$f")" 2>/dev/null; done
}
trap cleanup EXIT
fail() { echo "FAIL $*"; for f in "$out"/*.log "$work"/launch*.out; do [[ -f $f ]] && { echo "--- $f"; tail -5 "$f"; }; done; exit 1; }
ok() { echo "ok   $*"; }

config() {  # lines of the config: groups NAME=RECIPE
  echo "# launch_test: a synthetic teacher for the recipe's shapes (16 floats, 4 patches)"
  echo "teacher --synthetic 16,4 --block-size 4 --crops 2 --heartbeat-ms 100 --dead-after-ms 1000 --quiet"
  for g in "$@"; do echo "group ${g%%=*} --recipe ${g#*=} --heartbeat-ms 100 --dead-after-ms 500 --quiet"; done
}

start_launcher() {  # LOG [launcher flags] CONFIG
  local log=$1
  shift
  OMP_NUM_THREADS=1 "$launch" --bin "$distill" --out "$out" --port "$port" "$@" > "$log" 2>&1 &
  launcher=$!
}

# wait_for FILE PATTERN SECONDS
wait_for() {
  local end=$((SECONDS + $3))
  until grep -q "$2" "$1" 2>/dev/null; do
    ((SECONDS < end)) || return 1
    kill -0 "$launcher" 2>/dev/null || return 1
    sleep 0.1
  done
}

last_checkpoint() { grep -o '"event":"checkpoint","step":[0-9]*' "$1/metrics.jsonl" | tail -1 | grep -o '[0-9]*$'; }

children() { for f in "$out"/pids/*; do cat "$f"; done; }

case $case_name in
sigint)
  config a="$work/endless.yaml" b="$work/endless.yaml" > "$work/launch.conf"
  start_launcher "$work/launch1.out" "$work/launch.conf"
  for g in a b; do
    wait_for "$out/$g/metrics.jsonl" '"event":"checkpoint"' 60 || fail "group $g wrote no checkpoint"
  done
  pids=$(children)
  ok "teacher and groups a, b running (pids $(echo $pids)), both checkpointed"
  t0=$(date +%s%N)
  kill -INT "$launcher"
  while kill -0 "$launcher" 2>/dev/null; do
    (($(date +%s%N) - t0 < 10000000000)) || fail "the launcher still runs 10 s after SIGINT"
    sleep 0.05
  done
  wait "$launcher" && rc=0 || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  left=0
  for p in $pids; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
  ((left == 0)) || fail "$left children still alive after the launcher left"
  ((rc == 130)) || fail "launcher exit status $rc after SIGINT, expected 130"
  ok "SIGINT: the launcher and its 3 children stopped in $ms ms (limit 10000), status 130"
  declare -A stopped
  for g in a b; do
    stop=$(grep -o '"event":"stop","step":[0-9]*' "$out/$g/metrics.jsonl" | grep -o '[0-9]*$' || true)
    ck=$(last_checkpoint "$out/$g")
    [[ -n $stop && $stop == "$ck" ]] || fail "group $g: stop at step '${stop}', last checkpoint '${ck}'"
    stopped[$g]=$stop
    ok "group $g left at step $stop with a checkpoint of that step"
  done
  # The second launch: both groups resume from the checkpoint they left.
  start_launcher "$work/launch2.out" "$work/launch.conf"
  for g in a b; do
    wait_for "$out/$g/metrics.jsonl" '"event":"resume"' 60 || fail "group $g did not resume"
    res=$(grep -o '"event":"resume","step":[0-9]*' "$out/$g/metrics.jsonl" | tail -1 | grep -o '[0-9]*$')
    [[ $res == "${stopped[$g]}" ]] || fail "group $g resumed at step $res, expected ${stopped[$g]}"
    ok "group $g loaded its latest checkpoint and resumed at step $res"
  done
  kill -TERM "$launcher"
  wait "$launcher" && rc=0 || rc=$?
  ((rc == 143)) || fail "launcher exit status $rc after SIGTERM, expected 143"
  ok "SIGTERM: status 143"
  ;;
failure)
  config a="$work/endless.yaml" broken="$work/no-such-recipe.yaml" > "$work/launch.conf"
  start_launcher "$work/launch.out" "$work/launch.conf"
  t0=$SECONDS
  wait "$launcher" && rc=0 || rc=$?
  launcher=""
  ((rc == 1)) || fail "launcher exit status $rc when a group fails, expected 1"
  grep -q "group broken failed (status 2" "$work/launch.out" || fail "the launcher did not name the failed group"
  for p in $(children); do kill -0 "$p" 2>/dev/null && fail "child $p still alive"; done
  ok "a group exiting with status 2 stopped the teacher and the other group in $((SECONDS - t0)) s; status 1"
  ;;
restart)
  config a="$work/endless.yaml" > "$work/launch.conf"
  start_launcher "$work/launch.out" --restarts 1 "$work/launch.conf"
  wait_for "$out/a/metrics.jsonl" '"event":"checkpoint","step":8' 60 || fail "no checkpoint at step 8"
  first=$(cat "$out/pids/a")
  kill -KILL "$first"
  wait_for "$out/a/metrics.jsonl" '"event":"resume"' 60 || fail "group a was not started again"
  second=$(cat "$out/pids/a")
  [[ $second != "$first" ]] || fail "the pid file still names the killed process"
  res=$(grep -o '"event":"resume","step":[0-9]*' "$out/a/metrics.jsonl" | grep -o '[0-9]*$')
  ((res >= 8 && res % 4 == 0)) || fail "resumed at step $res"
  ok "group a killed with SIGKILL (pid $first) was started again (pid $second) and resumed at step $res"
  kill -TERM "$launcher"
  wait "$launcher" || true
  ;;
finish)
  (cd "$work" && "$distill" keygen teacher && "$distill" keygen student && cp student.pub students.txt) > /dev/null
  {
    echo "teacher --synthetic 16,4 --block-size 4 --crops 2 --curve-key $work/teacher.key --allow $work/students.txt"
    echo "group a --recipe $src/tests/service/features.yaml --curve-key $work/student.key --teacher-key $work/teacher.pub --quiet"
  } > "$work/launch.conf"
  start_launcher "$work/launch.out" "$work/launch.conf"
  t0=$SECONDS
  while kill -0 "$launcher" 2>/dev/null; do
    ((SECONDS - t0 < 90)) || fail "the launcher still runs after 90 s"
    sleep 0.2
  done
  wait "$launcher" && rc=0 || rc=$?
  launcher=""
  steps=$(grep -c '"loss"' "$out/a/metrics.jsonl" || true)
  ((rc == 0 && steps == 40)) || fail "status $rc, $steps steps logged (40 expected)"
  grep -q "every group finished" "$work/launch.out" || fail "the launcher did not report the end"
  metrics=$(grep -o "peers_welcomed=[0-9]* .*auth_refused=[0-9]*" "$out/teacher.log" || true)
  [[ $metrics == *"peers_welcomed=1 "* && $metrics == *"auth_refused=0" ]] || fail "teacher metrics: $metrics"
  ok "CURVE: group a trained its 40 steps through the encrypted transport (teacher: ${metrics// */} ... auth_refused=0); the launcher stopped the teacher and exited 0"
  ;;
usage)
  printf 'teacher --synthetic 16,4\ngroup a --recipe x.yaml --out elsewhere\n' > "$work/bad.conf"
  "$launch" --bin "$distill" --out "$out" "$work/bad.conf" > "$work/launch.out" 2>&1 && rc=0 || rc=$?
  ((rc == 2)) && grep -q "bad.conf:2: --out is set by the launcher" "$work/launch.out" ||
    fail "status $rc: $(cat "$work/launch.out")"
  ok "a config line setting --out: status 2, '$(cat "$work/launch.out")'"
  printf 'teacher --synthetic 16,4\nworker a\n' > "$work/bad.conf"
  "$launch" --bin "$distill" --out "$out" "$work/bad.conf" > "$work/launch.out" 2>&1 && rc=0 || rc=$?
  ((rc == 2)) && grep -q "bad.conf:2: expected" "$work/launch.out" || fail "status $rc: $(cat "$work/launch.out")"
  ok "an unknown line kind: status 2, '$(cat "$work/launch.out")'"
  ;;
status)
  {
    echo "teacher --synthetic 16,4 --block-size 4 --crops 2 --status-every-s 1 --quiet"
    echo "group a --recipe $work/endless.yaml --quiet"
  } > "$work/launch.conf"
  start_launcher "$work/launch.out" --status --status-every 1 "$work/launch.conf"
  wait_for "$work/launch.out" '^status: teacher [0-9][0-9.]* blocks/s' 30 || fail "no status line with the teacher's blocks/s"
  kill -TERM "$launcher"
  wait "$launcher" && rc=0 || rc=$?
  launcher=""
  ((rc == 143)) || fail "status $rc after SIGTERM, expected 143"
  lines=$(grep -c '^status: ' "$work/launch.out" || true)
  last=$(grep '^status: ' "$work/launch.out" | tail -1)
  echo "$last"
  ((lines >= 2)) || fail "$lines status lines"
  [[ $last =~ ^status:\ teacher\ [0-9.]+\ blocks/s\ +computed\ [1-9][0-9]*\ /\ unique\ [1-9][0-9]*.*\|\ a\ step\ [1-9][0-9]*/100000\ [0-9]+\ px\ loss\ [0-9.]+\ [0-9.]+\ img/s\ ETA\ stopped$ ]] ||
    fail "the last status line: $last"
  [[ -s $out/teacher-metrics.jsonl ]] || fail "no status in $out/teacher-metrics.jsonl"
  ok "--status: $lines status lines while group a trained, the teacher's blocks/s and computed/unique; after SIGTERM the last one says ETA stopped"
  ;;
*) echo "unknown case $case_name"; exit 2 ;;
esac
exit 0
