// distill linear: a linear probe on a backbone's frozen CLS features (eval/linear.h).
#include <stdio.h>

#include "cli/commands.h"
#include "cli/eval_flags.h"
#include "common/timing.h"
#include "eval/linear.h"

int cmd_linear(int argc, char **argv) {
  dl_eval_flags ef = DL_EVAL_FLAGS_INIT;
  dl_linear_config lc = dl_linear_config_default();
  double lr = lc.lr, wd = lc.weight_decay;
  const dl_flag flags[] = {
      DL_EVAL_FLAG_ENTRIES(ef),
      {"epochs", DL_FLAG_INT, &lc.epochs, "N", "passes over the training features (default 20)"},
      {"lr", DL_FLAG_DOUBLE, &lr, "LR", "SGD learning rate at the start of the cosine (default 0.1)"},
      {"weight-decay", DL_FLAG_DOUBLE, &wd, "WD", "L2 penalty on the weights (default 0)"},
  };
  const dl_command_spec spec = {
      "linear", "--weights W --train DATASET --test DATASET [--limit-train N --limit-test N] [--size PX]",
      "Trains a linear classifier on the frozen CLS features of the training set (standardized,\n"
      "SGD with momentum 0.9, cosine learning rate) and prints its top-1 accuracy on the test set.",
      flags, (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  if (lc.epochs <= 0 || lc.epochs > 100000) dl_die_input("linear: --epochs must lie in [1, 100000]");
  if (!(lr > 0.0 && lr <= 100.0) || !(wd >= 0.0 && wd <= 100.0)) dl_die_input("linear: --lr must lie in (0, 100], --weight-decay in [0, 100]");
  lc.lr = (float)lr;
  lc.weight_decay = (float)wd;
  const double t0 = dl_now_seconds();
  dl_vit vit;
  dl_eval_set train, test;
  dl_eval_flags_load(&spec, &ef, &vit, &train, &test);
  double loss;
  const double top1 = dl_linear_probe(&train, &test, &lc, &loss);
  printf("linear top1=%.2f train_loss=%.4f epochs=%d train=%d test=%d size=%d seconds=%.1f\n", top1, loss, lc.epochs,
         train.n, test.n, ef.size, dl_now_seconds() - t0);
  dl_eval_set_free(&train);
  dl_eval_set_free(&test);
  dl_vit_free(&vit);
  return 0;
}
