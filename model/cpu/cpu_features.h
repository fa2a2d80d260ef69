// Which x86-64 instruction sets this CPU (and its OS) offers, and the CPU
// kernel level chosen from them once at start: one binary for every x86-64
// machine, as OpenBLAS and oneDNN do it. The level picks the sgemm
// micro-kernel (gemm.c) and the element-wise row kernels (row_kernels.h).
//
// The choice is made by a constructor before main(), in a file compiled for
// baseline x86-64: a machine without x86-64-v3 (AVX2, FMA, BMI2, ...), for
// which the rest of the program is compiled, gets one line and exit status 2
// instead of SIGILL. DISTILL_CPU_KERNELS=avx2|avx512 overrides the choice
// (tests and benchmarks use it); a value the machine cannot run is refused
// the same way. This is the one place where library code exits: nothing else
// can run before it.
#ifndef DISTILL_MODEL_CPU_CPU_FEATURES_H
#define DISTILL_MODEL_CPU_CPU_FEATURES_H

#include <stdbool.h>
#include <stddef.h>

typedef enum dl_cpu_level {
  DL_CPU_AVX2 = 0,    // x86-64-v3: AVX2 + FMA, ymm kernels
  DL_CPU_AVX512 = 1,  // AVX-512 F/BW/DQ/VL with zmm state enabled by the OS
  DL_CPU_LEVELS
} dl_cpu_level;

typedef struct dl_cpu_features {
  bool x86_64_v3;  // everything -march=x86-64-v3 may use, with ymm state on
  bool avx2, fma, bmi2, f16c;
  bool avx512f, avx512bw, avx512dq, avx512vl, avx512_bf16;
  bool os_zmm;     // XCR0 enables opmask and zmm state (xgetbv)
  bool amx;        // AMX tile + bf16 in CPUID and tile state in XCR0
} dl_cpu_features;

// Detected once (cpuid, xgetbv).
const dl_cpu_features *dl_cpu_features_get(void);

// The level the kernels run at (chosen before main()).
dl_cpu_level dl_cpu_kernel_level(void);

// "avx2" / "avx512".
const char *dl_cpu_level_name(dl_cpu_level level);

// The best level the features allow (no override).
dl_cpu_level dl_cpu_best_level(const dl_cpu_features *f);

// The level DISTILL_CPU_KERNELS asks for (NULL or "": the best one). On a
// value that is not a level, or a level these features lack, writes one line
// to msg and returns -1.
int dl_cpu_choose_level(const char *request, const dl_cpu_features *f, dl_cpu_level *level, char *msg,
                        size_t msg_size);

// "avx512 (avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16; amx no)".
void dl_cpu_describe(char *buf, size_t size);

#endif
