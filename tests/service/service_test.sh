#!/usr/bin/env bash
# End-to-end tests of `distill student` against `distill teacher --synthetic`
# (loopback only; every process is stopped by the test). One case per call:
#   service_test.sh CASE DISTILL SOURCE_DIR WORK_DIR GRID_TEACHER
# reference  an uninterrupted run: the losses the other cases must reproduce
# sigterm    stopped by SIGTERM at some step k, resumed with --resume auto
# sigkill    killed by SIGKILL after a checkpoint, resumed with --resume auto
# truncated  the newest checkpoint truncated: refused by name, the previous used
# typo       a recipe key misspelt: exit 2 naming the key and its line
# export     the exported EMA backbone in PyTorch equals `distill embed` (1e-4)
# teacher    the teacher killed with SIGKILL mid-run and restarted: the student
#            finishes with the reference losses
# second     a second teacher started mid-run: it takes a share of the blocks
#            (its own served count), the first keeps serving, and the student
#            finishes with the reference losses
# prototypes prototypes targets (DINO, iBOT, KoLeo): finite losses, and exact
#            resume after SIGTERM
# metrics    --metrics-port: the Prometheus text endpoint answers with the
#            step, the losses and the transport counters while training
# mpi        a 2-rank group (mpirun, 4 images per rank) reaches the same
#            losses as the 1-rank reference (8 images) within 1e-4 relative
# group      a 2-rank group over TCP (--group-addr, a folder per rank as on
#            Kubernetes): the 1-rank reference's losses within 1e-4 relative,
#            and the MPI 2-rank run's bit for bit when that ran (service_mpi)
# group-resume  2 ranks stopped by SIGTERM to rank 1 only; 1 rank resumes from
#            rank 0's folder and is stopped; 2 ranks resume (rank 1's folder
#            holds a stale checkpoint it must ignore): the reference losses
# group-fault   a rank killed with SIGKILL: the other exits with a message
#            naming it within 15 s (both ways); a rank stopped (SIGSTOP): the
#            other gives up after --group-timeout-s; a rank with another recipe or
#            world size refused with a message (exit 2); nobody at rank 0's
#            address: a clear error after --group-timeout-s; SIGTERM while
#            the group forms: exit 0 at once
# minutes    checkpoints by time only (every 0.0002 minutes): written at the
#            steps the clock picks, the last 2 kept with their exports
# hires      4 steps at 42 px after 8 at 28: the switch at step 8, the 42 px
#            targets, the export's 3x3 position grid, the phase's own
#            schedules, the export event's EMA share, and exact resumes from
#            the checkpoints before and after the switch
set -euo pipefail
case_name=$1 distill=$2 src=$3 work=$4 grid_teacher=${5:-}
recipe=$src/tests/service/features.yaml
ref=$work/reference
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

fail() { echo "FAIL $*"; exit 1; }
ok() { echo "ok   $*"; }

# start_teacher PORT: a synthetic teacher for the recipe's shapes (16 floats, 4 patches).
start_teacher() {
  "$distill" teacher --synthetic 16,4 --block-size 4 --crops 2 --bind "tcp://127.0.0.1:$1" \
    --heartbeat-ms 100 --dead-after-ms 1000 --quiet >/dev/null &
  teacher_pid=$!
  pids+=("$teacher_pid")
}

student() {  # student PORT OUT [flags...]
  local port=$1 out=$2
  shift 2
  "$distill" student --recipe "$recipe" --teachers "tcp://127.0.0.1:$port" --out "$out" \
    --heartbeat-ms 100 --dead-after-ms 500 "$@"
}

# student_bg PORT OUT: the same in the background, its own pid in $sp (a
# backgrounded shell function would give the subshell's pid instead).
student_bg() {
  "$distill" student --recipe "$recipe" --teachers "tcp://127.0.0.1:$1" --out "$2" \
    --heartbeat-ms 100 --dead-after-ms 500 --quiet &
  sp=$!
  pids+=("$sp")
}

steps_done() {
  local n
  n=$(grep -c '"step":.*"loss"' "$1/metrics.jsonl" 2>/dev/null) || true
  echo "${n:-0}"
}
at_least() { [ "$(steps_done "$1")" -ge "$2" ]; }

# wait_for COND_CMD...: up to 50 s.
wait_for() {
  for _ in $(seq 500); do "$@" && return 0; sleep 0.1; done
  return 1
}

# advance_to OUT N: lets the (stopped) teacher serve in short bursts until the
# student in OUT logged N steps, and leaves the teacher stopped, so the
# student can run at most its window (4 steps) past N before it waits: the
# interruption lands mid-run however fast the machine is.
advance_to() {
  # Short slices: the student's I/O thread asks for each freed window
  # position at once, so a fast student gets through many steps per slice.
  for _ in $(seq 6000); do
    at_least "$1" "$2" && return 0
    kill -CONT "$teacher_pid"
    sleep 0.005
    kill -STOP "$teacher_pid"
  done
  kill -CONT "$teacher_pid"
  echo "advance_to: $(steps_done "$1") of $2 steps"
  return 1
}

# same_losses OUT [REF]: every step of the reference has the same loss terms in OUT
# (the last line of each step, as a resumed run repeats steps after the checkpoint).
same_losses() {
  python3 - "${2:-$ref}/metrics.jsonl" "$1/metrics.jsonl" <<'PY'
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "loss" in r:
            out[r["step"]] = tuple(r[k] for k in ("loss", "dino", "ibot", "koleo", "feat_cls", "feat_cos", "feat_l1",
                                                   "lr", "wd", "momentum", "teacher_temp"))
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
bad = [s for s in a if b.get(s) != a[s]]
print(f"{len(a)} reference steps, {len(b)} in the resumed run, {len(bad)} differ" + (f" (first: step {bad[0]})" if bad else ""))
sys.exit(1 if bad or len(a) != len(b) else 0)
PY
}

# near_losses REF OUT [FIRST]: from step FIRST (default 0) every loss term of
# OUT is within 1e-4 relative of REF's (the last line of each step), and OUT
# has REF's steps.
near_losses() {
  python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" "${3:-0}" <<'PY'
import json, sys
def rows(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if "loss" in r}
a, b, first = rows(sys.argv[1]), rows(sys.argv[2]), int(sys.argv[3])
steps = [s for s in a if s >= first]
worst = max(abs(b[s][k] - a[s][k]) / max(abs(a[s][k]), 1e-12)
            for s in steps if s in b for k in ("loss", "feat_cls", "feat_cos", "feat_l1"))
print(f"steps {first}-{max(steps)}: {len([s for s in steps if s in b])} of {len(steps)} present, "
      f"largest relative loss difference {worst:.3g}")
sys.exit(0 if all(s in b for s in steps) and len(a) == len(b) and worst <= 1e-4 else 1)
PY
}

# rank_bg PORT GROUP_PORT RANK WORLD OUT [flags...]: one rank of a TCP group in
# the background (stderr to OUT.err), its pid in $sp.
rank_bg() {
  local port=$1 gport=$2 rank=$3 world=$4 out=$5
  shift 5
  mkdir -p "$(dirname "$out")"
  "$distill" student --recipe "$recipe" --teachers "tcp://127.0.0.1:$port" --out "$out" \
    --heartbeat-ms 100 --dead-after-ms 500 --quiet --rank "$rank" --world "$world" \
    --group-addr "127.0.0.1:$gport" --group "$(basename "$(dirname "$out")")" "$@" 2>"$out.err" &
  sp=$!
  pids+=("$sp")
}

# group_wait PID...: every rank exits 0.
group_wait() {
  local p rc=0
  for p in "$@"; do wait "$p" || rc=$?; done
  return $rc
}

case $case_name in
reference)
  rm -rf "$ref"
  start_teacher 15611
  student 15611 "$ref" --quiet || fail "reference run"
  n=$(steps_done "$ref")
  [ "$n" = 40 ] && ok "reference run: 40 steps" || fail "reference run logged $n steps"
  ;;
sigterm)
  out=$work/sigterm
  rm -rf "$out"
  start_teacher 15612
  for attempt in 1 2 3; do  # as for sigkill: only reaching mid-run is retried
    rm -rf "$out"
    kill -STOP "$teacher_pid"
    student_bg 15612 "$out"
    advance_to "$out" 10 || fail "no progress"
    kill -TERM "$sp" 2>/dev/null || true
    rc=0; wait "$sp" || rc=$?
    [ $rc = 0 ] || fail "SIGTERM: exit $rc"
    k=$(steps_done "$out")
    [ "$k" -lt 40 ] && break
    kill -CONT "$teacher_pid"
    echo "note: attempt $attempt: the run ended before SIGTERM reached it; again"
  done
  [ "$k" -lt 40 ] || fail "the run ended before SIGTERM reached it, 3 times"
  grep -q '"event":"stop","step":'"$k" "$out/metrics.jsonl" || fail "no stop event at step $k"
  [ -f "$out/checkpoints/ckpt-$(printf %010d "$k").safetensors" ] || fail "no checkpoint at step $k"
  kill -CONT "$teacher_pid"
  ok "SIGTERM after $k steps: exit 0, checkpoint at step $k"
  student 15612 "$out" --quiet --resume auto || fail "resume"
  grep -q '"event":"resume","step":'"$k" "$out/metrics.jsonl" || fail "did not resume at step $k"
  same_losses "$out" && ok "resumed at step $k: every loss term equals the uninterrupted run's, bitwise" || fail "losses differ"
  ;;
sigkill)
  out=$work/sigkill
  rm -rf "$out"
  start_teacher 15613
  # Setting up the interruption point (mid-run, between checkpoints) is retried
  # when the run got away from the paused teacher (seen once under load); the
  # checks after the kill are not.
  for attempt in 1 2 3; do
    rm -rf "$out"
    kill -STOP "$teacher_pid"
    student_bg 15613 "$out"
    placed=0
    if advance_to "$out" 10; then
      for _ in 1 2 3 4 5 6; do  # kill between checkpoints (every 4 steps), so steps are redone
        n=$(steps_done "$out")
        [ "$n" -ge 36 ] && break
        [ $(( n % 4 )) != 0 ] && { placed=1; break; }
        advance_to "$out" $(( n + 1 )) || break
      done
    fi
    kill -KILL "$sp" 2>/dev/null || true
    wait "$sp" 2>/dev/null || true
    kill -CONT "$teacher_pid"
    [ $placed = 1 ] && break
    echo "note: attempt $attempt did not stop mid-run at a step between checkpoints ($(steps_done "$out") steps); again"
  done
  [ $placed = 1 ] || fail "could not interrupt the run between checkpoints in 3 attempts"
  k=$(steps_done "$out")
  c=$(sed -n 's/ckpt-0*\([0-9][0-9]*\)\.safetensors/\1/p' "$out/checkpoints/latest")
  [ "$k" -lt 40 ] && [ "$c" -ge 8 ] && [ "$c" -lt "$k" ] || fail "SIGKILL after $k steps, checkpoint $c: not a kill after a checkpoint"
  ok "SIGKILL after $k steps, latest checkpoint at step $c"
  student 15613 "$out" --quiet --resume auto || fail "resume"
  grep -q '"event":"resume","step":'"$c" "$out/metrics.jsonl" || fail "did not resume at step $c"
  same_losses "$out" && ok "resumed at step $c: every loss term equals the uninterrupted run's, bitwise" || fail "losses differ"
  ;;
truncated)
  out=$work/truncated
  rm -rf "$out"
  mkdir -p "$out/checkpoints"
  cp "$ref"/checkpoints/ckpt-* "$ref/checkpoints/latest" "$out/checkpoints/"
  grep -v '"step":3[6-9],' "$ref/metrics.jsonl" | grep -v '"event"' > "$out/metrics.jsonl"
  start_teacher 15614
  newest=$out/checkpoints/ckpt-0000000040.safetensors
  size=$(stat -c %s "$newest")
  truncate -s $((size / 2)) "$newest"
  err=$(student 15614 "$out" --quiet --resume auto 2>&1 >/dev/null) && rc=0 || rc=$?
  echo "$err"
  [ $rc = 0 ] || fail "exit $rc"
  echo "$err" | grep -q "refusing checkpoint: .*ckpt-0000000040.safetensors" || fail "no message naming the truncated file"
  grep -q '"event":"resume","step":36' "$out/metrics.jsonl" || fail "did not resume from step 36"
  ok "truncated checkpoint refused with its name, resumed from the previous one (step 36)"
  same_losses "$out" && ok "steps 36-39 again: the reference losses" || fail "losses differ"
  # A flipped byte inside the data is caught by the content hash.
  cp "$ref/checkpoints/ckpt-0000000036.safetensors" "$out/flipped.safetensors"
  printf '\x7f' | dd of="$out/flipped.safetensors" bs=1 seek=$(( $(stat -c %s "$out/flipped.safetensors") - 9 )) conv=notrunc 2>/dev/null
  err=$(student 15614 "$out/x" --quiet --resume "$out/flipped.safetensors" 2>&1) && rc=0 || rc=$?
  echo "$err"
  [ $rc = 2 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q "corrupt checkpoint" && ok "a flipped byte: refused as corrupt, exit 2" || fail "flipped byte: exit $rc"
  # A checkpoint of another model, or from a run with another batch, is refused.
  sed 's/^  dim: 32/  dim: 48/' "$recipe" > "$work/dim48.yaml"
  sed 's/^  batch: 8/  batch: 12/' "$recipe" > "$work/batch12.yaml"
  for r in dim48:"model or target kind differs" batch12:"train.batch or data.block_size changed"; do
    err=$("$distill" student --recipe "$work/${r%%:*}.yaml" --teachers tcp://127.0.0.1:15614 --out "$out/y" --quiet \
      --resume "$ref/checkpoints/ckpt-0000000036.safetensors" 2>&1) && rc=0 || rc=$?
    echo "$err"
    [ $rc = 2 ] && echo "$err" | grep -q "${r#*:}" && ok "${r%%:*}: refused, exit 2" || fail "${r%%:*}: exit $rc"
  done
  ;;
typo)
  bad=$work/typo.yaml
  sed 's/^  warmup: 3/  wramup: 3/' "$recipe" > "$bad"
  line=$(grep -n wramup "$bad" | cut -d: -f1)
  err=$("$distill" student --recipe "$bad" --teachers tcp://127.0.0.1:15615 --out "$work/typo" 2>&1) && rc=0 || rc=$?
  echo "$err"
  [ $rc = 2 ] || fail "exit $rc"
  [ "$(echo "$err" | wc -l)" = 1 ] || fail "more than one line"
  echo "$err" | grep -q "typo.yaml:$line: unknown key 'wramup' in section optim" && ok "exit 2, one line naming the key and line $line" || fail "message"
  # Bad flags: one line, exit 2 (distill has no CUDA backend: distill-gpu does).
  for args in "--bogus 1" "--recipe $recipe" "--recipe $recipe --teachers tcp://127.0.0.1:1 --rank 3" \
              "--recipe $recipe --teachers tcp://127.0.0.1:1 --metrics-port 70000" \
              "--recipe /nonexistent.yaml --teachers tcp://127.0.0.1:1" \
              "--recipe $recipe --teachers tcp://127.0.0.1:1 --device tpu" \
              "--recipe $recipe --teachers tcp://127.0.0.1:1 --device cuda" \
              "--recipe $recipe --teachers tcp://127.0.0.1:1 --group-addr 127.0.0.1:15641 --world 2" \
              "--recipe $recipe --teachers tcp://127.0.0.1:1 --group-addr nohost --rank 1 --world 2"; do
    # shellcheck disable=SC2086
    err=$("$distill" student $args --out "$work/typo" 2>&1) && rc=0 || rc=$?
    [ $rc = 2 ] && [ "$(echo "$err" | wc -l)" = 1 ] && ok "student $args: exit 2: $err" || fail "student $args: exit $rc: $err"
  done
  ;;
export)
  exp=$ref/checkpoints/student-ema-0000000040.safetensors
  /usr/bin/python3 "$src/tests/service/export_torch.py" "$distill" "$exp" "$work/export" || fail "export in PyTorch"
  ;;
teacher)
  out=$work/teacher
  rm -rf "$out"
  start_teacher 15616
  kill -STOP "$teacher_pid"
  student_bg 15616 "$out"
  advance_to "$out" 10 || fail "no progress"
  kill -KILL "$teacher_pid"
  k=$(steps_done "$out")
  sleep 1.5
  [ "$(steps_done "$out")" -lt 40 ] || fail "the run ended before the teacher died"
  start_teacher 15616
  rc=0; wait "$sp" || rc=$?
  [ $rc = 0 ] || fail "student exit $rc after the teacher's restart"
  ok "teacher killed after step $k and restarted: the student finished"
  same_losses "$out" && ok "the reference losses" || fail "losses differ"
  ;;
second)
  out=$work/second
  rm -rf "$out"
  start_teacher 15643
  first_pid=$teacher_pid
  kill -STOP "$first_pid"
  # The student knows both endpoints from the start; the second has no teacher yet.
  "$distill" student --recipe "$recipe" --teachers "tcp://127.0.0.1:15643,tcp://127.0.0.1:15644" --out "$out" \
    --heartbeat-ms 100 --dead-after-ms 500 --quiet &
  sp=$!
  pids+=("$sp")
  advance_to "$out" 10 || fail "no progress with the first teacher alone"
  k=$(steps_done "$out")
  "$distill" teacher --synthetic 16,4 --block-size 4 --crops 2 --bind tcp://127.0.0.1:15644 \
    --heartbeat-ms 100 --dead-after-ms 1000 --quiet > "$work/second-teacher.out" &
  second_pid=$!
  pids+=("$second_pid")
  sleep 0.5
  kill -CONT "$first_pid"
  rc=0; wait "$sp" || rc=$?
  [ $rc = 0 ] || fail "student exit $rc"
  [ "$(steps_done "$out")" -eq 40 ] || fail "$(steps_done "$out") steps"
  kill -TERM "$second_pid"
  wait "$second_pid" || true
  served=$(sed -n 's/.*blocks_served=\([0-9]*\).*/\1/p' "$work/second-teacher.out")
  [ "${served:-0}" -gt 0 ] || fail "the second teacher served no block: $(cat "$work/second-teacher.out")"
  ok "second teacher started after step $k served $served blocks"
  same_losses "$out" && ok "the reference losses" || fail "losses differ"
  ;;
metrics)
  out=$work/metrics
  rm -rf "$out"
  sed 's/^  steps: 40/  steps: 100000/' "$recipe" > "$work/long.yaml"
  recipe=$work/long.yaml
  start_teacher 15619
  "$distill" student --recipe "$recipe" --teachers tcp://127.0.0.1:15619 --out "$out" --quiet \
    --metrics-port 15620 &
  sp=$!
  pids+=("$sp")
  wait_for at_least "$out" 5 || fail "no progress"
  kill -STOP "$teacher_pid"  # the student waits for targets while we scrape
  python3 - <<'PY' || { kill -CONT "$teacher_pid"; fail "scrape"; }
import re, sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:15620/metrics", timeout=5).read().decode()
step = int(float(re.search(r'^distill_student_step\{group="metrics",rank="0"\} (\S+)$', text, re.M).group(1)))
loss = float(re.search(r'^distill_student_loss\{group="metrics",rank="0",term="total"\} (\S+)$', text, re.M).group(1))
blocks = int(float(re.search(r'^distill_student_blocks_received_total\{.*\} (\S+)$', text, re.M).group(1)))
types = len(re.findall(r'^# TYPE ', text, re.M))
print(f"scraped: step {step}, loss {loss:.4f}, blocks received {blocks}, {types} metric families")
sys.exit(0 if step >= 5 and loss > 0 and blocks >= 2 * step and types >= 10 else 1)
PY
  kill -CONT "$teacher_pid"
  ok "the Prometheus endpoint answers during training"
  kill -TERM "$sp"
  rc=0; wait "$sp" || rc=$?
  [ $rc = 0 ] || fail "exit $rc after SIGTERM"
  ;;
mpi)
  out=$work/mpi
  rm -rf "$out"
  start_teacher 15621
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    timeout 100 mpirun -np 2 --oversubscribe "$distill" student --recipe "$recipe" --teachers tcp://127.0.0.1:15621 \
    --out "$out" --quiet || fail "mpirun"
  [ -f "$out/metrics-rank1.jsonl" ] || fail "rank 1 did not run"
  near_losses "$ref" "$out" || fail "losses differ"
  ok "2 ranks (MPI) = 1 rank with the same global batch, within 1e-4 relative"
  # A checkpoint written by one rank, resumed by two.
  out2=$work/mpi-resume
  rm -rf "$out2"
  mkdir -p "$out2"
  grep -m 36 '"loss"' "$ref/metrics.jsonl" > "$out2/metrics.jsonl"
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    timeout 100 mpirun -np 2 --oversubscribe "$distill" student --recipe "$recipe" --teachers tcp://127.0.0.1:15621 \
    --out "$out2" --quiet --resume "$ref/checkpoints/ckpt-0000000036.safetensors" || fail "mpirun resume"
  near_losses "$ref" "$out2" 36 || fail "losses differ after resuming with 2 ranks"
  ok "a 1-rank checkpoint resumed by 2 ranks: the same losses within 1e-4"
  ;;
group)
  out=$work/group
  rm -rf "$out"
  start_teacher 15631
  rank_bg 15631 15632 0 2 "$out/pod0"; r0=$sp
  rank_bg 15631 15632 1 2 "$out/pod1"; r1=$sp
  group_wait "$r0" "$r1" || { cat "$out"/*.err; fail "a rank failed"; }
  [ -f "$out/pod1/metrics-rank1.jsonl" ] || fail "rank 1 did not run"
  ! ls "$out/pod1/checkpoints" | grep -q ckpt- || fail "rank 1 wrote checkpoints"
  near_losses "$ref" "$out/pod0" || fail "losses differ"
  ok "2 ranks over TCP = 1 rank with the same global batch, within 1e-4 relative; checkpoints on rank 0's folder only"
  if [ -f "$work/mpi/metrics.jsonl" ]; then
    same_losses "$out/pod0" "$work/mpi" && ok "2 ranks over TCP = 2 ranks over MPI, every loss term bit for bit" \
      || fail "TCP and MPI groups differ"
  else
    echo "note: no MPI run in $work/mpi (Open MPI not installed): the bitwise comparison with MPI was not made"
  fi
  ;;
group-resume)
  out=$work/group-resume
  v0=$out/pod0 v1=$out/pod1
  start_teacher 15633
  for attempt in 1 2 3; do  # as for sigterm: only reaching mid-run is retried
    rm -rf "$out"
    kill -STOP "$teacher_pid"
    rank_bg 15633 15634 0 2 "$v0" --resume auto; r0=$sp
    rank_bg 15633 15634 1 2 "$v1" --resume auto; r1=$sp
    advance_to "$v0" 10 || fail "no progress"
    kill -TERM "$r1"  # rank 1 only: the stop decision is the group's
    kill -CONT "$teacher_pid"
    group_wait "$r0" "$r1" || { cat "$out"/*.err; fail "SIGTERM: a rank failed"; }
    k=$(steps_done "$v0")
    # Below 28, so that the one-rank run below (4 steps further, plus the
    # window) is still mid-run when it gets its SIGTERM.
    [ "$k" -lt 28 ] && break
    echo "note: attempt $attempt: the run got to step $k before SIGTERM reached it; again"
  done
  [ "$k" -lt 28 ] || fail "the run got too far before SIGTERM reached it, 3 times"
  [ -f "$v0/checkpoints/ckpt-$(printf %010d "$k").safetensors" ] || fail "no checkpoint at step $k on rank 0"
  grep -q '"event":"stop","step":'"$k" "$v1/metrics-rank1.jsonl" || fail "rank 1 did not stop at step $k"
  ok "2 ranks: SIGTERM to rank 1 stopped both at step $k, rank 0 checkpointed"
  # One rank (no group) from rank 0's folder, stopped again a few steps later.
  kill -STOP "$teacher_pid"
  "$distill" student --recipe "$recipe" --teachers tcp://127.0.0.1:15633 --out "$v0" --heartbeat-ms 100 \
    --dead-after-ms 500 --quiet --resume auto &
  sp=$!
  pids+=("$sp")
  advance_to "$v0" $((k + 4)) || fail "no progress with one rank"
  kill -TERM "$sp"
  kill -CONT "$teacher_pid"
  rc=0; wait "$sp" || rc=$?
  [ $rc = 0 ] || fail "one rank: exit $rc"
  k2=$(steps_done "$v0")
  grep -q '"event":"resume","step":'"$k" "$v0/metrics.jsonl" || fail "one rank did not resume at step $k"
  [ "$k2" -lt 40 ] || fail "one rank: the run ended before SIGTERM reached it"
  ok "1 rank resumed rank 0's checkpoint of the 2-rank group at step $k, stopped at step $k2"
  # Two ranks again; rank 1's own folder holds a stale checkpoint (step 36 of
  # the reference) that must play no part.
  mkdir -p "$v1/checkpoints"
  cp "$ref/checkpoints/ckpt-0000000036.safetensors" "$v1/checkpoints/"
  echo ckpt-0000000036.safetensors > "$v1/checkpoints/latest"
  rank_bg 15633 15634 0 2 "$v0" --resume auto; r0=$sp
  rank_bg 15633 15634 1 2 "$v1" --resume auto; r1=$sp
  group_wait "$r0" "$r1" || { cat "$out"/*.err; fail "2 ranks again: a rank failed"; }
  grep -q '"event":"resume","step":'"$k2" "$v1/metrics-rank1.jsonl" \
    || fail "rank 1 did not resume at rank 0's step $k2"
  ok "2 ranks resumed the 1-rank checkpoint at step $k2 (rank 1 from rank 0's bytes, its own stale checkpoint ignored)"
  near_losses "$ref" "$v0" && ok "2 -> 1 -> 2 ranks: every step has the reference losses within 1e-4" \
    || fail "losses differ"
  ;;
group-fault)
  out=$work/group-fault
  rm -rf "$out"
  sed 's/^  steps: 40/  steps: 100000/' "$recipe" > "$work/group-long.yaml"
  recipe=$work/group-long.yaml
  start_teacher 15635
  # A rank killed mid-run: the survivor names it and exits 1, quickly.
  for victim in 1 0; do
    g=$out/kill$victim
    rank_bg 15635 15636 0 2 "$g/pod0"; pid0=$sp
    rank_bg 15635 15636 1 2 "$g/pod1"; pid1=$sp
    wait_for at_least "$g/pod0" 5 || { cat "$g"/*.err; fail "no progress"; }
    if [ $victim = 1 ]; then kill -KILL "$pid1"; survivor=$pid0 s=0; else kill -KILL "$pid0"; survivor=$pid1 s=1; fi
    t0=$(date +%s.%N)
    rc=0; wait "$survivor" || rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    msg=$(cat "$g/pod$s.err")
    echo "rank $s: exit $rc after ${dt} s: $msg"
    [ $rc = 1 ] || fail "rank $s: exit $rc after rank $victim was killed"
    [ "$(echo "$dt < 15" | bc)" = 1 ] || fail "rank $s took $dt s to notice"
    echo "$msg" | grep -Eq "rank $victim \(.*\): (closed the connection|connection lost)" || fail "rank $s's message does not name rank $victim"
    ok "rank $victim killed: rank $s exits 1 naming it after $(printf %.1f "$dt") s"
  done
  # A rank that stops answering (SIGSTOP: alive, connection open): the other
  # gives up after --group-timeout-s instead of waiting forever.
  g=$out/stopped
  rank_bg 15635 15639 0 2 "$g/pod0" --group-timeout-s 3; pid0=$sp
  rank_bg 15635 15639 1 2 "$g/pod1" --group-timeout-s 3; pid1=$sp
  wait_for at_least "$g/pod0" 3 || { cat "$g"/*.err; fail "no progress"; }
  kill -STOP "$pid1"
  t0=$(date +%s.%N)
  rc=0; wait "$pid0" || rc=$?
  dt=$(echo "$(date +%s.%N) - $t0" | bc)
  kill -KILL "$pid1"
  cat "$g/pod0.err"
  [ $rc = 1 ] && [ "$(echo "$dt < 10" | bc)" = 1 ] && grep -q "rank 1 (.*): nothing received for 3 s" "$g/pod0.err" \
    || fail "a silent rank: exit $rc after $dt s"
  ok "rank 1 silent (SIGSTOP): rank 0 exits 1 after $(printf %.1f "$dt") s naming it"
  # Mismatched ranks are refused with a message (exit 2); rank 0 then gives up.
  sed 's/^  lr: 0.002/  lr: 0.003/' "$recipe" > "$work/group-other.yaml"
  g=$out/refused
  rank_bg 15635 15637 0 2 "$g/pod0" --group-timeout-s 4; pid0=$sp
  recipe=$work/group-other.yaml rank_bg 15635 15637 1 2 "$g/pod1"; pid1=$sp
  rc=0; wait "$pid1" || rc=$?
  cat "$g/pod1.err"
  [ $rc = 2 ] && grep -q "refused this rank: rank 1 trains another recipe than rank 0" "$g/pod1.err" \
    || fail "another recipe: exit $rc"
  ok "a rank with another recipe: refused, exit 2"
  recipe=$work/group-long.yaml
  rank_bg 15635 15637 1 3 "$g/pod1b"; pid1=$sp
  rc=0; wait "$pid1" || rc=$?
  cat "$g/pod1b.err"
  [ $rc = 2 ] && grep -q "rank 1 says the group has 3 ranks, rank 0 says 2" "$g/pod1b.err" || fail "world: exit $rc"
  ok "a rank with another --world: refused, exit 2"
  rc=0; wait "$pid0" || rc=$?
  cat "$g/pod0.err"
  [ $rc = 1 ] && grep -q "1 of 2 ranks joined rank 0 on port 15637 within 4 s (missing rank 1; some were refused" \
    "$g/pod0.err" || fail "rank 0 alone: exit $rc"
  ok "rank 0 without its group: exit 1 after --group-timeout-s, naming the missing rank"
  t0=$(date +%s)
  rank_bg 15635 15638 1 2 "$g/alone" --group-timeout-s 2; pid1=$sp
  rc=0; wait "$pid1" || rc=$?
  cat "$g/alone.err"
  [ $rc = 1 ] && [ $(( $(date +%s) - t0 )) -le 6 ] && grep -q "could not join rank 0 (127.0.0.1:15638) within 2 s" \
    "$g/alone.err" || fail "no rank 0: exit $rc"
  ok "nobody at rank 0's address: exit 1 after 2 s with the reason"
  # SIGTERM while the group forms (kubectl delete before every pod is up):
  # a prompt clean exit, not a wait for --group-timeout-s.
  for r in 0 1; do
    rank_bg 15635 15642 $r 2 "$g/term$r" --group-timeout-s 60; p=$sp
    sleep 1
    t0=$(date +%s.%N)
    kill -TERM "$p"
    rc=0; wait "$p" || rc=$?
    dt=$(echo "$(date +%s.%N) - $t0" | bc)
    cat "$g/term$r.err"
    [ $rc = 0 ] && [ "$(echo "$dt < 3" | bc)" = 1 ] && grep -q "stopped by a signal" "$g/term$r.err" \
      || fail "rank $r: SIGTERM while joining: exit $rc after $dt s"
    ok "rank $r: SIGTERM while the group forms: exit 0 after $(printf %.1f "$dt") s"
  done
  ;;
minutes)
  out=$work/minutes
  rm -rf "$out"
  sed -e 's/^  every_steps: 4/  every_steps: 0\n  every_minutes: 0.0002/' "$recipe" > "$work/minutes.yaml"
  recipe=$work/minutes.yaml
  start_teacher 15622
  student 15622 "$out" --quiet || fail "exit $?"
  n=$(grep -c '"event":"checkpoint"' "$out/metrics.jsonl")
  kept=$(ls "$out/checkpoints" | grep -c '^ckpt-')
  exports=$(ls "$out/checkpoints" | grep -c '^student-ema-[0-9]*\.safetensors$')
  [ "$n" -ge 3 ] && [ "$kept" = 2 ] && [ "$exports" = 2 ] && grep -q ckpt-0000000040 "$out/checkpoints/latest" \
    && ok "$n checkpoints by time (steps $(grep -o '"event":"checkpoint","step":[0-9]*' "$out/metrics.jsonl" | grep -o '[0-9]*$' | tr '\n' ' ')), 2 kept with their exports, latest = step 40" \
    || fail "$n checkpoints, $kept kept, $exports exports"
  ;;
prototypes)
  recipe=$src/tests/service/prototypes.yaml
  ref=$work/prototypes-ref
  out=$work/prototypes
  rm -rf "$ref" "$out"
  start_teacher 15617
  student 15617 "$ref" --quiet || fail "prototypes run"
  python3 - "$ref/metrics.jsonl" <<'PY' || fail "losses"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
ok = len(rows) == 40 and all(math.isfinite(r["loss"]) and r["dino"] > 0 and r["ibot"] > 0 and r["koleo"] != 0 for r in rows)
print(f"{len(rows)} steps, DINO {rows[0]['dino']:.4f} -> {rows[-1]['dino']:.4f}, iBOT {rows[0]['ibot']:.4f} -> {rows[-1]['ibot']:.4f}, "
      f"teacher temp {rows[0]['teacher_temp']:.3f} -> {rows[-1]['teacher_temp']:.3f}")
sys.exit(0 if ok and rows[0]["teacher_temp"] < rows[-1]["teacher_temp"] else 1)
PY
  ok "prototypes: 40 steps, DINO, iBOT and KoLeo finite and non-zero, teacher temperature warmed up"
  kill -STOP "$teacher_pid"
  student_bg 15617 "$out"
  advance_to "$out" 10 || fail "no progress"
  kill -TERM "$sp"
  rc=0; wait "$sp" || rc=$?
  kill -CONT "$teacher_pid"
  [ $rc = 0 ] || fail "SIGTERM: exit $rc"
  student 15617 "$out" --quiet --resume auto || fail "resume"
  same_losses "$out" && ok "prototypes: resumed after SIGTERM at step $(grep -o '"event":"stop","step":[0-9]*' "$out/metrics.jsonl" | grep -o '[0-9]*$'), the same losses bitwise" || fail "losses differ"
  ;;
hires)
  recipe=$src/tests/service/hires.yaml
  ref=$work/hires-ref
  rm -rf "$ref" "$work"/hires-from-*
  "$grid_teacher" tcp://127.0.0.1:15618 16 4 2 &
  pids+=("$!")
  student 15618 "$ref" --quiet || fail "hires run"
  grep -q '"event":"hires","step":8' "$ref/metrics.jsonl" || fail "no switch at step 8"
  python3 - "$ref/metrics.jsonl" "$ref/checkpoints/student-ema-0000000012.safetensors" "$src/tools" <<'PY' || fail "hires checks"
import json, sys
sys.path.insert(0, sys.argv[3])
import st_io
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
res = [r["resolution"] for r in rows]
t, _ = st_io.read(sys.argv[2])
pos = t["pos_embed"][1]
print(f"resolutions by step: {res}; exported pos_embed {pos}")
sys.exit(0 if res == [28] * 8 + [42] * 4 and pos == [1, 10, 32] else 1)
PY
  ok "steps 0-7 at 28 px, 8-11 at 42 px; the exported EMA has a 3x3 position grid"
  # The phase's schedules as the recipe sets them (lr warmup 0 -> 0.004 over
  # 2 steps, then a cosine to 5e-4; momentum cosine 0.9 -> 0.95; wd 0.1 and
  # teacher temperature 0.05 constant), and the export event's EMA share
  # equal to 1 - the product of the momenta the rows logged.
  python3 - "$ref/metrics.jsonl" <<'PY' || fail "hires schedules"
import json, math, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
rows = {r["step"]: r for r in lines if "loss" in r}
export = [r for r in lines if r.get("event") == "export"]
cos = lambda a, b, i, n: b + 0.5 * (a - b) * (1 + math.cos(math.pi * i / n))
want = {8: (0.0, 0.9), 9: (0.004, cos(0.9, 0.95, 1, 4)), 10: (0.004, cos(0.9, 0.95, 2, 4)),
        11: (cos(0.004, 0.0005, 1, 2), cos(0.9, 0.95, 3, 4))}
got = {s: (rows[s]["lr"], rows[s]["momentum"]) for s in want}
close = lambda a, b: abs(a - b) <= 1e-6 * max(abs(b), 1e-9)
ok = all(close(got[s][0], want[s][0]) and close(got[s][1], want[s][1]) and close(rows[s]["wd"], 0.1) and
         close(rows[s]["teacher_temp"], 0.05) for s in want)
share = 1 - math.prod(rows[s]["momentum"] for s in want)
print(f"hires lr/momentum by step: {got}; export: {export}; 1 - prod(momentum) = {share:.9g}")
ok = ok and len(export) == 1 and export[0]["step"] == 12 and close(export[0]["ema_hires_share"], share)
sys.exit(0 if ok else 1)
PY
  ok "the phase's own lr, momentum, wd and teacher temperature; the export's EMA share = 1 - prod(momentum)"
  for c in 8 10; do
    out=$work/hires-from-$c
    mkdir -p "$out"
    grep -m "$c" '"loss"' "$ref/metrics.jsonl" > "$out/metrics.jsonl"  # not head: SIGPIPE under pipefail
    student 15618 "$out" --quiet --resume "$ref/checkpoints/ckpt-$(printf %010d $c).safetensors" || fail "resume from $c"
    same_losses "$out" && ok "resumed from the checkpoint at step $c: the same losses bitwise" || fail "losses differ from step $c"
  done
  ;;
*) fail "unknown case $case_name" ;;
esac
