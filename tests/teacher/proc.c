#include "tests/teacher/proc.h"

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
