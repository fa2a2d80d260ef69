#include "model/schedules.h"

#include <math.h>

double dl_schedule_at(const dl_schedule *s, long step) {
  if (step < s->zero_until) return 0.0;
  if (step >= s->total) return s->final;
  if (step < s->freeze) return 0.0;
  long i = step - s->freeze;
  if (i < s->warmup) {
    if (s->warmup == 1) return s->start_warmup;
    return s->start_warmup + (s->base - s->start_warmup) * (double)i / (double)(s->warmup - 1);
  }
  i -= s->warmup;
  const long len = s->total - s->warmup - s->freeze;
  return s->final + 0.5 * (s->base - s->final) * (1.0 + cos(M_PI * (double)i / (double)len));
}

dl_schedule dl_schedule_constant(double value) {
  return (dl_schedule){.base = value, .final = value, .total = 1, .start_warmup = value};
}
