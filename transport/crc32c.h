// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and
// final xor 0xFFFFFFFF: the CRC of iSCSI, ext4 and SSE4.2's crc32
// instruction), written from the polynomial. The BLOCK payload checksum:
// on x86-64 with VPCLMULQDQ it folds 128 bytes per step with carry-less
// multiplies (tens of GB/s, several times xxHash64's rate on one core),
// elsewhere it uses the crc32 instruction or a table.
#ifndef DISTILL_TRANSPORT_CRC32C_H
#define DISTILL_TRANSPORT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// crc is the result over the preceding bytes (0 to start), so a message may
// be checksummed in pieces: dl_crc32c(dl_crc32c(0, a, n), b, m) is the CRC
// of a followed by b.
uint32_t dl_crc32c(uint32_t crc, const void *data, size_t n);

// The portable bit-at-a-time definition, for tests to compare with.
uint32_t dl_crc32c_reference(uint32_t crc, const void *data, size_t n);

#endif
