// `distill teacher --synthetic` as a child process, for the transport tests
// that kill, restart or move teachers (test_failover, test_discovery).
#ifndef DISTILL_TESTS_TRANSPORT_TEACHER_PROCESS_H
#define DISTILL_TESTS_TRANSPORT_TEACHER_PROCESS_H

#include <stdbool.h>
#include <sys/types.h>

// Starts DISTILL_BIN teacher on the test stream (16,4; blocks of 4; 2 crops;
// 100 ms heartbeats, 500 ms dead time) bound to endpoint with this id. Its
// stdout (the metrics line) goes to out_path; its stderr (the event log) to
// log_path, or nowhere when log_path is NULL (then it runs --quiet). -1 on failure.
pid_t test_teacher_spawn(const char *bin, const char *endpoint, const char *id, const char *out_path,
                         const char *log_path);
// Stops it with SIGTERM and returns "computed=N" from its metrics line (-1: none).
long test_teacher_terminate(pid_t pid, const char *out_path);
// Lines of the file that contain needle.
int test_count_lines(const char *path, const char *needle);

#endif
