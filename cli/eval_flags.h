// Flags shared by `distill knn` and `distill linear`: the backbone, the two
// datasets, subsets and the evaluation transform's size.
#ifndef DISTILL_CLI_EVAL_FLAGS_H
#define DISTILL_CLI_EVAL_FLAGS_H

#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "cli/flags.h"
#include "cli/model_flags.h"
#include "common/err.h"
#include "eval/features.h"

typedef struct dl_eval_flags {
  const char *weights, *train, *test;
  int limit_train, limit_test, size, resize, batch;
  dl_model_flags mf;
} dl_eval_flags;

#define DL_EVAL_FLAGS_INIT {NULL, NULL, NULL, 0, 0, 224, 0, 64, DL_MODEL_FLAGS_INIT}
#define DL_EVAL_FLAG_ENTRIES(ef)                                                                                \
  {"weights", DL_FLAG_STRING, &(ef).weights, "FILE", "backbone weights (.safetensors)"},                        \
  {"train", DL_FLAG_STRING, &(ef).train, "DATASET", "labelled training set, KIND:PATH (e.g. idx:DIR,split=train)"}, \
  {"test", DL_FLAG_STRING, &(ef).test, "DATASET", "labelled test set, KIND:PATH"},                              \
  {"limit-train", DL_FLAG_INT, &(ef).limit_train, "N", "use N training items, evenly spaced (default: all)"},   \
  {"limit-test", DL_FLAG_INT, &(ef).limit_test, "N", "use N test items, evenly spaced (default: all)"},        \
  {"size", DL_FLAG_INT, &(ef).size, "PX", "center-crop size, a multiple of the patch size (default 224)"},      \
  {"resize", DL_FLAG_INT, &(ef).resize, "PX", "shorter side before the crop (default: size * 256 / 224)"},      \
  {"batch", DL_FLAG_INT, &(ef).batch, "N", "images per forward pass (default 64)"},                             \
  DL_MODEL_FLAG_ENTRIES((ef).mf)

// A trainer's evaluation process (student/export_eval.h) is started with
// DISTILL_DIE_WITH_PARENT=PID: it is killed when that trainer goes, and
// leaves at once if the trainer is already gone.
static inline void dl_eval_die_with_parent(void) {
  const char *pid = getenv("DISTILL_DIE_WITH_PARENT");
  if (!pid || !*pid) return;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if ((long)getppid() != atol(pid)) _exit(1);
}

// Checks the flags, loads the backbone and both feature sets; exits 2 with one line on bad input.
static inline void dl_eval_flags_load(const dl_command_spec *spec, dl_eval_flags *ef, dl_vit *vit, dl_eval_set *train,
                                      dl_eval_set *test) {
  dl_eval_die_with_parent();
  dl_require_flag(spec, "weights", ef->weights);
  dl_require_flag(spec, "train", ef->train);
  dl_require_flag(spec, "test", ef->test);
  if (ef->limit_train < 0 || ef->limit_test < 0) dl_die_input("%s: --limit-train and --limit-test must be >= 0", spec->name);
  if (ef->size <= 0 || ef->size > 4096 || ef->resize < 0 || ef->resize > 8192 || ef->batch <= 0 || ef->batch > 4096)
    dl_die_input("%s: --size, --resize and --batch must be positive (size <= 4096, batch <= 4096)", spec->name);
  if (ef->resize == 0) ef->resize = dl_eval_resize_for(ef->size);
  if (ef->resize < ef->size) dl_die_input("%s: --resize %d is below --size %d", spec->name, ef->resize, ef->size);
  dl_err err;
  dl_vit_overrides ov;
  dl_model_flags_overrides(&ef->mf, &ov);
  if (dl_vit_load(ef->weights, &ov, vit, NULL, &err)) dl_die_input("%s", err.msg);
  if (ef->size % vit->cfg.patch) dl_die_input("%s: --size %d is not a multiple of the patch size %d", spec->name, ef->size, vit->cfg.patch);
  if (dl_eval_load_pair(vit, ef->train, ef->test, ef->limit_train, ef->limit_test, ef->resize, ef->size, ef->batch,
                        train, test, &err))
    dl_die_input("%s: %s", spec->name, err.msg);
}

#endif
