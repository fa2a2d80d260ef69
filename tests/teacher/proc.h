// Child processes for the teacher tests: `distill` subcommands started with
// posix_spawn, stdout to a file, stopped by pid (SIGTERM or SIGKILL).
#ifndef DISTILL_TESTS_TEACHER_PROC_H
#define DISTILL_TESTS_TEACHER_PROC_H

#include <stdint.h>
#include <sys/types.h>

#include "teacher/teacher_model.h"
#include "transport/student_client.h"

// Starts DISTILL_BIN with args (NULL-terminated, without argv[0]); stdout and
// stderr go to out_path (appended). Returns the pid, or -1.
pid_t proc_start(const char *const *args, const char *out_path);
// Sends sig, waits up to timeout_s for the exit; returns the exit status
// (128 + signal when killed), -1 when it did not end (then SIGKILLed).
int proc_stop(pid_t pid, int sig, double timeout_s);
// Runs to completion (at most timeout_s); returns the exit status.
int proc_run(const char *const *args, const char *out_path, double timeout_s);
// A student rank's configuration for these tests: one teacher (teachers[0]
// must outlive the client's creation), the teacher recipe's stream hash,
// 100 ms heartbeats, patience_ms of silence before failover (requests time
// out after 5x that), quiet.
void proc_student_config(dl_student_config *c, const char *const *teachers, const char *group, uint64_t stream_hash,
                         uint32_t resolution, uint64_t blocks, int window, int patience_ms);
// Writes a teacher recipe for the committed demo teacher (models/demo-teacher)
// on Fashion-MNIST's test split (blocks of 4 samples, 2 global crops of 56
// px, no local crops, batch 3, 2 workers) with the given target kind; returns
// the stream hash of its data and crops sections (0, with a message, if it
// cannot be written or read back).
uint64_t proc_write_demo_recipe(const char *path, const char *target);
// Opens the recipe's teacher model on `backend` (NULL: the CPU), computes
// block 3 at the recipe's global size into out, closes the model.
int proc_one_block(const dl_recipe *r, const dl_forward_backend *backend, dl_target_block *out, dl_err *err);
// The value of `key=` in the last line of the file that has it; -1 if none.
long long proc_find_metric(const char *path, const char *key);

#endif
