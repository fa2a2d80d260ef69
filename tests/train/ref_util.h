// Helpers shared by the training tests: reading reference tensors and
// comparing with a relative-error tolerance (the check prints the figure).
#ifndef DISTILL_TESTS_TRAIN_REF_UTIL_H
#define DISTILL_TESTS_TRAIN_REF_UTIL_H

#include <stddef.h>

#include "model/safetensors.h"
#include "model/vit_config.h"

// A malloc'd float32 copy of tensor `name` (NULL when absent); numel may be NULL.
float *ref_read(const dl_safetensors *st, const char *name, size_t *numel);
// CHECKs that `name` exists with n values and ||got - ref|| / ||ref|| <= tol;
// returns the relative error (or 1e30 when missing).
double ref_compare(const dl_safetensors *st, const char *name, const float *got, size_t n, double tol);
// Copies prefix.NAME into dst at each entry's offset for every entry of the
// layout that the file holds with the entry's size (entries of no size are
// skipped); returns how many.
int ref_load_layout(const dl_safetensors *st, const char *prefix, const dl_vit_layout *l, float *dst);
// A deterministic uniform [-1, 1) generator for test inputs.
float ref_rand(unsigned long long *state);

#endif
