#include "tests/transport/teacher_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

pid_t test_teacher_spawn(const char *bin, const char *endpoint, const char *id, const char *out_path,
                         const char *log_path) {
  char *argv[] = {(char *)bin, "teacher", "--synthetic", "16,4", "--block-size", "4",
                  "--crops", "2", "--bind", (char *)endpoint, "--id", (char *)id,
                  "--heartbeat-ms", "100", "--dead-after-ms", "500", log_path ? NULL : "--quiet", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (log_path) posix_spawn_file_actions_addopen(&fa, 2, log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid;
  int rc = posix_spawn(&pid, bin, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

long test_teacher_terminate(pid_t pid, const char *out_path) {
  kill(pid, SIGTERM);
  int status;
  waitpid(pid, &status, 0);
  FILE *f = fopen(out_path, "r");
  if (!f) return -1;
  char line[4096];
  long computed = -1;
  while (fgets(line, sizeof line, f)) {
    const char *p = strstr(line, " computed=");
    if (p) computed = atol(p + 10);
  }
  fclose(f);
  return computed;
}

int test_count_lines(const char *path, const char *needle) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}
