#include "transport/malloc_tuning.h"

#include <malloc.h>

void dl_transport_tune_malloc(void) {
#ifdef M_MMAP_THRESHOLD
  mallopt(M_MMAP_THRESHOLD, 64 << 20);  // blocks up to 64 MiB come from the heap
  mallopt(M_TRIM_THRESHOLD, 512 << 20); // and freed ones stay there for reuse
#endif
}

void dl_transport_release_free_memory(void) {
#ifdef M_MMAP_THRESHOLD
  malloc_trim(0);
#endif
}
