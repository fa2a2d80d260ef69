// `distill knn`, `linear`, `pretrain` and `teacher --recipe` on bad flags and
// files: exit status 2 and one line on stderr saying what is wrong. Built
// twice in CUDA builds: for distill (whose `teacher --device cuda` names
// distill-gpu) and for distill-gpu (DISTILL_GPU_CLI: --device cuda without a
// recipe, and with a recipe whose weights are missing: exit 2 with or
// without a GPU).
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/teacher/proc.h"

#define SRC DISTILL_SOURCE_DIR
#define W SRC "/models/demo-teacher/backbone.safetensors"
#define FM "idx:/usr/share/datasets/fashion-mnist,split=test"

static int one_line(const char *path, char *line, size_t n) {
  FILE *f = fopen(path, "r");
  int lines = 0;
  char buf[1024];
  line[0] = '\0';
  while (f && fgets(buf, sizeof buf, f))
    if (lines++ == 0) snprintf(line, n, "%s", buf);
  if (f) fclose(f);
  line[strcspn(line, "\n")] = '\0';
  return lines;
}

int main(void) {
  char recipe[128], out[128], log[128];
  snprintf(recipe, sizeof recipe, "/tmp/distill-tcli-%d.yaml", (int)getpid());
  snprintf(out, sizeof out, "/tmp/distill-tcli-%d.out", (int)getpid());
  snprintf(log, sizeof log, "/tmp/distill-tcli-%d.log", (int)getpid());
  FILE *f = fopen(recipe, "w");
  if (f) {
    fputs("data:\n  dataset: " FM "\nteacher:\n  weights: /nonexistent/w.safetensors\n", f);
    fclose(f);
  }
  const char *cases[][16] = {
      {"knn", "--bogus", NULL},
      {"knn", "--train", FM, "--test", FM, NULL},
      {"knn", "--weights", "/nonexistent.safetensors", "--train", FM, "--test", FM, NULL},
      {"knn", "--weights", W, "--train", FM, "--test", FM, "--size", "50", NULL},
      {"knn", "--weights", W, "--train", "folder:/nonexistent", "--test", FM, "--size", "56", NULL},
      {"knn", "--weights", W, "--train", FM, "--test", FM, "--limit-train", "-3", NULL},
      {"knn", "--weights", W, "--train", FM, "--test", FM, "--size", "56", "--limit-train", "5", "--limit-test", "20", NULL},
      {"knn", "--weights", W, "--train", FM, "--test", FM, "--temperature", "0", NULL},
      {"linear", "--weights", W, "--train", FM, "--test", FM, "--epochs", "0", NULL},
      {"linear", "--weights", W, "--train", FM, "--test", FM, "--lr", "-1", NULL},
      {"pretrain", "--out", "/tmp", NULL},
      {"pretrain", "--recipe", "/nonexistent.yaml", "--out", "/tmp", NULL},
      {"pretrain", "--recipe", SRC "/recipes/demo.yaml", "--out", "/tmp", NULL},
      {"pretrain", "--recipe", SRC "/recipes/demo-teacher.yaml", "--out", "/proc/no/such/dir", NULL},
      {"teacher", "--recipe", SRC "/recipes/demo.yaml", NULL},
      {"teacher", "--recipe", recipe, NULL},
      {"teacher", "--recipe", recipe, "--synthetic", "4,4", NULL},
      {"teacher", "--synthetic", "4,4", "--device", "tpu", NULL},
      {"teacher", "--synthetic", "4,4", "--device", "cuda", NULL},
#ifdef DISTILL_GPU_CLI
      {"teacher", "--recipe", recipe, "--device", "cuda", NULL},
#endif
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unlink(out);
    int rc = proc_run(cases[i], out, 60);
    char line[1024], shown[512] = "";
    int n = one_line(out, line, sizeof line);
    for (int a = 0; cases[i][a]; a++) {
      strncat(shown, cases[i][a], sizeof shown - strlen(shown) - 2);
      strcat(shown, " ");
    }
    CHECK(rc == 2 && n == 1 && strncmp(line, "distill: ", 9) == 0, "distill %s-> exit %d, %d line: %s", shown, rc, n, line);
  }
#ifndef DISTILL_GPU_CLI
  {  // the CPU binary's refusal names the binary that has the CUDA backend
    const char *args[] = {"teacher", "--synthetic", "4,4", "--device", "cuda", NULL};
    unlink(out);
    const int rc = proc_run(args, out, 60);
    char line[1024];
    const int n = one_line(out, line, sizeof line);
    CHECK(rc == 2 && n == 1 && strstr(line, "distill-gpu"), "distill teacher --device cuda names distill-gpu: %s", line);
  }
#endif
  unlink(out);
  unlink(recipe);
  (void)log;
#ifdef DISTILL_GPU_CLI
  return dl_test_summary("teacher_cli_gpu");
#else
  return dl_test_summary("teacher_cli");
#endif
}
