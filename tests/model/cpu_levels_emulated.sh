#!/bin/sh
# The program on CPUs this machine is not, emulated by qemu-user:
#   - Nehalem (no AVX2): `distill` refuses in one line, exit status 2, no SIGILL;
#   - Haswell (AVX2 + FMA, no AVX-512: an AVX2-only machine, as CI runs on):
#     the level is avx2, DISTILL_CPU_KERNELS=avx512 is refused in one line,
#     and the kernel tests and a ViT parity test pass, so no AVX-512
#     instruction runs outside the avx512 files (it would end them with SIGILL).
# usage: cpu_levels_emulated.sh QEMU DISTILL TEST_CPU_LEVELS TEST_VIT_PARITY WEIGHTS IO
# Skips (exit 77) where qemu-x86_64 is not installed (Debian: qemu-user).
qemu=$1 distill=$2 levels=$3 parity=$4 weights=$5 io=$6
case "$qemu" in *NOTFOUND*|"") echo "skipped: qemu-x86_64 is not installed (apt install qemu-user)"; exit 77 ;; esac
fail=0
check() {  # check DESCRIPTION yes|""
  if [ "$2" = yes ]; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}
# emulate CPU COMMAND...: sets out (the output without qemu's own warnings
# about CPU flags its TCG lacks) and rc.
emulate() {
  cpu=$1; shift
  out=$("$qemu" -cpu "$cpu" "$@" 2>&1); rc=$?
  out=$(printf '%s\n' "$out" | grep -v '^qemu-x86_64: warning')
}
one_line() { [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && echo yes; }

emulate Nehalem "$distill" --version
check "Nehalem: exit $rc (2), one line: $out" "$([ "$rc" = 2 ] && one_line)"
emulate Haswell "$distill" --version
out=$(printf '%s\n' "$out" | grep '^cpu:')
check "Haswell: exit $rc (0), $out" "$([ "$rc" = 0 ] && printf '%s' "$out" | grep -q '^cpu: avx2 (avx2 fma; amx no)$' && echo yes)"
export DISTILL_CPU_KERNELS=avx512
emulate Haswell "$distill" --version
check "Haswell, DISTILL_CPU_KERNELS=avx512: exit $rc (2), one line: $out" "$([ "$rc" = 2 ] && one_line)"
unset DISTILL_CPU_KERNELS
emulate Haswell "$levels"
check "Haswell: test_cpu_levels exit $rc (0): $(printf '%s\n' "$out" | tail -n 1)" "$([ "$rc" = 0 ] && echo yes)"
emulate Haswell "$parity" "$weights" "$io"
check "Haswell: test_vit_parity exit $rc (0): $(printf '%s\n' "$out" | tail -n 1)" "$([ "$rc" = 0 ] && echo yes)"
exit $fail
