// distill knn: the DINO k-NN evaluation of a backbone (eval/knn.h).
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/eval_flags.h"
#include "common/timing.h"
#include "eval/knn.h"

// "10,20,100": up to 8 values of k, each 1 to 100 (dl_knn_eval's bound).
static void parse_ks(const char *text, int *ks, int *nk) {
  const char *p = text;
  for (;;) {
    char *end;
    long k = strtol(p, &end, 10);
    if (end == p || k < 1 || k > 100 || *nk == 8 || (*end && *end != ','))
      dl_die_input("knn: --k '%s': expected up to 8 comma-separated values from 1 to 100", text);
    ks[(*nk)++] = (int)k;
    if (!*end) return;
    p = end + 1;
  }
}

int cmd_knn(int argc, char **argv) {
  dl_eval_flags ef = DL_EVAL_FLAGS_INIT;
  double temperature = DL_KNN_TEMPERATURE;
  const char *k_list = "10,20,100";
  const dl_flag flags[] = {
      DL_EVAL_FLAG_ENTRIES(ef),
      {"temperature", DL_FLAG_DOUBLE, &temperature, "T", "vote weight exp(similarity / T) (default 0.07)"},
      {"k", DL_FLAG_STRING, &k_list, "K[,K...]", "neighbours that vote, each 1 to 100 (default 10,20,100)"},
  };
  const dl_command_spec spec = {
      "knn", "--weights W --train DATASET --test DATASET [--limit-train N --limit-test N] [--size PX]",
      "The DINO k-NN evaluation: CLS features of both sets through the evaluation transform,\n"
      "cosine similarity, each test image's k nearest training images vote with weight\n"
      "exp(similarity / 0.07); prints top-1 accuracy for k = 10, 20, 100 (one line each;\n"
      "--k chooses others).",
      flags, (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  if (!(temperature > 0.0 && temperature < 100.0)) dl_die_input("knn: --temperature must lie in (0, 100)");
  int ks[8], nk = 0;
  parse_ks(k_list, ks, &nk);
  int kmin = ks[0];
  for (int i = 1; i < nk; i++) kmin = ks[i] < kmin ? ks[i] : kmin;
  if (ef.limit_train > 0 && ef.limit_train < kmin)
    dl_die_input("knn: --limit-train %d: k-NN needs at least %d training items (the smallest k)", ef.limit_train, kmin);
  const double t0 = dl_now_seconds();
  dl_vit vit;
  dl_eval_set train, test;
  dl_eval_flags_load(&spec, &ef, &vit, &train, &test);
  const int asked = nk;
  nk = 0;
  for (int i = 0; i < asked; i++)  // a tiny training set bounds k
    if (ks[i] <= train.n) ks[nk++] = ks[i];
  if (nk == 0) dl_die_input("knn: the training set has %d items; k-NN needs at least %d", train.n, kmin);
  double top1[8];
  dl_knn_eval(&train, &test, ks, nk, (float)temperature, top1, NULL);
  for (int i = 0; i < nk; i++)
    printf("knn k=%d top1=%.2f train=%d test=%d size=%d resize=%d\n", ks[i], top1[i], train.n, test.n, ef.size, ef.resize);
  printf("knn seconds=%.1f\n", dl_now_seconds() - t0);
  dl_eval_set_free(&train);
  dl_eval_set_free(&test);
  dl_vit_free(&vit);
  return 0;
}
