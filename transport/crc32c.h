// CRC32C (Castagnoli polynomial 0x1EDC6F41, reflected, initial value and
// final xor 0xFFFFFFFF: the CRC of iSCSI, ext4 and SSE4.2's crc32
// instruction), written from the polynomial. The BLOCK payload checksum:
// on x86-64 it folds with carry-less multiplies (VPCLMULQDQ, 128 bytes per
// step, or else PCLMULQDQ, 64 bytes per step: tens of GB/s, several times
// xxHash64's rate on one core), elsewhere it uses the crc32 instruction or a
// table.
#ifndef DISTILL_TRANSPORT_CRC32C_H
#define DISTILL_TRANSPORT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// crc is the result over the preceding bytes (0 to start), so a message may
// be checksummed in pieces: dl_crc32c(dl_crc32c(0, a, n), b, m) is the CRC
// of a followed by b.
uint32_t dl_crc32c(uint32_t crc, const void *data, size_t n);

// Moves a CRC past m bytes (multiplies it by x^(8m) mod P), so the pieces of a
// message may be checksummed in any order and joined:
//   dl_crc32c(c, b, m) == dl_crc32c(0, b, m) ^ dl_crc32c_shift(c, m)
// so a CRC over b computed while b is produced can take its seed afterwards.
uint32_t dl_crc32c_shift(uint32_t crc, uint64_t n);

// Which implementation dl_crc32c uses: "vpclmul", "clmul", "crc32" or "table".
const char *dl_crc32c_implementation(void);
// The CRC by the implementation of that name, for tests: 0, or -1 when this
// CPU lacks it.
int dl_crc32c_named(const char *name, uint32_t crc, const void *data, size_t n, uint32_t *out);

// The portable bit-at-a-time definition, for tests to compare with.
uint32_t dl_crc32c_reference(uint32_t crc, const void *data, size_t n);

#endif
