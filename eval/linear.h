// A linear probe on frozen features: one linear layer (dim -> classes) on the
// backbone's CLS token, trained with softmax cross-entropy by mini-batch SGD
// with momentum 0.9 and a cosine learning rate, on the CPU. Deterministic
// for a seed (the shuffling order).
#ifndef DISTILL_EVAL_LINEAR_H
#define DISTILL_EVAL_LINEAR_H

#include <stdint.h>

#include "eval/features.h"

typedef struct dl_linear_config {
  int epochs;          // 20
  int batch;           // 256
  float lr;            // 0.1 (at the start of the cosine)
  float weight_decay;  // 0
  uint64_t seed;
} dl_linear_config;

dl_linear_config dl_linear_config_default(void);

// Trains on train, returns test top-1 accuracy in percent (and the final
// training loss in *train_loss when not NULL). Standardizes both sets with
// the training set's per-dimension mean and standard deviation (in place).
double dl_linear_probe(dl_eval_set *train, dl_eval_set *test, const dl_linear_config *cfg, double *train_loss);

#endif
