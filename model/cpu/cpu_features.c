// CPU feature detection and the kernel level (see cpu_features.h). This file
// is compiled for baseline x86-64 (CMake sets -march=x86-64 on it), because
// its constructor runs on machines that may lack what the rest of the program
// is compiled for; it must not call into other project files.
#include "model/cpu/cpu_features.h"

#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIT(reg, n) (((reg) >> (n)) & 1u)

// XCR0 state components (Intel SDM vol. 1, 13.1).
#define XCR0_YMM 0x6u        // SSE + AVX
#define XCR0_ZMM 0xE0u       // opmask, ZMM_Hi256, Hi16_ZMM
#define XCR0_AMX 0x60000u    // XTILECFG, XTILEDATA

static uint64_t read_xcr0(void) {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

static dl_cpu_features detect(void) {
  dl_cpu_features f = {0};
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0, a7 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71 = 0, c71 = 0, d71 = 0;
  unsigned ae = 0, be = 0, ce = 0, de = 0;
  if (!__get_cpuid(1, &a1, &b1, &c1, &d1)) return f;
  __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);  // leaves a7.. at 0 when absent
  if (a7 >= 1) __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
  __get_cpuid(0x80000001u, &ae, &be, &ce, &de);
  // The OS must save the wide registers on a context switch (OSXSAVE, XCR0).
  const uint64_t xcr0 = BIT(c1, 27) ? read_xcr0() : 0;
  const bool os_ymm = (xcr0 & XCR0_YMM) == XCR0_YMM;
  f.os_zmm = os_ymm && (xcr0 & XCR0_ZMM) == XCR0_ZMM;
  f.fma = BIT(c1, 12) && os_ymm;
  f.f16c = BIT(c1, 29) && os_ymm;
  f.avx2 = BIT(b7, 5) && BIT(c1, 28) && os_ymm;
  f.bmi2 = BIT(b7, 8);
  const bool bmi1 = BIT(b7, 3), movbe = BIT(c1, 22), lzcnt = BIT(ce, 5);
  f.x86_64_v3 = f.avx2 && f.fma && f.f16c && bmi1 && f.bmi2 && movbe && lzcnt;
  f.avx512f = BIT(b7, 16) && f.os_zmm;
  f.avx512dq = BIT(b7, 17) && f.os_zmm;
  f.avx512bw = BIT(b7, 30) && f.os_zmm;
  f.avx512vl = BIT(b7, 31) && f.os_zmm;
  f.avx512_bf16 = BIT(a71, 5) && f.os_zmm;
  f.amx = BIT(d7, 24) && BIT(d7, 22) && (xcr0 & XCR0_AMX) == XCR0_AMX;
  return f;
}

static dl_cpu_features g_features;
static dl_cpu_level g_level;

const dl_cpu_features *dl_cpu_features_get(void) { return &g_features; }
dl_cpu_level dl_cpu_kernel_level(void) { return g_level; }

const char *dl_cpu_level_name(dl_cpu_level level) { return level == DL_CPU_AVX512 ? "avx512" : "avx2"; }

static bool has_avx512(const dl_cpu_features *f) { return f->avx512f && f->avx512bw && f->avx512dq && f->avx512vl; }

dl_cpu_level dl_cpu_best_level(const dl_cpu_features *f) { return has_avx512(f) ? DL_CPU_AVX512 : DL_CPU_AVX2; }

int dl_cpu_choose_level(const char *request, const dl_cpu_features *f, dl_cpu_level *level, char *msg,
                        size_t msg_size) {
  if (!request || !*request) {
    *level = dl_cpu_best_level(f);
    return 0;
  }
  if (strcmp(request, "avx2") == 0) {
    *level = DL_CPU_AVX2;
    return 0;
  }
  if (strcmp(request, "avx512") == 0) {
    if (!has_avx512(f)) {
      snprintf(msg, msg_size,
               "DISTILL_CPU_KERNELS=avx512: this CPU or its OS lacks AVX-512 (needs avx512f, avx512bw, "
               "avx512dq, avx512vl and zmm state); use avx2 or leave it unset");
      return -1;
    }
    *level = DL_CPU_AVX512;
    return 0;
  }
  snprintf(msg, msg_size, "DISTILL_CPU_KERNELS='%.40s': expected avx2 or avx512 (unset: the best this CPU has)",
           request);
  return -1;
}

void dl_cpu_describe(char *buf, size_t size) {
  const dl_cpu_features *f = &g_features;
  const struct { bool on; const char *name; } list[] = {
      {f->avx2, "avx2"},         {f->fma, "fma"},           {f->avx512f, "avx512f"},
      {f->avx512bw, "avx512bw"}, {f->avx512dq, "avx512dq"}, {f->avx512vl, "avx512vl"},
      {f->avx512_bf16, "avx512_bf16"}};
  size_t used = (size_t)snprintf(buf, size, "%s (", dl_cpu_level_name(g_level));
  const char *sep = "";
  for (size_t i = 0; i < sizeof list / sizeof list[0] && used < size; i++)
    if (list[i].on) {
      used += (size_t)snprintf(buf + used, size - used, "%s%s", sep, list[i].name);
      sep = " ";
    }
  if (used < size) snprintf(buf + used, size - used, "; amx %s)", f->amx ? "yes" : "no");
}

// Before main() and before any other constructor of the program.
__attribute__((constructor(101))) static void choose_at_start(void) {
  g_features = detect();
  if (!g_features.x86_64_v3) {
    fprintf(stderr, "distill: this CPU lacks x86-64-v3 (AVX2, FMA, BMI2, F16C, MOVBE, LZCNT with OS support), "
                    "which this build needs\n");
    exit(2);
  }
  char msg[256];
  if (dl_cpu_choose_level(getenv("DISTILL_CPU_KERNELS"), &g_features, &g_level, msg, sizeof msg)) {
    fprintf(stderr, "distill: %s\n", msg);
    exit(2);
  }
}
