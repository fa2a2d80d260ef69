// Target blocks are large (about 1 MiB) and short-lived: ZeroMQ allocates a
// buffer for every message received and the decoder another for every tensor.
// With glibc's defaults each of them is a fresh mmap, zero-filled page by page
// and unmapped on free, which costs more CPU than moving the bytes. A process
// that sends or receives blocks calls this once, first thing, so such buffers
// are recycled from the heap instead. (The bench measured about 2x on a
// single 1 MiB-block stream.)
#ifndef DISTILL_TRANSPORT_MALLOC_TUNING_H
#define DISTILL_TRANSPORT_MALLOC_TUNING_H

void dl_transport_tune_malloc(void);

// Gives the heap's free pages back to the system (glibc's malloc_trim), at a
// point where a process's working set moves: the buffers it freed below the
// mmap threshold stay resident otherwise (the trim threshold above keeps them
// for reuse), e.g. the student's main-phase trainer after the switch to the
// high-resolution phase, whose larger buffers would not reuse most of them.
void dl_transport_release_free_memory(void);

#endif
