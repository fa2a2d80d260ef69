// SHA-256 (FIPS 180-4), for the catalogue of exported checkpoints: the digest
// users compare with `sha256sum`. Streaming, so a file is hashed in pieces.
#ifndef DISTILL_COMMON_SHA256_H
#define DISTILL_COMMON_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct dl_sha256 {
  uint32_t h[8];
  uint64_t length;  // bytes hashed so far
  uint8_t block[64];
  size_t fill;      // bytes waiting in block
} dl_sha256;

void dl_sha256_init(dl_sha256 *s);
void dl_sha256_update(dl_sha256 *s, const void *data, size_t n);
void dl_sha256_final(dl_sha256 *s, uint8_t digest[32]);
// The digest as 64 lowercase hex digits and a NUL.
void dl_sha256_hex(const uint8_t digest[32], char hex[65]);
// The digest (hex) of n bytes in memory, e.g. a file already mapped.
void dl_sha256_bytes(const void *data, size_t n, char hex[65]);
// A whole file's digest (hex) and size; -1 with a message naming the file.
int dl_sha256_file(const char *path, char hex[65], uint64_t *size, dl_err *err);

#endif
