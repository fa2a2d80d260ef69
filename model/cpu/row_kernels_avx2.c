// The element-wise row kernels at the AVX2/FMA level (the build's baseline,
// x86-64-v3): ymm loops. See row_kernels.inc.
#define ROW_TABLE dl_row_kernels_avx2
#include "model/cpu/row_kernels.inc"
