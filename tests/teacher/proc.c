#include "tests/teacher/proc.h"

#include "recipe/recipe.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

uint64_t proc_write_demo_recipe(const char *path, const char *target) {
  FILE *f = fopen(path, "w");
  if (!f) return printf("recipe: cannot write %s\n", path), 0;
  fprintf(f,
          "data:\n  dataset: idx:/usr/share/datasets/fashion-mnist,split=test\n  seed: 3\n  block_size: 4\n"
          "  loader_threads: 1\n"
          "crops:\n  global_count: 2\n  global_size: 56\n  local_count: 0\n  local_size: 28\n"
          "teacher:\n  weights: %s/models/demo-teacher/backbone.safetensors\n"
          "  heads: %s/models/demo-teacher/heads.safetensors\n  target: %s\n  batch: 3\n  workers: 2\n",
          DISTILL_SOURCE_DIR, DISTILL_SOURCE_DIR, target);
  fclose(f);
  dl_recipe r;
  dl_err err;
  if (dl_recipe_load(path, &r, &err) == 0) return dl_recipe_stream_hash(&r);
  printf("recipe: %s\n", err.msg);
  return 0;
}

void proc_student_config(dl_student_config *c, const char *const *teachers, const char *group, uint64_t stream_hash,
                         uint32_t resolution, uint64_t blocks, int window, int patience_ms) {
  dl_student_config_defaults(c);
  c->teachers = teachers;
  c->nteachers = 1;
  c->group = group;
  c->recipe_hash = stream_hash;
  c->end_block = blocks;
  c->window = window;
  c->resolution = resolution;
  c->heartbeat_ms = 100;
  c->dead_after_ms = patience_ms;
  c->request_timeout_ms = 5 * patience_ms;
  c->quiet = true;
}

pid_t proc_start(const char *const *args, const char *out_path) {
  char *argv[48];
  int argc = 0;
  argv[argc++] = (char *)DISTILL_BIN;
  while (args[argc - 1] && argc < 47) {
    argv[argc] = (char *)args[argc - 1];
    argc++;
  }
  argv[argc] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  pid_t pid;
  int rc = posix_spawn(&pid, DISTILL_BIN, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

static int status_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0); }

static int wait_for(pid_t pid, double timeout_s) {
  for (double t = 0; t < timeout_s; t += 0.01) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) return status_code(st);
    nanosleep(&(struct timespec){0, 10000000}, NULL);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

int proc_stop(pid_t pid, int sig, double timeout_s) {
  if (pid <= 0) return -1;
  kill(pid, sig);
  return wait_for(pid, timeout_s);
}

int proc_run(const char *const *args, const char *out_path, double timeout_s) {
  pid_t pid = proc_start(args, out_path);
  return pid < 0 ? -1 : wait_for(pid, timeout_s);
}

long long proc_find_metric(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[4096], pat[128];
  snprintf(pat, sizeof pat, " %s=", key);
  long long v = -1;
  while (fgets(line, sizeof line, f)) {
    char *p = strstr(line, pat);
    if (!p && strncmp(line, pat + 1, strlen(pat) - 1) == 0) p = line - 1;
    if (p) v = atoll(p + strlen(pat));
  }
  fclose(f);
  return v;
}

int proc_one_block(const dl_recipe *r, const dl_forward_backend *backend, dl_target_block *out, dl_err *err) {
  dl_teacher_model m;
  if (dl_teacher_model_open(r, backend, &m, err)) return -1;
  const int rc = dl_teacher_engine_compute(m.engine, 3, (uint32_t)r->crops.global_size, out, err);
  dl_teacher_model_close(&m);
  return rc;
}
