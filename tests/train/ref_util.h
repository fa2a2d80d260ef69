// Helpers shared by the training tests: reading reference tensors and
// comparing with a relative-error tolerance (the check prints the figure).
#ifndef DISTILL_TESTS_TRAIN_REF_UTIL_H
#define DISTILL_TESTS_TRAIN_REF_UTIL_H

#include <stddef.h>

#include "model/safetensors.h"

// A malloc'd float32 copy of tensor `name` (NULL when absent); numel may be NULL.
float *ref_read(const dl_safetensors *st, const char *name, size_t *numel);
// CHECKs that `name` exists with n values and ||got - ref|| / ||ref|| <= tol;
// returns the relative error (or 1e30 when missing).
double ref_compare(const dl_safetensors *st, const char *name, const float *got, size_t n, double tol);
// A deterministic uniform [-1, 1) generator for test inputs.
float ref_rand(unsigned long long *state);

#endif
