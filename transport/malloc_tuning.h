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

#endif
