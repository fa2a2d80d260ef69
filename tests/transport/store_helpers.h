// Shared by the store tests (target store, spill store): encoded blocks of
// the synthetic stream, compared field by field, and a scratch directory.
#ifndef DISTILL_TESTS_TRANSPORT_STORE_HELPERS_H
#define DISTILL_TESTS_TRANSPORT_STORE_HELPERS_H

#include <stdint.h>

#include "transport/encoded_block.h"

// Block `block` of the synthetic stream at `resolution`, encoded with codec
// (e.g. "f16") and zstd_level; one reference. Aborts the test on failure.
dl_encoded_block *test_encoded_block(uint64_t block, uint32_t resolution, const char *codec,
                                     int zstd_level);
// 1 when a and b are byte-identical: ids, sample range, checksum and its
// kind, tensor table and payload.
int test_same_encoded(const dl_encoded_block *a, const dl_encoded_block *b);
// Flips one byte of a file at offset from its end (negative) or start.
void test_flip_byte(const char *path, long offset, int whence);
// How many entries of dir have `part` in their name.
int test_count_files(const char *dir, const char *part);
// rm -rf of a test's scratch directory.
void test_remove_tree(const char *dir);

#endif
