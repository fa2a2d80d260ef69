// Flags shared by every command that loads a backbone: overrides for what the
// loader would otherwise infer from the weights.
#ifndef DISTILL_CLI_MODEL_FLAGS_H
#define DISTILL_CLI_MODEL_FLAGS_H

#include <string.h>

#include "common/err.h"
#include "model/vit.h"

typedef struct dl_model_flags {
  int heads;
  const char *interp;
} dl_model_flags;

#define DL_MODEL_FLAGS_INIT {0, NULL}
#define DL_MODEL_FLAG_ENTRIES(mf)                                                                 \
  {"heads", DL_FLAG_INT, &(mf).heads, "N", "attention heads (default: embed dim / 64)"},          \
  {"interp", DL_FLAG_STRING, &(mf).interp, "MODE",                                                \
   "position-embedding interpolation: legacy or antialias (default: antialias with registers)"}

static inline void dl_model_flags_overrides(const dl_model_flags *mf, dl_vit_overrides *ov) {
  ov->heads = mf->heads;
  ov->interp = -1;
  if (mf->heads < 0) dl_die_input("--heads must be positive");
  if (!mf->interp) return;
  if (strcmp(mf->interp, "legacy") == 0) ov->interp = DL_INTERP_LEGACY;
  else if (strcmp(mf->interp, "antialias") == 0) ov->interp = DL_INTERP_ANTIALIAS;
  else dl_die_input("--interp must be legacy or antialias, got '%s'", mf->interp);
}

#endif
