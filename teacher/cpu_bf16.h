// The opt-in bf16 teacher on the CPU (`distill teacher --precision bf16`):
// a forward backend (engine.h) that runs the backbone's and the heads'
// linear layers with the bf16 GEMM (model/cpu/gemm_bf16.h) on weights
// converted once at start, and everything else in float32 as the CPU
// forward does. Needs AVX-512 BF16 (dl_gemm_bf16_available()).
#ifndef DISTILL_TEACHER_CPU_BF16_H
#define DISTILL_TEACHER_CPU_BF16_H

#include "teacher/engine.h"

// The one line a CPU without AVX-512 BF16 gets for --precision bf16.
#define DL_CPU_BF16_UNAVAILABLE "--precision bf16 needs AVX-512 BF16 or AMX; this CPU has neither"

extern const dl_forward_backend dl_teacher_cpu_bf16_backend;

#endif
