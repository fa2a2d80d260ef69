#!/usr/bin/env bash
# Sharing one teacher computation among student families that run at
# different speeds (docs/operations.md, "Sharing"). One real teacher (the
# demo teacher, `distill teacher --recipe`) with a 1 MiB block cache (about 15
# blocks: far smaller than the drift), three families whose speeds differ
# about 1:3:6 (transport_student ranks that sleep after each block: slow 1
# rank, medium 2 ranks, fast 1 rank), 160 blocks each. One case per call:
#   sharing_test.sh CASE DISTILL TRANSPORT_STUDENT SOURCE_DIR WORK_DIR
# reference  one family alone: the digests every other case must reproduce
# pace       computed == unique == 160, nothing computed again; every family
#            gets every block exactly once, in order, bit-identical to the
#            reference; the fast families were held (HOLD), none timed out
# spill      the same with a spill store and no pacing
# free       computed > unique == 160 and computed == unique + computed_again
# resume     pace; the fast family SIGKILLed mid-run and resumed from an earlier
#            cursor (its "checkpoint"): the others finish; only blocks of the
#            rewind are computed again, each counted as a rewind
# refuse     `distill student` whose crop scale differs from the teacher's
#            recipe: refused at HELLO with one line naming crops.global_scale
set -euo pipefail
case_name=$1 distill=$2 tstudent=$3 src=$4 work=$5
blocks=160
dir=$work/$case_name
ref=$work/reference
rm -rf "$dir"
mkdir -p "$dir"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
passed=0
failed=0
check() {  # check CONDITION-STATUS MESSAGE
  if [ "$1" = 0 ]; then echo "ok   $2"; passed=$((passed + 1)); else echo "FAIL $2"; failed=$((failed + 1)); fi
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
}

port=$((15800 + $(printf '%s' "$case_name" | cksum | cut -d' ' -f1) % 150))
endpoint=tcp://127.0.0.1:$port

write_recipe() {  # write_recipe FILE GLOBAL_SCALE
  cat >"$1" <<YAML
data:
  dataset: idx:/usr/share/datasets/fashion-mnist,split=test
  seed: 3
  block_size: 4
  loader_threads: 1
crops:
  global_count: 2
  global_size: 56
  global_scale: [$2, 1.0]
  local_count: 2
  local_size: 28
teacher:
  weights: $src/models/demo-teacher/backbone.safetensors
  heads: $src/models/demo-teacher/heads.safetensors
  target: features
  batch: 8
  workers: 1
  cache_mb: 1
  codec: f32
YAML
}
recipe=$dir/teacher.yaml
write_recipe "$recipe" 0.32

start_teacher() {  # start_teacher [flags...]
  "$distill" teacher --recipe "$recipe" --listen "$endpoint" --heartbeat-ms 100 --dead-after-ms 5000 \
    --status-every-s 1 --metrics-file "$dir/teacher.jsonl" "$@" >"$dir/teacher.out" 2>"$dir/teacher.log" &
  teacher_pid=$!
  pids+=("$teacher_pid")
}
stop_teacher() {
  kill -TERM "$teacher_pid" 2>/dev/null || true
  wait "$teacher_pid" 2>/dev/null || true
}
metric() { sed -n "s/.*teacher_metrics.* $1=\([0-9]*\).*/\1/p" "$dir/teacher.out" | tail -1; }

rank() {  # rank FAMILY RANK WORLD SECONDS_PER_BLOCK [flags...]: in the background, pid in $rp
  local fam=$1 r=$2 w=$3 spb=$4
  shift 4
  "$tstudent" --connect "$endpoint" --group "$fam" --rank "$r" --world "$w" --blocks "$blocks" --resolution 56 \
    --recipe "$recipe" --verify none --window 4 --seconds-per-block "$spb" --digests "$dir/$fam.$r.digests" \
    --timeout 110 --quiet "$@" >>"$dir/$fam.$r.out" 2>&1 &
  rp=$!
  pids+=("$rp")
}

# Every block of the family exactly once, equal to the reference, and each
# rank's blocks in increasing order.
check_family() {  # check_family FAMILY WORLD
  local fam=$1 w=$2 r ordered=0
  for ((r = 0; r < w; r++)); do
    awk 'NR > 1 && $1 <= last { bad = 1 } { last = $1 } END { exit bad }' "$dir/$fam.$r.digests" || ordered=1
  done
  check $ordered "$fam: each rank's blocks arrived in increasing order"
  cat "$dir/$fam".*.digests | sort -n >"$dir/$fam.all"
  cmp -s "$dir/$fam.all" "$ref/solo.all"
  check $? "$fam: $(wc -l <"$dir/$fam.all") blocks, each once, bit-identical to the teacher serving one family alone ($blocks)"
}

run_families() {  # three families 1:3:6; waits for all
  local all=()
  rank slow 0 1 0.1; all+=("$rp")
  rank medium 0 2 0.066; all+=("$rp")
  rank medium 1 2 0.066; all+=("$rp")
  rank fast 0 1 0.0166; all+=("$rp")
  local rc=0
  for p in "${all[@]}"; do wait "$p" || rc=1; done
  check $rc "all four ranks of the three families finished (exit 0)"
}

families_report() {
  tail -1 "$dir/teacher.jsonl" | tr '{' '\n' | sed -n 's/.*"name":"\([a-z]*\)".*"paced_seconds":\([0-9.]*\).*"blocks_per_second":\([0-9.]*\).*/  \1 paced_seconds=\2 blocks_per_second=\3/p'
}

case $case_name in
  reference)
    start_teacher
    rank solo 0 1 0
    wait "$rp"
    check $? "the family alone received its $blocks blocks"
    stop_teacher
    sort -n "$dir/solo.0.digests" >"$dir/solo.all"
    [ "$(wc -l <"$dir/solo.all")" = "$blocks" ]
    check $? "reference: $blocks digests"
    ;;
  pace | spill | free)
    flags=(--lead-policy "$case_name")
    [ "$case_name" = spill ] && flags+=(--spill "$dir/spill" --spill-mb 64)
    start_teacher "${flags[@]}"
    run_families
    sleep 0.5
    stop_teacher
    cat "$dir/teacher.out"
    families_report
    for f in slow:1 medium:2 fast:1; do check_family "${f%:*}" "${f#*:}"; done
    computed=$(metric computed) unique=$(metric computed_unique) again=$(metric computed_again)
    held=$(metric held) spilled=$(metric spilled)
    timeouts=$(cat "$dir"/*.out | sed -n 's/.*student_metrics.* timeouts=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
    [ "$unique" = "$blocks" ]
    check $? "$unique unique blocks computed (the stream has $blocks)"
    case $case_name in
      pace)
        [ "$computed" = "$unique" ] && [ "$again" = 0 ]
        check $? "pace: computed $computed == unique $unique, computed again $again"
        [ "$held" -gt 0 ]
        check $? "pace: the teacher held $held requests of families too far ahead"
        held_s=$(sed -n 's/.*student_result group=fast.* held_seconds=\([0-9.]*\).*/\1/p' "$dir/fast.0.out")
        awk -v h="$held_s" 'BEGIN { exit !(h > 0) }'
        check $? "pace: the fast family waited ${held_s} s for held blocks"
        ;;
      spill)
        [ "$computed" = "$unique" ] && [ "$again" = 0 ]
        check $? "spill: computed $computed == unique $unique, computed again $again"
        [ "$held" = 0 ] && [ "$spilled" -gt 0 ]
        check $? "spill: nobody held ($held), $spilled blocks spilled and served from disk ($(metric spill_hits) hits)"
        ;;
      free)
        [ "$computed" -gt "$unique" ] && [ "$computed" = $((unique + again)) ] && [ "$again" = "$(metric again_evicted)" ]
        check $? "free: computed $computed > unique $unique, and computed == unique + computed_again ($again, all evicted)"
        ;;
    esac
    [ "$timeouts" = 0 ]
    check $? "no student request timed out ($timeouts)"
    ;;
  resume)
    start_teacher
    rank slow 0 1 0.1; slow_pid=$rp
    rank medium 0 2 0.066; m0=$rp
    rank medium 1 2 0.066; m1=$rp
    rank fast 0 1 0.0166; fast_pid=$rp
    for _ in $(seq 600); do
      [ "$(wc -l <"$dir/fast.0.digests" 2>/dev/null || echo 0)" -ge 80 ] && break
      sleep 0.05
    done
    kill -9 "$fast_pid"
    wait "$fast_pid" 2>/dev/null || true
    killed_at=$(wc -l <"$dir/fast.0.digests")
    [ "$killed_at" -ge 80 ] && [ "$killed_at" -lt "$blocks" ]
    check $? "the fast family SIGKILLed mid-run, after $killed_at of $blocks blocks"
    mv "$dir/fast.0.digests" "$dir/fast.before"
    restart=40
    rank fast 0 1 0.0166 --start "$restart"; fast_pid=$rp
    rc=0
    for p in "$slow_pid" "$m0" "$m1" "$fast_pid"; do wait "$p" || rc=1; done
    check $rc "every rank finished, the resumed one included"
    sleep 0.5
    stop_teacher
    cat "$dir/teacher.out"
    for f in slow:1 medium:2; do check_family "${f%:*}" "${f#*:}"; done
    # The resumed family: blocks restart.. once each after the resume, equal to the reference.
    sort -n "$dir/fast.0.digests" >"$dir/fast.after"
    awk -v s="$restart" '$1 >= s' "$ref/solo.all" | cmp -s - "$dir/fast.after"
    check $? "fast, resumed at block $restart: $(wc -l <"$dir/fast.after") blocks, each once, bit-identical to the reference"
    computed=$(metric computed) unique=$(metric computed_unique) again=$(metric computed_again) rewind=$(metric again_rewind)
    [ "$unique" = "$blocks" ] && [ "$computed" = $((unique + again)) ] && [ "$again" = "$rewind" ] &&
      [ "$again" -le $((killed_at - restart)) ]
    check $? "computed $computed = unique $unique + again $again; all again are rewinds ($rewind) within the rewind of $((killed_at - restart)) blocks"
    ;;
  refuse)
    start_teacher
    other=$dir/student.yaml
    write_recipe "$other" 0.4
    cat >>"$other" <<YAML
model:
  patch: 14
  dim: 32
  depth: 1
  heads: 2
  ffn_hidden: 64
train:
  targets: features
  teacher_dim: 128
  batch: 4
  steps: 2
YAML
    set +e
    timeout 60 "$distill" student --recipe "$other" --teachers "$endpoint" --out "$dir/student" --quiet \
      >"$dir/student.out" 2>"$dir/student.err"
    status=$?
    set -e
    stop_teacher
    cat "$dir/student.err"
    [ "$status" = 2 ]
    check $? "the student with another crop scale stopped with exit status 2 (bad input): $status"
    [ "$(grep -c . "$dir/student.err")" = 1 ] && grep -q "crops.global_scale=0.4" "$dir/student.err" &&
      grep -q "teacher: 0.32" "$dir/student.err"
    check $? "refused at HELLO with one line naming crops.global_scale, the student's and the teacher's values"
    [ "$(metric rejected)" -ge 1 ] && [ "$(metric computed)" = 0 ]
    check $? "the teacher rejected it ($(metric rejected) HELLOs) and computed nothing"
    ;;
  *) echo "sharing_test.sh: unknown case $case_name" >&2; exit 2 ;;
esac
finish
