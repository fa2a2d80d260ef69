// The element-wise row kernels at the AVX-512 level: the same loops, compiled
// alone with -mavx512f/bw/dq/vl and 512-bit vectors preferred (CMake), so
// they run only when the CPU level is avx512. See row_kernels.inc.
#define ROW_TABLE dl_row_kernels_avx512
#include "model/cpu/row_kernels.inc"
