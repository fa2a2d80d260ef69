// Training schedules as functions of the step, as DINOv2's CosineScheduler
// (dinov2/utils/utils.py): `freeze` steps of 0, then a linear warmup from
// start_warmup to base over `warmup` steps (numpy.linspace: both ends
// included), then a cosine from base to final over the remaining steps; the
// final value from step `total` on. zero_until additionally forces 0 on the
// first steps without shifting the schedule (the last layer's learning rate
// while it is frozen).
#ifndef DISTILL_MODEL_SCHEDULES_H
#define DISTILL_MODEL_SCHEDULES_H

typedef struct dl_schedule {
  double base, final;
  long total, warmup, freeze, zero_until;
  double start_warmup;
} dl_schedule;

double dl_schedule_at(const dl_schedule *s, long step);

// A constant (weight decay or temperature without a schedule).
dl_schedule dl_schedule_constant(double value);

// The schedules of one training run.
typedef struct dl_train_schedules {
  dl_schedule lr;             // warmup then cosine; base scaled by sqrt(batch / 1024) by the caller
  dl_schedule last_layer_lr;  // lr with zero_until = the frozen steps
  dl_schedule wd;             // cosine 0.04 -> 0.2
  dl_schedule momentum;       // EMA momentum, cosine 0.994 -> 1.0
  dl_schedule teacher_temp;   // linear warmup 0.04 -> 0.07, then constant
} dl_train_schedules;

#endif
