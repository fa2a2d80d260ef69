// A file rendezvous for a small blob (the NCCL unique id): rank 0 publishes
// it, the other ranks wait for it. The file is written under a temporary name,
// fsynced and renamed, so a reader never sees half a file; it carries a
// session tag so that a file left by an earlier run is never taken for this
// one's. Pure host logic (no NCCL), tested on the CPU.
#ifndef DISTILL_MODEL_CUDA_RENDEZVOUS_H
#define DISTILL_MODEL_CUDA_RENDEZVOUS_H

#include <stddef.h>

#include "common/err.h"

#define DL_RENDEZVOUS_SESSION_MAX 128

int dl_rendezvous_publish(const char *path, const char *session, const void *blob, size_t n, dl_err *err);
// Polls until `path` holds a blob of n bytes for `session`; fails after
// timeout_s seconds, naming the path and what it found.
int dl_rendezvous_wait(const char *path, const char *session, void *blob, size_t n, double timeout_s, dl_err *err);

// How long a rank waits on its NCCL group (communicator setup, a step's
// collectives) before it aborts the communicator and stops with one line:
// DISTILL_NCCL_TIMEOUT_S's value `text` (seconds, > 0) or, when NULL or
// empty, DL_NCCL_TIMEOUT_DEFAULT_S. -1 when text is not such a number.
#define DL_NCCL_TIMEOUT_DEFAULT_S 600.0
int dl_nccl_timeout_parse(const char *text, double *seconds, dl_err *err);

#endif
