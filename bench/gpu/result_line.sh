# Sourced by bench/gpu/teacher.sh and train.sh.
# result_line NAME OURS THEIRS FLOPS_PER_IMAGE PEAK_TFLOPS: the line that
# tests/gpu/check.sh tabulates,
#   result NAME distill=X pytorch=Y mfu_distill=A mfu_pytorch=B ratio=R
# (images/s; MFU "-" when the card's peak is unknown, i.e. PEAK_TFLOPS 0).
result_line() {
  awk -v k="$1" -v a="$2" -v b="$3" -v f="$4" -v p="$5" 'BEGIN {
    if (p > 0) { mo = sprintf("%.3f", a * f / (p * 1e12)); mt = sprintf("%.3f", b * f / (p * 1e12)) } else { mo = "-"; mt = "-" }
    printf "result %s distill=%.2f pytorch=%.2f mfu_distill=%s mfu_pytorch=%s ratio=%.2f\n", k, a, b, mo, mt, a / b }'
}
