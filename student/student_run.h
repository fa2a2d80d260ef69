// The student trainer process (DESIGN.md section 6): for each step, the
// rank's next target blocks from the teachers, the same blocks' crops
// rebuilt from the sample stream, one dl_trainer_step, the metrics, and
// checkpoints on the recipe's schedule; the high-resolution phase at the end.
#ifndef DISTILL_STUDENT_STUDENT_RUN_H
#define DISTILL_STUDENT_STUDENT_RUN_H

#include <stdbool.h>
#include <signal.h>

#include "model/losses.h"
#include "model/train_step.h"
#include "recipe/recipe.h"
#include "student/reduce.h"
#include "transport/curve.h"

// A step on other hardware than the CPU (the CUDA step: cli/student_cuda.c).
// The host trainer stays the state of record: start builds the backend from
// its state (user: what the backend was made with, e.g. its device and data-
// parallel group); step replaces dl_trainer_step and keeps host->step current;
// sync brings the whole state back into the host trainer (before a
// checkpoint or the high-resolution switch); stop frees the backend.
typedef struct dl_step_backend {
  const char *name;
  void *(*start)(void *user, dl_trainer *host, dl_err *err);
  int (*step)(void *ctx, dl_trainer *host, const dl_train_batch *batch, dl_step_report *report, dl_err *err);
  int (*sync)(void *ctx, dl_trainer *host, dl_err *err);  // 0, or -1: the state did not come back
  void (*stop)(void *ctx);
  void *user;
} dl_step_backend;

typedef struct dl_student_options {
  const dl_recipe *recipe;
  const char *recipe_text;        // stored in every checkpoint
  const char *const *teachers;
  int nteachers;
  int rank, world;
  dl_reduce reduce;               // the group's sums (student/reduce.h); fn NULL with one rank
  dl_group *ranks;                // the group itself: rank 0 sends its checkpoint at resume (world > 1)
  const char *resume;             // NULL: fresh start, "auto": the checkpoint folder's newest usable, else a file
                                  // (with world > 1 rank 0's choice is every rank's: checkpoint_share.h)
  const char *out_dir;
  const char *group;              // the student group's name (default: the out folder's name)
  int heartbeat_ms, dead_after_ms;
  int resolve_interval_ms;        // dns: teacher sources re-resolved this often (0: the client's default)
  const dl_curve_key *curve_secret, *curve_public, *teacher_public;  // CURVE on when curve_secret is set
  int metrics_port;               // Prometheus text endpoint (0: none)
  const char *metrics_addr;       // its address (default 127.0.0.1)
  bool quiet;
  volatile sig_atomic_t *stop;    // set by SIGTERM/SIGINT: checkpoint and leave
  const dl_step_backend *backend; // NULL: the CPU step
  const char *eval_exe;           // the distill binary that evaluates exports (the recipe's eval section); NULL: none
} dl_student_options;

// Returns 0 when training finished or stopped cleanly, 2 on bad input (the
// message is in err; a teacher refusing the student's stream or protocol
// counts as such), 1 on a fatal condition met while training.
int dl_student_run(const dl_student_options *o, dl_err *err);

#endif
