// The evaluation of one export in a separate process, so that training never
// waits for it: `distill knn` (then `distill linear` when the recipe asks)
// on the export file, spawned by rank 0 at a lower priority (nice 10) with
// the recipe's eval.threads OpenMP threads, its output in
// OUT/eval/student-ema-STEP.log. The trainer polls it between steps. A killed
// evaluation is a failed attempt, never a failed run; the process dies with
// its trainer (DISTILL_DIE_WITH_PARENT, cli/main.c).
#ifndef DISTILL_STUDENT_EXPORT_EVAL_H
#define DISTILL_STUDENT_EXPORT_EVAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "recipe/recipe.h"
#include "student/export_record.h"

typedef struct dl_export_evaluator {
  const char *exe;             // the distill binary
  const dl_recipe_eval *cfg;
  char log_dir[1100];
  pid_t pid;                   // 0: idle
  long step;                   // the export being evaluated
  int stage;                   // 0 k-NN, 1 linear probe
  char export_path[1300], log_path[1300];
  double started;              // the running stage's start (result.seconds: the finished stages')
  dl_export_eval result;
} dl_export_evaluator;

void dl_export_evaluator_init(dl_export_evaluator *ev, const char *exe, const dl_recipe_eval *cfg,
                              const char *log_dir);
bool dl_export_evaluator_busy(const dl_export_evaluator *ev);
// Starts evaluating the export at export_path (step `step`); -1 with a
// message when the process cannot be started.
int dl_export_evaluator_start(dl_export_evaluator *ev, const char *export_path, long step, dl_err *err);
// 1 when the evaluation of ev->step ended (ev->result: DONE, or FAILED with
// the reason), 0 while it runs or when idle. Never blocks.
int dl_export_evaluator_poll(dl_export_evaluator *ev);
// Ends a running evaluation (the trainer stops); its export stays pending.
void dl_export_evaluator_kill(dl_export_evaluator *ev);

#endif
