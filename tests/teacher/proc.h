// Child processes for the teacher tests: `distill` subcommands started with
// posix_spawn, stdout to a file, stopped by pid (SIGTERM or SIGKILL).
#ifndef DISTILL_TESTS_TEACHER_PROC_H
#define DISTILL_TESTS_TEACHER_PROC_H

#include <sys/types.h>

// Starts DISTILL_BIN with args (NULL-terminated, without argv[0]); stdout and
// stderr go to out_path (appended). Returns the pid, or -1.
pid_t proc_start(const char *const *args, const char *out_path);
// Sends sig, waits up to timeout_s for the exit; returns the exit status
// (128 + signal when killed), -1 when it did not end (then SIGKILLed).
int proc_stop(pid_t pid, int sig, double timeout_s);
// Runs to completion (at most timeout_s); returns the exit status.
int proc_run(const char *const *args, const char *out_path, double timeout_s);
// The value of `key=` in the last line of the file that has it; -1 if none.
long long proc_find_metric(const char *path, const char *key);

#endif
