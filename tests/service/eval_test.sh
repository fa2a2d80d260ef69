#!/usr/bin/env bash
# The catalogue of exports (student/export_catalog.h) end to end, against
# `distill teacher --synthetic` and tests/service/eval.yaml (every export
# evaluated: k-NN, k = 20, 500 / 200 Fashion-MNIST images at 28 px). One case per call:
#   eval_test.sh CASE DISTILL SOURCE_DIR WORK_DIR
# index      a whole run: index.json's entries are the folder's exports (sha256
#            and size of each file), its k-NN values equal `distill knn` run by
#            hand on the same files, and retention kept the best export although
#            it is not among the last checkpoint.keep (2), beside the final one
# truncated  index.json cut in half and one record deleted: the next start
#            rebuilds both (the export re-evaluated), and the index equals the
#            one before (but for that evaluation's wall time)
# kill       the evaluation process killed with SIGKILL: training goes on, the
#            evaluation is tried again and succeeds, the index stays valid, and
#            the Prometheus endpoint serves distill_eval_knn_top1 for the family
# bad        an eval dataset that does not exist, or has no labels: exit 2
#            with one line when the run starts, nothing trained
set -euo pipefail
case_name=$1 distill=$2 src=$3 work=$4
recipe=$src/tests/service/eval.yaml
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
fail() { echo "FAIL $*"; exit 1; }
ok() { echo "ok   $*"; }

start_teacher() {  # PORT
  "$distill" teacher --synthetic 16,4 --block-size 4 --crops 2 --bind "tcp://127.0.0.1:$1" --quiet >/dev/null 2>&1 &
  pids+=("$!")
}

# check_index DIR: index.json parses, names exactly the folder's exports, and
# each entry's sha256 and size are the file's.
check_index() {
  python3 - "$1" <<'PY' || fail "index.json does not match the files in $1"
import hashlib, json, os, re, sys
d = sys.argv[1]
idx = json.load(open(os.path.join(d, "index.json")))
files = sorted(f for f in os.listdir(d) if re.fullmatch(r"student-ema-\d+\.safetensors", f))
named = [e["file"] for e in idx["exports"]]
assert named == files, f"index names {named}, the folder holds {files}"
for e in idx["exports"]:
    data = open(os.path.join(d, e["file"]), "rb").read()
    assert hashlib.sha256(data).hexdigest() == e["sha256"], f"{e['file']}: sha256 differs"
    assert len(data) == e["size"], f"{e['file']}: size differs"
print(f"ok   index.json: {len(files)} exports, each entry's sha256 and size equal the file's")
PY
}

# fresh_run NAME PORT: a whole run of the recipe in WORK/NAME against a new
# teacher; sets out and dir (its checkpoint folder).
fresh_run() {
  out=$work/$1
  rm -rf "$out"
  start_teacher "$2"
  run_student "$2" "$out" "$recipe" || fail "the student failed"
  dir=$out/checkpoints
}

run_student() {  # PORT OUT RECIPE [flags]
  local port=$1 out=$2 rcp=$3
  shift 3
  "$distill" student --recipe "$rcp" --teachers "tcp://127.0.0.1:$port" --out "$out" --quiet "$@"
}

case $case_name in
index)
  fresh_run eval-index 47921
  check_index "$dir"
  # Every evaluated export still in the folder: its k-NN by hand.
  python3 - "$dir/index.json" > "$work/eval-index.todo" <<'PY'
import json, sys
for e in json.load(open(sys.argv[1]))["exports"]:
    if e["evaluation"] and e["evaluation"]["status"] == "done":
        print(e["file"], "%.2f" % e["evaluation"]["knn"]["top1"])
PY
  n=0
  while read -r file want; do
    got=$("$distill" knn --weights "$dir/$file" --train idx:/usr/share/datasets/fashion-mnist,split=train \
      --test idx:/usr/share/datasets/fashion-mnist,split=test --limit-train 500 --limit-test 200 --size 28 --k 20 |
      sed -n 's/^knn k=20 top1=\([0-9.]*\).*/\1/p')
    [ "$got" = "$want" ] || fail "$file: the index says k-NN $want, distill knn by hand $got"
    n=$((n + 1))
  done < "$work/eval-index.todo"
  [ "$n" -ge 3 ] || fail "only $n evaluated exports in the index"
  ok "k-NN of the $n evaluated exports in the index equals distill knn run by hand on the same files"
  python3 - "$out/metrics.jsonl" "$dir" <<'PY' || fail "retention"
import json, os, sys
evals = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("event") == "eval" and r["status"] == "done":
        evals[r["step"]] = r["knn_top1"]
idx = json.load(open(os.path.join(sys.argv[2], "index.json")))
steps = [e["step"] for e in idx["exports"]]
best = max(evals, key=lambda s: (evals[s], s))
print("k-NN by step:", " ".join(f"{s}:{evals[s]:.1f}" for s in sorted(evals)))
assert len(evals) == 10, f"{len(evals)} evaluations, 10 exports"
assert best in steps, f"the best export (step {best}) was removed"
assert idx["best"] == f"student-ema-{best:010d}.safetensors", f"index best {idx['best']}"
link = os.readlink(os.path.join(sys.argv[2], "student-ema-best.safetensors"))
assert link == idx["best"], f"best link -> {link}"
assert best not in sorted(steps)[-2:], f"the best export (step {best}) is among the last 2: the case is not exercised"
assert steps[-1] == 40 and idx["exports"][-1]["final"], "the final export is not kept"
assert len(steps) == 3, f"kept {steps}: the last 2 and the best"
print(f"ok   retention: kept steps {steps}: the last 2 and the best (step {best}, k-NN {evals[best]:.2f}), "
      f"which is not among the last 2; best link and index agree")
PY
  ;;
truncated)
  fresh_run eval-truncated 47922
  cp "$dir/index.json" "$work/eval-truncated.before"
  size=$(stat -c %s "$dir/index.json")
  truncate -s $((size / 2)) "$dir/index.json"
  best=$(readlink "$dir/student-ema-best.safetensors")
  rm "$dir/${best%.safetensors}.record"
  run_student 47922 "$out" "$recipe" --resume auto || fail "the restarted student failed"
  grep -q '"event":"index"' "$out/metrics.jsonl" || fail "no index event: the rebuild was not reported"
  rstep=$((10#${best:12:10}))
  [ "$(grep -c "\"event\":\"eval\",\"step\":$rstep,\"status\":\"done\"" "$out/metrics.jsonl")" = 2 ] ||
    fail "the export whose record was deleted (step $rstep) was not evaluated again"
  check_index "$dir"
  # The same index, but for the re-evaluated export's wall time.
  python3 - "$work/eval-truncated.before" "$dir/index.json" "$best" <<'PY' || fail "the rebuilt index differs from the one before"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for e in a["exports"] + b["exports"]:
    if e["file"] == sys.argv[3]:
        e["evaluation"].pop("seconds")
assert a == b, f"before: {a}\nafter: {b}"
PY
  ok "a truncated index.json and a deleted record ($best) rebuilt at the next start: the same index (the export re-evaluated: the same k-NN)"
  ;;
kill)
  out=$work/eval-kill
  rm -rf "$out"
  # The whole training set for k-NN, every fifth export: each evaluation
  # lasts long enough to be killed while it runs.
  sed -e 's/limit_train: 500/limit_train: 20000/' -e 's/knn_k: 20/knn_k: 20\n  every_exports: 5/' "$recipe" > "$work/eval-kill.yaml"
  start_teacher 47923
  port=$((47930 + RANDOM % 50))
  run_student 47923 "$out" "$work/eval-kill.yaml" --metrics-port "$port" &
  sp=$!
  pids+=("$sp")
  for _ in $(seq 600); do grep -q '"event":"eval_start"' "$out/metrics.jsonl" 2>/dev/null && break; sleep 0.05; done
  line=$(grep '"event":"eval_start"' "$out/metrics.jsonl" | head -1)
  [ -n "$line" ] || fail "no evaluation started"
  epid=$(echo "$line" | sed 's/.*"pid":\([0-9]*\).*/\1/')
  estep=$(echo "$line" | sed 's/.*"step":\([0-9]*\).*/\1/')
  kill -9 "$epid" || fail "the evaluation (pid $epid) was gone before it could be killed"
  ok "killed the evaluation of step $estep (pid $epid) with SIGKILL"
  metrics=""
  for _ in $(seq 1200); do
    if grep -q '"event":"eval","step":[0-9]*,"status":"done"' "$out/metrics.jsonl"; then
      metrics=$(curl -s "http://127.0.0.1:$port/metrics" || true)
      [ -n "$metrics" ] && break
    fi
    kill -0 "$sp" 2>/dev/null || break
    sleep 0.05
  done
  wait "$sp" || fail "the student failed after its evaluation was killed"
  grep -q "\"event\":\"eval\",\"step\":$estep,\"status\":\"failed\",\"reason\":\"distill knn: killed by signal 9\"" \
    "$out/metrics.jsonl" || fail "the killed evaluation was not reported as killed"
  grep -q "\"event\":\"eval\",\"step\":$estep,\"status\":\"done\"" "$out/metrics.jsonl" ||
    fail "the killed evaluation was not tried again"
  steps=$(grep -c '"loss"' "$out/metrics.jsonl")
  [ "$steps" = 40 ] || fail "training logged $steps steps, not 40"
  ok "training went on (40 steps); the evaluation of step $estep failed (signal 9), was tried again and succeeded"
  check_index "$out/checkpoints"
  echo "$metrics" | grep -q "^distill_eval_knn_top1{family=\"eval-kill\",k=\"20\"} [0-9.]*$" ||
    { echo "$metrics" | tail -5; fail "no distill_eval_knn_top1 on the Prometheus endpoint"; }
  ok "Prometheus: $(echo "$metrics" | grep '^distill_eval_knn_top1')"
  ;;
bad)
  for spec in "idx:/nonexistent/fashion,split=test" "folder:$src/tests/data/broken"; do
    sed -e "s|^  test: .*|  test: $spec|" "$recipe" > "$work/eval-bad.yaml"
    rm -rf "$work/eval-bad"
    set +e
    msg=$(run_student 47924 "$work/eval-bad" "$work/eval-bad.yaml" 2>&1)
    rc=$?
    set -e
    [ "$rc" = 2 ] && [ "$(printf '%s\n' "$msg" | wc -l)" = 1 ] && echo "$msg" | grep -q "eval.test" ||
      fail "eval.test $spec: exit $rc, '$msg'"
    ! grep -q '"loss"' "$work/eval-bad/metrics.jsonl" 2>/dev/null || fail "eval.test $spec: steps trained"
    ok "eval.test $spec refused at start: $msg"
  done
  ;;
*) fail "unknown case $case_name" ;;
esac
