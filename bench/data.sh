#!/usr/bin/env bash
# bench/run data: decoded and augmented samples/s (DINOv2 crops: 2 x 224 +
# 8 x 98) of distill's data pipeline against DINOv2's PIL/torchvision one, on
# the same JPEGs (python3-skimage's photographs), with the same 2 threads
# (distill: 2 loader threads; torchvision: 2 DataLoader workers). The repeats
# alternate between the two, so a load change on a shared machine hits both;
# each side's figure is the median of its repeats. Needs the release build
# (scripts/build). Last line: ratio=R (distill / torchvision).
#   bench/data.sh [SAMPLES] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-160}
repeats=${2:-3}
threads=2
[ -x build/bin/bench_data ] || { echo "bench/data.sh: build/bin/bench_data missing; run scripts/build" >&2; exit 2; }
images=build/bench-data/images
[ -n "$(ls "$images"/*.jpg 2>/dev/null)" ] || /usr/bin/python3 bench/data/prepare_images.py "$images"
echo "images: $(ls "$images"/*.jpg | wc -l) JPEGs in $images; samples per repeat: $samples; repeats: $repeats; threads: $threads"
c_rates=() py_rates=()
for r in $(seq "$repeats"); do
  c_line=$(build/bin/bench_data "$images" "$threads" "$samples" 1 | awk '/^distill median:/ {print $3}')
  py_line=$(/usr/bin/python3 bench/data/bench_torchvision.py "$images" "$threads" "$samples" 1 | awk '/^torchvision median:/ {print $3}')
  echo "repeat $r: distill $c_line samples/s, torchvision $py_line samples/s"
  c_rates+=("$c_line") py_rates+=("$py_line")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
c_med=$(median "${c_rates[@]}")
py_med=$(median "${py_rates[@]}")
echo "distill median: $c_med samples/s"
echo "torchvision median: $py_med samples/s"
awk -v c="$c_med" -v p="$py_med" 'BEGIN { printf "ratio=%.2f\n", c / p }'
