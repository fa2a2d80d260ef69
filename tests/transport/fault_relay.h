// A small ZeroMQ relay for fault tests: students connect to its ROUTER, it
// talks to the teacher through one DEALER, and on the way it corrupts,
// truncates, delays, reorders and duplicates messages, deterministically
// (seeded), counting every fault it made. One student rank at a time.
#ifndef DISTILL_TESTS_TRANSPORT_FAULT_RELAY_H
#define DISTILL_TESTS_TRANSPORT_FAULT_RELAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fault_counts {
  uint64_t forwarded_down, forwarded_up;
  uint64_t corrupted_payload, corrupted_envelope, truncated, dropped_payload_frame;
  uint64_t delayed, reordered, duplicated;
  uint64_t corrupted_up, duplicated_up;
} fault_counts;

typedef struct fault_relay fault_relay;

// Faults are applied to a fraction `rate` of the messages (split among the
// kinds; half that rate on the way up); rate 0 makes a transparent relay.
fault_relay *fault_relay_start(const char *teacher_endpoint, double rate, uint64_t seed);
const char *fault_relay_endpoint(const fault_relay *r);
// Stops the relay thread and returns what it did.
fault_counts fault_relay_stop(fault_relay *r);

#endif
