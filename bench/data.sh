#!/usr/bin/env bash
# bench/run data: decoded and augmented samples/s (DINOv2 crops: 2 x 224 +
# 8 x 98) of distill's data pipeline against DINOv2's PIL/torchvision one, on
# the same JPEGs (python3-skimage's photographs), with the same 2 threads
# (distill: 2 loader threads; torchvision: 2 DataLoader workers), median of
# REPEATS runs each. Needs the release build (scripts/build). Last line: ratio=R.
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
c_out=$(build/bin/bench_data "$images" "$threads" "$samples" "$repeats")
echo "$c_out"
py_out=$(/usr/bin/python3 bench/data/bench_torchvision.py "$images" "$threads" "$samples" "$repeats")
echo "$py_out"
c_rate=$(echo "$c_out" | awk '/^distill median:/ {print $3}')
py_rate=$(echo "$py_out" | awk '/^torchvision median:/ {print $3}')
awk -v c="$c_rate" -v p="$py_rate" 'BEGIN { printf "ratio=%.2f\n", c / p }'
