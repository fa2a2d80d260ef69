// safetensors files: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range, then the raw data.
// The reader maps the file and validates every claim the header makes before
// anything reads the data, since weights files come from users.
#ifndef DISTILL_MODEL_SAFETENSORS_H
#define DISTILL_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/file_io.h"

#define DL_ST_MAX_DIMS 8
#define DL_ST_MAX_HEADER (100u << 20)  // the format's own limit is 100 MB

typedef enum dl_st_dtype {
  DL_ST_F64, DL_ST_F32, DL_ST_F16, DL_ST_BF16,
  DL_ST_I64, DL_ST_I32, DL_ST_I16, DL_ST_I8, DL_ST_U8, DL_ST_BOOL,
  DL_ST_NUM_DTYPES
} dl_st_dtype;

typedef struct dl_st_tensor {
  char *name;
  dl_st_dtype dtype;
  int ndim;
  int64_t shape[DL_ST_MAX_DIMS];
  int64_t numel;
  size_t offset, nbytes;  // within the data section
  const uint8_t *data;
} dl_st_tensor;

typedef struct dl_st_meta {
  char *key, *value;
} dl_st_meta;

typedef struct dl_safetensors {
  dl_mapped_file file;  // unmapped by dl_st_close when the reader owns it
  dl_st_tensor *tensors;
  int count;
  dl_st_meta *meta;  // the header's __metadata__ (string to string)
  int meta_count;
} dl_safetensors;

// Opens and validates a file; err says what is wrong and where.
int dl_st_open(const char *path, dl_safetensors *st, dl_err *err);
// The same over a buffer the caller owns (and keeps alive), e.g. for fuzzing.
int dl_st_parse(const uint8_t *buf, size_t n, dl_safetensors *st, dl_err *err);
void dl_st_close(dl_safetensors *st);

const dl_st_tensor *dl_st_find(const dl_safetensors *st, const char *name);
const char *dl_st_meta_get(const dl_safetensors *st, const char *key);
const char *dl_st_dtype_name(dl_st_dtype d);

// Converts any floating dtype to float32; fails (-1) for integer dtypes.
int dl_st_read_f32(const dl_st_tensor *t, float *out, dl_err *err);

// Writing: float32 tensors, with optional string metadata, atomically.
typedef struct dl_st_out {
  const char *name;
  int ndim;
  int64_t shape[DL_ST_MAX_DIMS];
  const float *data;
} dl_st_out;
int dl_st_write_f32(const char *path, const dl_st_out *tensors, int n,
                    const dl_st_meta *meta, int meta_count, dl_err *err);

#endif
