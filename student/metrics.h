// What a student reports per step: one JSON line in OUT/metrics.jsonl (the
// record plots and tests read; floats with 9 significant digits, so a
// float32 loss round-trips exactly) and a live progress line on a terminal
// (a key=value line every `log_every` steps otherwise).
#ifndef DISTILL_STUDENT_METRICS_H
#define DISTILL_STUDENT_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "model/train_step.h"
#include "student/export_record.h"

typedef struct dl_student_log {
  FILE *jsonl;
  bool tty, quiet;
  long total_steps;
  int log_every;
  double t_start;
  long step_start;
} dl_student_log;

// Rank 0 writes metrics.jsonl, rank r > 0 metrics-rank<r>.jsonl.
int dl_student_log_open(dl_student_log *l, const char *out_dir, int rank, long total_steps, long first_step, bool quiet,
                        dl_err *err);
// One finished step (report of step `step`, 0-based) that took `seconds` for
// `images` images over the group, of which this rank waited wait_s for its
// targets, held_s of them held back by a teacher's pacing.
// The line also carries total_steps (train.steps + hires.steps), so a
// reader of the file alone (deploy/local/status) can show step / total.
void dl_student_log_step(dl_student_log *l, long step, int resolution, const dl_step_report *r, double seconds,
                         int images, double wait_s, double held_s);
// An event line in the JSON file and on stderr ("checkpoint", "resume", "hires").
void dl_student_log_event(dl_student_log *l, const char *event, long step, const char *detail);
// The same with one number in the JSON line as "key":value ("export" and
// "stop" carry ema_hires_share).
void dl_student_log_event_value(dl_student_log *l, const char *event, long step, const char *key, double value,
                                const char *detail);
// An export's evaluation ended: {"event":"eval","step":S,"status":"done",
// "knn_top1":X,"k":K,...} (or "failed" with the reason).
void dl_student_log_eval(dl_student_log *l, long step, const dl_export_eval *e);
void dl_student_log_close(dl_student_log *l);

#endif
