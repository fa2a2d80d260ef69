#ifndef DISTILL_COMMON_TIMING_H
#define DISTILL_COMMON_TIMING_H

// Monotonic seconds, for benchmarks, rates and timeouts.
double dl_now_seconds(void);

#endif
