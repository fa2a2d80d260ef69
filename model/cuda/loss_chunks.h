// How the CUDA prototype losses split a head's [rows, K] logits into chunks
// of rows (model/cuda/train_step_cuda.c): the student's logits and their
// gradient exist one chunk at a time, and no GEMM writes more than
// DL_LOSS_CHUNK_MAX_ELEMS elements (cuBLASLt's 2^31 output limit, issue 15).
// Plain C, so the sizing is tested on machines without a GPU and shared
// with `distill student --plan` (student/memory_plan.c).
#ifndef DISTILL_MODEL_CUDA_LOSS_CHUNKS_H
#define DISTILL_MODEL_CUDA_LOSS_CHUNKS_H

#include <stddef.h>

// Below 2^31: the largest element count one GEMM output may have.
#define DL_LOSS_CHUNK_MAX_ELEMS ((size_t)1 << 30)
// Bytes of one chunk of student logits by default: large enough that each
// chunk's GEMM fills an H100 (2048 rows at K = 65536 in bf16), small next
// to the teacher's one copy of the logits.
#define DL_LOSS_CHUNK_DEFAULT_BYTES ((size_t)256 << 20)

// Rows per chunk for `rows` rows of k logits of elem_bytes each within
// budget_bytes: at least 1 (a budget below one row still takes one row), at
// most rows, and never more than DL_LOSS_CHUNK_MAX_ELEMS / k. 0 when rows is 0.
int dl_loss_chunk_rows(int rows, int k, size_t elem_bytes, size_t budget_bytes);

// Chunks of chunk_rows rows that cover `rows` (the last may be shorter).
int dl_loss_chunk_count(int rows, int chunk_rows);

// The budget the CUDA trainer uses: DISTILL_CUDA_LOSS_CHUNK_BYTES from the
// environment when set to a positive number (the parity tests force several
// chunks with it), DL_LOSS_CHUNK_DEFAULT_BYTES otherwise.
size_t dl_loss_chunk_budget(void);

#endif
