// xxHash64 (seed 0 unless given), written from the published algorithm: the
// checksum every BLOCK payload and every target-store index carries. It is the
// same function zstd uses for its frame checksums, which the unit test uses as
// an independent reference.
#ifndef DISTILL_TRANSPORT_XXHASH64_H
#define DISTILL_TRANSPORT_XXHASH64_H

#include <stddef.h>
#include <stdint.h>

uint64_t dl_xxhash64(const void *data, size_t len, uint64_t seed);

#endif
