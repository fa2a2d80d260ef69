// `distill teacher` and `distill keygen` with bad flags and files: exit status
// 2 and one line on stderr saying what is wrong, never a crash.
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/harness.h"

extern char **environ;

// Runs distill with args; returns the exit status, stderr's first line in line.
static int run(const char *const *args, char *line, size_t n, int *nlines) {
  char err_path[64];
  snprintf(err_path, sizeof err_path, "/tmp/distill-cli-%d.err", (int)getpid());
  char *argv[32];
  int argc = 0;
  argv[argc++] = (char *)DISTILL_BIN;
  for (; args[argc - 1] && argc < 31; argc++) argv[argc] = (char *)args[argc - 1];
  argv[argc] = NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int status = -1;
  if (posix_spawn(&pid, DISTILL_BIN, &fa, NULL, argv, environ) == 0) waitpid(pid, &status, 0);
  posix_spawn_file_actions_destroy(&fa);
  FILE *f = fopen(err_path, "r");
  line[0] = '\0';
  *nlines = 0;
  char buf[1024];
  while (f && fgets(buf, sizeof buf, f)) {
    if ((*nlines)++ == 0) snprintf(line, n, "%s", buf);
  }
  if (f) fclose(f);
  unlink(err_path);
  line[strcspn(line, "\n")] = '\0';
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int main(void) {
  const char *cases[][12] = {
      {"teacher", "--bogus", NULL},
      {"teacher", NULL},
      {"teacher", "--synthetic", "16", NULL},
      {"teacher", "--synthetic", "16,4", "--codec", "f17", NULL},
      {"teacher", "--synthetic", "16,4", "--zstd-level", "99", NULL},
      {"teacher", "--synthetic", "16,4", "--block-size", "many", NULL},
      {"teacher", "--synthetic", "16,4", "--curve-key", "/nonexistent/t.key", NULL},
      {"teacher", "--synthetic", "16,4", "--allow", "/tmp/x", NULL},
      {"teacher", "--store", "/nonexistent/store", NULL},
      {"teacher", "--synthetic", "16,4", "--bind", "bogus://nowhere", NULL},
      {"teacher", "--synthetic", "16,4", "--recipe-hash", "xyz", NULL},
      {"teacher", "--synthetic", "16,4", "--io-threads", "0", NULL},
      {"teacher", "--synthetic", "16,4", "--io-threads", "65", NULL},
      {"keygen", NULL},
      {"keygen", "/nonexistent/dir/k", NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char line[1024], shown[256] = "";
    int nlines;
    int rc = run(cases[i], line, sizeof line, &nlines);
    for (int a = 0; cases[i][a]; a++) {
      strncat(shown, cases[i][a], sizeof shown - strlen(shown) - 2);
      strcat(shown, " ");
    }
    CHECK(rc == 2 && nlines == 1 && strncmp(line, "distill: ", 9) == 0,
          "distill %s-> exit %d, %d line: %s", shown, rc, nlines, line);
  }
  return dl_test_summary("transport_cli");
}
