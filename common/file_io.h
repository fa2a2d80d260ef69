// Whole-file reads and crash-safe writes (temporary file, fsync, rename), so a
// killed process never leaves a half-written output under the final name.
#ifndef DISTILL_COMMON_FILE_IO_H
#define DISTILL_COMMON_FILE_IO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

// Read-only mapping of a whole file. An empty file maps to data == NULL, size 0.
typedef struct dl_mapped_file {
  const uint8_t *data;
  size_t size;
} dl_mapped_file;

int dl_map_file(const char *path, dl_mapped_file *out, dl_err *err);
void dl_unmap_file(dl_mapped_file *f);

// Writes `n` chunks atomically to `path`: PATH.tmp.PID, fsync, rename, fsync dir.
typedef struct dl_chunk {
  const void *data;
  size_t size;
} dl_chunk;
int dl_write_file_atomic(const char *path, const dl_chunk *chunks, int n, dl_err *err);

#endif
