#!/usr/bin/env bash
# scripts/demo-report on fabricated k-NN figures and loss curves (no training,
# no processes): summary.json's fields, the bar check, report.png, and exit 2
# on bad input.   demo_report_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=${1:?source dir} work=${2:?work dir}/demo_report
rm -rf "$work"; mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }
for name in features prototypes; do
  for step in 1 2 3 4 5; do printf '%s\t%s\n' "$step" "$((10 - step))"; done > "$work/$name.loss.tsv"
done
printf '100\t61.5\n200\t70.25\n' > "$work/features.knn.tsv"  # each export's k-NN (prototypes: none)
set +e
DEMO_COMPUTED=2040 DEMO_UNIQUE=2040 DEMO_COMMIT=abc1234 DEMO_KNN_TRAIN_N=60000 DEMO_KNN_TEST_N=10000 DEMO_WALL_S=400 \
  /usr/bin/python3 "$src/scripts/demo-report" "$work" 77.00 "student features 75.00 60.00" \
  "student prototypes 73.50 58.00" "scratch prototypes-scratch 70.00 57.00" > "$work/stdout" 2> "$work/stderr"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "prototypes missed the bar" "$work/stderr" || fail "a missed bar: exit $rc, $(cat "$work/stderr")"
/usr/bin/python3 - "$work/summary.json" <<'PY' || fail "summary.json"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["commit"] == "abc1234" and s["cpu"] and s["wall_s"] == 400 and s["date"].endswith("Z"), s
assert s["knn"]["train_images"] == 60000 and s["knn"]["test_images"] == 10000, s["knn"]
assert s["teacher"] == {"knn": 77.0, "blocks_computed": 2040, "blocks_unique": 2040}, s["teacher"]
bars = {m["name"]: m["meets_bar"] for m in s["students"]}
# features: 15 over its init, 2 below the teacher; prototypes: 3.5 below.
assert bars == {"features": True, "prototypes": False}, bars
assert [m["knn"] for m in s["from_scratch"]] == [70.0] and "meets_bar" not in s["from_scratch"][0], s["from_scratch"]
curves = {m["name"]: m["exports_knn"] for m in s["students"]}
assert curves == {"features": [{"step": 100, "knn": 61.5}, {"step": 200, "knn": 70.25}], "prototypes": []}, curves
PY
DEMO_COMPUTED=2040 DEMO_UNIQUE=2040 DEMO_COMMIT=abc1234 DEMO_KNN_TRAIN_N=60000 DEMO_KNN_TEST_N=10000 DEMO_WALL_S=400 \
  /usr/bin/python3 "$src/scripts/demo-report" "$work" 77.00 "student features 75.00 60.00" > /dev/null ||
  fail "every student meets the bar: exit status not 0"
grep -q "student prototypes: +15.50 over its initialization, 3.50 below the teacher: misses the bar" "$work/stdout" ||
  fail "the bar verdict: $(cat "$work/stdout")"
grep -q "distilled 73.50, from scratch 70.00 (+3.50 for distillation)" "$work/stdout" || fail "the comparison line"
[ "$(head -c 8 "$work/report.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "report.png is not a PNG"
set +e
err=$(/usr/bin/python3 "$src/scripts/demo-report" "$work" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "no arguments: exit $rc, '$err'"
set +e
err=$("$src/scripts/demo" --bogus 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] || fail "scripts/demo --bogus: exit $rc, '$err'"
echo "ok: summary.json (commit, cpu, date, wall time, 60000/10000, teacher blocks, each export's k-NN), the bar" \
  "(met: exit 0; missed: exit 1 naming the student)," \
  "the from-scratch line, report.png is a PNG, exit 2 with one line on bad arguments (demo-report, scripts/demo)"
