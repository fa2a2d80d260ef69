// CURVE security: key files written by `distill keygen` (z85 text, 40
// characters) and the teacher's ZAP handler, which admits only students whose
// public keys are on its allow-list.
#ifndef DISTILL_TRANSPORT_CURVE_H
#define DISTILL_TRANSPORT_CURVE_H

#include <stdint.h>

#include "common/err.h"

#define DL_Z85_KEY_LEN 40
typedef struct dl_curve_key {
  char z85[DL_Z85_KEY_LEN + 1];
} dl_curve_key;

// Writes NAME.key (secret, mode 0600) and NAME.pub (public), atomically.
int dl_curve_keygen(const char *name, dl_err *err);
// Reads one key file (surrounding whitespace allowed). Returns 0 or -1.
int dl_curve_read_key(const char *path, dl_curve_key *out, dl_err *err);
// The public key of a secret key.
int dl_curve_public_of(const dl_curve_key *secret, dl_curve_key *pub, dl_err *err);
// Reads an allow-list: one z85 public key per line, '#' comments, blank lines.
int dl_curve_read_allow_list(const char *path, dl_curve_key **keys, int *n, dl_err *err);

// A ZAP handler on ctx (bind before the ROUTER binds). Keys are copied.
typedef struct dl_zap_handler dl_zap_handler;
dl_zap_handler *dl_zap_start(void *ctx, const dl_curve_key *allowed, int n, dl_err *err);
void dl_zap_stop(dl_zap_handler *z);
uint64_t dl_zap_refused(const dl_zap_handler *z);
uint64_t dl_zap_admitted(const dl_zap_handler *z);

#endif
