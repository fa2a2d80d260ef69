#define _GNU_SOURCE  // SCHED_IDLE
#include "student/export_eval.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/timing.h"

extern char **environ;

void dl_export_evaluator_init(dl_export_evaluator *ev, const char *exe, const dl_recipe_eval *cfg,
                              const char *log_dir) {
  memset(ev, 0, sizeof *ev);
  ev->exe = exe;
  ev->cfg = cfg;
  snprintf(ev->log_dir, sizeof ev->log_dir, "%s", log_dir);
}

bool dl_export_evaluator_busy(const dl_export_evaluator *ev) { return ev->pid > 0; }

// The environment of the evaluation: the trainer's, with its own thread
// count and the trainer's pid (the child exits when the trainer is gone).
static char **child_env(int threads, char *owned[2]) {
  size_t n = 0;
  while (environ[n]) n++;
  char **env = calloc(n + 3, sizeof *env);
  if (!env) abort();
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "OMP_NUM_THREADS=", 16) != 0 && strncmp(environ[i], "DISTILL_DIE_WITH_PARENT=", 24) != 0)
      env[k++] = environ[i];
  owned[0] = malloc(32), owned[1] = malloc(48);
  if (!owned[0] || !owned[1]) abort();
  snprintf(owned[0], 32, "OMP_NUM_THREADS=%d", threads);
  snprintf(owned[1], 48, "DISTILL_DIE_WITH_PARENT=%ld", (long)getpid());
  env[k++] = owned[0];
  env[k++] = owned[1];
  return env;
}

// Spawns the current stage's command with stdout and stderr appended to the log.
static int spawn_stage(dl_export_evaluator *ev, dl_err *err) {
  const dl_recipe_eval *c = ev->cfg;
  char limit_train[24], limit_test[24], size[16], resize[16], k[16], temperature[32];
  snprintf(limit_train, sizeof limit_train, "%d", c->limit_train);
  snprintf(limit_test, sizeof limit_test, "%d", c->limit_test);
  snprintf(size, sizeof size, "%d", c->size);
  snprintf(resize, sizeof resize, "%d", c->resize);
  snprintf(k, sizeof k, "%d", c->knn_k);
  snprintf(temperature, sizeof temperature, "%.9g", (double)c->knn_temperature);
  char *argv[24];
  int a = 0;
  argv[a++] = (char *)ev->exe;
  argv[a++] = ev->stage == 0 ? "knn" : "linear";
  char *common[] = {"--weights", ev->export_path, "--train", (char *)c->train, "--test", (char *)c->test,
                    "--limit-train", limit_train, "--limit-test", limit_test, "--size", size, "--resize", resize};
  for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) argv[a++] = common[i];
  if (ev->stage == 0) argv[a++] = "--k", argv[a++] = k, argv[a++] = "--temperature", argv[a++] = temperature;
  argv[a] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, ev->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addclose(&fa, STDIN_FILENO);
  char *owned[2];
  char **env = child_env(c->threads, owned);
  // SCHED_IDLE: the evaluation runs only on cycles the trainer leaves idle
  // and yields at once when a trainer thread wakes (with a nice level alone,
  // a trainer's OpenMP team waited at every barrier for a thread the
  // evaluation had displaced: steps were several times slower).
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  struct sched_param sp = {.sched_priority = 0};
  posix_spawnattr_setschedpolicy(&attr, SCHED_IDLE);
  posix_spawnattr_setschedparam(&attr, &sp);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSCHEDULER);
  pid_t pid;
  // posix_spawn, not fork: a large trainer's page tables are not copied.
  int rc = posix_spawn(&pid, ev->exe, &fa, &attr, argv, env);
  if (rc == EPERM || rc == EINVAL) rc = posix_spawn(&pid, ev->exe, &fa, NULL, argv, env);  // no SCHED_IDLE here
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&fa);
  free(env), free(owned[0]), free(owned[1]);
  if (rc != 0) return dl_fail(err, "cannot start the evaluation (%s %s): %s", ev->exe, argv[1], strerror(rc));
  setpriority(PRIO_PROCESS, (id_t)pid, 19);  // where SCHED_IDLE was refused: the lowest priority
  ev->pid = pid;
  ev->started = dl_now_seconds();
  return 0;
}

int dl_export_evaluator_start(dl_export_evaluator *ev, const char *export_path, long step, dl_err *err) {
  if (ev->pid > 0) return dl_fail(err, "an evaluation is running");
  ev->step = step;
  ev->stage = 0;
  memset(&ev->result, 0, sizeof ev->result);
  snprintf(ev->export_path, sizeof ev->export_path, "%s", export_path);
  snprintf(ev->log_path, sizeof ev->log_path, "%s/student-ema-%010ld.log", ev->log_dir, step);
  unlink(ev->log_path);
  return spawn_stage(ev, err);
}

// The figures of the stage's line in the log ("knn k=K top1=X train=N
// test=M size=S ..." or "linear top1=X ..."); false when it is not there.
static bool read_result(dl_export_evaluator *ev) {
  FILE *f = fopen(ev->log_path, "r");
  if (!f) return false;
  char line[512];
  bool found = false;
  dl_export_eval *r = &ev->result;
  while (fgets(line, sizeof line, f)) {
    int k, tr, te, sz;
    double top1;
    if (ev->stage == 0 && sscanf(line, "knn k=%d top1=%lf train=%d test=%d size=%d", &k, &top1, &tr, &te, &sz) == 5 &&
        k == ev->cfg->knn_k) {
      r->knn_top1 = top1, r->knn_k = k, r->train_n = tr, r->test_n = te, r->size = sz;
      r->knn_temperature = ev->cfg->knn_temperature;
      found = true;
    }
    if (ev->stage == 1 && sscanf(line, "linear top1=%lf", &top1) == 1) r->linear_top1 = top1, r->has_linear = found = true;
  }
  fclose(f);
  return found;
}

static void fail(dl_export_evaluator *ev, const char *fmt, int value) {
  ev->result.state = DL_EXPORT_EVAL_FAILED;
  snprintf(ev->result.failure, sizeof ev->result.failure, fmt, ev->stage == 0 ? "knn" : "linear", value);
}

int dl_export_evaluator_poll(dl_export_evaluator *ev) {
  if (ev->pid <= 0) return 0;
  int status;
  pid_t got;
  do got = waitpid(ev->pid, &status, WNOHANG);
  while (got < 0 && errno == EINTR);
  if (got == 0) return 0;
  ev->pid = 0;
  ev->result.seconds += dl_now_seconds() - ev->started;  // the stages so far
  if (got < 0) fail(ev, "distill %s: lost (waitpid errno %d)", errno);
  else if (WIFSIGNALED(status)) fail(ev, "distill %s: killed by signal %d", WTERMSIG(status));
  else if (WEXITSTATUS(status) != 0) fail(ev, "distill %s: exit status %d (its log says why)", WEXITSTATUS(status));
  else if (!read_result(ev)) fail(ev, "distill %s: exit %d without its result line", 0);
  else if (ev->stage == 0 && ev->cfg->linear) {
    dl_err err;
    ev->stage = 1;
    if (spawn_stage(ev, &err) == 0) return 0;
    ev->result.state = DL_EXPORT_EVAL_FAILED;
    snprintf(ev->result.failure, sizeof ev->result.failure, "%.150s", err.msg);
  } else ev->result.state = DL_EXPORT_EVAL_DONE;
  return 1;
}

void dl_export_evaluator_kill(dl_export_evaluator *ev) {
  if (ev->pid <= 0) return;
  kill(ev->pid, SIGKILL);
  while (waitpid(ev->pid, NULL, 0) < 0 && errno == EINTR) {
  }
  ev->pid = 0;
}
