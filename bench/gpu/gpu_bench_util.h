// What the GPU benchmarks share: the card's dense bf16 peak for the
// model-FLOP utilization, the median of repeats, and the device's name as
// one word for the result lines that bench/gpu/*.sh parse.
#ifndef DISTILL_BENCH_GPU_GPU_BENCH_UTIL_H
#define DISTILL_BENCH_GPU_GPU_BENCH_UTIL_H

// Dense bf16 tensor-core peak in TFLOP/s from NVIDIA's datasheets for the
// device's name (BENCH_PEAK_TFLOPS overrides); 0: unknown card.
double dl_bench_peak_tflops(const char *device_name);

// Sorts v[0..n) and returns its median (the upper one for even n).
double dl_bench_median(double *v, int n);

// Prints the name with spaces as underscores (no newline).
void dl_bench_print_word(const char *name);

#endif
