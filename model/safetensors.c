#include "model/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/json_min.h"

static const struct {
  const char *name;
  size_t size;
} kDtypes[DL_ST_NUM_DTYPES] = {
    [DL_ST_F64] = {"F64", 8}, [DL_ST_F32] = {"F32", 4}, [DL_ST_F16] = {"F16", 2},
    [DL_ST_BF16] = {"BF16", 2}, [DL_ST_I64] = {"I64", 8}, [DL_ST_I32] = {"I32", 4},
    [DL_ST_I16] = {"I16", 2}, [DL_ST_I8] = {"I8", 1}, [DL_ST_U8] = {"U8", 1},
    [DL_ST_BOOL] = {"BOOL", 1},
};

const char *dl_st_dtype_name(dl_st_dtype d) { return d < DL_ST_NUM_DTYPES ? kDtypes[d].name : "?"; }

static int dtype_from_name(const char *s) {
  for (int i = 0; i < DL_ST_NUM_DTYPES; i++)
    if (strcmp(s, kDtypes[i].name) == 0) return i;
  return -1;
}

void dl_st_close(dl_safetensors *st) {
  for (int i = 0; i < st->count; i++) free(st->tensors[i].name);
  for (int i = 0; i < st->meta_count; i++) {
    free(st->meta[i].key);
    free(st->meta[i].value);
  }
  free(st->tensors);
  free(st->meta);
  dl_unmap_file(&st->file);
  memset(st, 0, sizeof *st);
}

// ---- header parsing ---------------------------------------------------------

typedef struct header_parser {
  dl_json json;
  dl_safetensors *st;
  int cap, meta_cap;
  dl_err *err;
} header_parser;

static int header_error(header_parser *h, const char *what) {
  return dl_fail(h->err, "invalid header JSON at byte %zu: %s", dl_json_offset(&h->json) + 8, what);
}

static int parse_metadata(header_parser *h) {
  dl_json *j = &h->json;
  if (!dl_json_expect(j, '{')) return header_error(h, j->error);
  if (dl_json_accept(j, '}')) return 0;
  do {
    char *k = dl_json_string(j);
    if (!k) return header_error(h, j->error);
    char *v = NULL;
    if (dl_json_expect(j, ':')) v = dl_json_string(j);
    if (!v) {
      free(k);
      return header_error(h, j->error ? j->error : "__metadata__ values must be strings");
    }
    dl_safetensors *st = h->st;
    if (st->meta_count == h->meta_cap) {
      h->meta_cap = h->meta_cap ? 2 * h->meta_cap : 8;
      st->meta = realloc(st->meta, (size_t)h->meta_cap * sizeof *st->meta);
      if (!st->meta) abort();
    }
    st->meta[st->meta_count++] = (dl_st_meta){k, v};
  } while (dl_json_accept(j, ','));
  return dl_json_expect(j, '}') ? 0 : header_error(h, j->error);
}

static int parse_shape(header_parser *h, dl_st_tensor *t) {
  dl_json *j = &h->json;
  if (!dl_json_expect(j, '[')) return header_error(h, j->error);
  t->ndim = 0;
  t->numel = 1;
  if (dl_json_accept(j, ']')) return 0;
  do {
    uint64_t d;
    if (!dl_json_uint(j, &d)) return header_error(h, j->error);
    if (t->ndim == DL_ST_MAX_DIMS)
      return dl_fail(h->err, "tensor '%s': more than %d dimensions", t->name, DL_ST_MAX_DIMS);
    if (d > 0 && (uint64_t)t->numel > (1ull << 50) / d)
      return dl_fail(h->err, "tensor '%s': shape too large", t->name);
    t->shape[t->ndim++] = (int64_t)d;
    t->numel *= (int64_t)d;
  } while (dl_json_accept(j, ','));
  return dl_json_expect(j, ']') ? 0 : header_error(h, j->error);
}

static int parse_offsets(header_parser *h, uint64_t off[2]) {
  dl_json *j = &h->json;
  if (!dl_json_expect(j, '[') || !dl_json_uint(j, &off[0]) || !dl_json_expect(j, ',') ||
      !dl_json_uint(j, &off[1]) || !dl_json_expect(j, ']'))
    return header_error(h, j->error);
  return 0;
}

// One tensor entry: {"dtype": "F32", "shape": [..], "data_offsets": [a, b]}.
static int parse_tensor(header_parser *h, dl_st_tensor *t) {
  dl_json *j = &h->json;
  bool have_dtype = false, have_shape = false, have_offsets = false;
  uint64_t off[2] = {0, 0};
  if (!dl_json_expect(j, '{')) return header_error(h, j->error);
  if (!dl_json_accept(j, '}')) {
    do {
      char *key = dl_json_string(j);
      if (!key || !dl_json_expect(j, ':')) {
        free(key);
        return header_error(h, j->error);
      }
      int rc = 0;
      if (strcmp(key, "dtype") == 0) {
        char *d = dl_json_string(j);
        int code = d ? dtype_from_name(d) : -1;
        if (!d) rc = header_error(h, j->error);
        else if (code < 0) rc = dl_fail(h->err, "tensor '%s': unknown dtype '%s'", t->name, d);
        free(d);
        t->dtype = (dl_st_dtype)code;
        have_dtype = true;
      } else if (strcmp(key, "shape") == 0) {
        rc = parse_shape(h, t);
        have_shape = true;
      } else if (strcmp(key, "data_offsets") == 0) {
        rc = parse_offsets(h, off);
        have_offsets = true;
      } else {
        rc = dl_fail(h->err, "tensor '%s': unknown field '%s'", t->name, key);
      }
      free(key);
      if (rc) return rc;
    } while (dl_json_accept(j, ','));
    if (!dl_json_expect(j, '}')) return header_error(h, j->error);
  }
  if (!have_dtype || !have_shape || !have_offsets)
    return dl_fail(h->err, "tensor '%s': needs dtype, shape and data_offsets", t->name);
  if (off[1] < off[0])
    return dl_fail(h->err, "tensor '%s': data_offsets [%llu, %llu] end before they begin", t->name,
                   (unsigned long long)off[0], (unsigned long long)off[1]);
  t->offset = (size_t)off[0];
  t->nbytes = (size_t)(off[1] - off[0]);
  uint64_t expect = (uint64_t)t->numel * kDtypes[t->dtype].size;
  if (expect != t->nbytes)
    return dl_fail(h->err, "tensor '%s': shape and dtype give %llu bytes but data_offsets span %zu",
                   t->name, (unsigned long long)expect, t->nbytes);
  return 0;
}

static int parse_entries(header_parser *h) {
  dl_json *j = &h->json;
  dl_safetensors *st = h->st;
  if (!dl_json_expect(j, '{')) return header_error(h, j->error);
  if (dl_json_accept(j, '}')) return 0;
  do {
    char *name = dl_json_string(j);
    if (!name || !dl_json_expect(j, ':')) {
      free(name);
      return header_error(h, j->error);
    }
    if (strcmp(name, "__metadata__") == 0) {
      free(name);
      if (parse_metadata(h)) return -1;
      continue;
    }
    if (dl_st_find(st, name)) {
      int rc = dl_fail(h->err, "tensor '%s' appears twice", name);
      free(name);
      return rc;
    }
    if (st->count == h->cap) {
      h->cap = h->cap ? 2 * h->cap : 64;
      st->tensors = realloc(st->tensors, (size_t)h->cap * sizeof *st->tensors);
      if (!st->tensors) abort();
    }
    dl_st_tensor *t = &st->tensors[st->count++];
    memset(t, 0, sizeof *t);
    t->name = name;
    if (parse_tensor(h, t)) return -1;
  } while (dl_json_accept(j, ','));
  if (!dl_json_expect(j, '}')) return header_error(h, j->error);
  dl_json_skip_ws(j);
  if (j->p != j->end) return header_error(h, "trailing characters after the header object");
  return 0;
}

// ---- layout checks ----------------------------------------------------------

static int by_offset(const void *a, const void *b) {
  const dl_st_tensor *x = *(const dl_st_tensor *const *)a, *y = *(const dl_st_tensor *const *)b;
  if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
  return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

// Every tensor inside the data section, none overlapping, no holes: what the
// format requires, and what lets us trust every pointer we hand out.
static int check_layout(dl_safetensors *st, const uint8_t *data, size_t data_size, dl_err *err) {
  for (int i = 0; i < st->count; i++) {
    dl_st_tensor *t = &st->tensors[i];
    if (t->offset > data_size || t->nbytes > data_size - t->offset)
      return dl_fail(err, "tensor '%s': data_offsets [%zu, %zu] past the end of the data (%zu bytes)",
                     t->name, t->offset, t->offset + t->nbytes, data_size);
    t->data = data + t->offset;
  }
  dl_st_tensor **order = dl_malloc((size_t)(st->count ? st->count : 1) * sizeof *order);
  int rc = 0;
  for (int i = 0; i < st->count; i++) order[i] = &st->tensors[i];
  qsort(order, (size_t)st->count, sizeof *order, by_offset);
  size_t end = 0;
  for (int i = 0; i < st->count && rc == 0; i++) {
    const dl_st_tensor *t = order[i];
    if (t->offset < end)
      rc = dl_fail(err, "tensor '%s': data_offsets [%zu, %zu] overlap the previous tensor", t->name,
                   t->offset, t->offset + t->nbytes);
    else if (t->offset > end)
      rc = dl_fail(err, "tensor '%s': a gap of %zu bytes before it in the data", t->name, t->offset - end);
    end = t->offset + t->nbytes;
  }
  if (rc == 0 && end != data_size)
    rc = dl_fail(err, "%zu bytes of data after the last tensor", data_size - end);
  free(order);
  return rc;
}

int dl_st_parse(const uint8_t *buf, size_t n, dl_safetensors *st, dl_err *err) {
  memset(st, 0, sizeof *st);
  if (n < 8) return dl_fail(err, "file too short for a safetensors header (%zu bytes)", n);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
  if (hlen > n - 8)
    return dl_fail(err, "header length %llu runs past the end of the file (%zu bytes)",
                   (unsigned long long)hlen, n);
  if (hlen > DL_ST_MAX_HEADER) return dl_fail(err, "header length %llu over the 100 MB limit", (unsigned long long)hlen);
  if (hlen < 2) return dl_fail(err, "header length %llu is too small for a JSON object", (unsigned long long)hlen);
  header_parser h = {.st = st, .err = err};
  dl_json_init(&h.json, (const char *)buf + 8, (size_t)hlen);
  int rc = parse_entries(&h);
  if (rc == 0) rc = check_layout(st, buf + 8 + hlen, n - 8 - (size_t)hlen, err);
  if (rc != 0) dl_st_close(st);  // st->file is still empty: the caller owns buf
  return rc;
}

int dl_st_open(const char *path, dl_safetensors *st, dl_err *err) {
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) return -1;
  if (dl_st_parse(f.data, f.size, st, err)) {
    dl_unmap_file(&f);
    return dl_fail_prefix(err, path);
  }
  st->file = f;
  return 0;
}

const dl_st_tensor *dl_st_find(const dl_safetensors *st, const char *name) {
  for (int i = 0; i < st->count; i++)
    if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
  return NULL;
}

const char *dl_st_meta_get(const dl_safetensors *st, const char *key) {
  for (int i = 0; i < st->meta_count; i++)
    if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
  return NULL;
}

// ---- conversion -------------------------------------------------------------

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float v;
  if (exp == 0) v = ldexpf((float)mant, -24);                       // subnormal or zero
  else if (exp == 31) v = mant ? NAN : INFINITY;
  else v = ldexpf((float)(mant | 0x400), (int)exp - 25);
  return sign ? -v : v;
}

static float bf16_to_float(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float v;
  memcpy(&v, &bits, 4);
  return v;
}

int dl_st_read_f32(const dl_st_tensor *t, float *out, dl_err *err) {
  const uint8_t *p = t->data;
  switch (t->dtype) {
    case DL_ST_F32:
      memcpy(out, p, t->nbytes);
      return 0;
    case DL_ST_F64:
      for (int64_t i = 0; i < t->numel; i++) {
        double d;
        memcpy(&d, p + 8 * i, 8);
        out[i] = (float)d;
      }
      return 0;
    case DL_ST_F16:
    case DL_ST_BF16:
      for (int64_t i = 0; i < t->numel; i++) {
        uint16_t u = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
        out[i] = t->dtype == DL_ST_F16 ? half_to_float(u) : bf16_to_float(u);
      }
      return 0;
    default:
      return dl_fail(err, "tensor '%s' has dtype %s, not a floating-point type", t->name,
                     dl_st_dtype_name(t->dtype));
  }
}

// ---- writing ----------------------------------------------------------------

static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
  if (*len + n + 1 > *cap) {
    while (*len + n + 1 > *cap) *cap = *cap ? 2 * *cap : 4096;
    *buf = realloc(*buf, *cap);
    if (!*buf) abort();
  }
  memcpy(*buf + *len, s, n);
  *len += n;
  (*buf)[*len] = '\0';
}

static void append_json_string(char **buf, size_t *len, size_t *cap, const char *s) {
  append(buf, len, cap, "\"", 1);
  for (; *s; s++) {
    char esc[8];
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') snprintf(esc, sizeof esc, "\\%c", c);
    else if (c < 0x20) snprintf(esc, sizeof esc, "\\u%04x", c);
    else { esc[0] = (char)c; esc[1] = 0; }
    append(buf, len, cap, esc, strlen(esc));
  }
  append(buf, len, cap, "\"", 1);
}

int dl_st_write_f32(const char *path, const dl_st_out *tensors, int n, const dl_st_meta *meta,
                    int meta_count, dl_err *err) {
  char *hdr = NULL, num[64];
  size_t len = 0, cap = 0, offset = 0;
  append(&hdr, &len, &cap, "{", 1);
  if (meta_count > 0) {
    append(&hdr, &len, &cap, "\"__metadata__\":{", 16);
    for (int i = 0; i < meta_count; i++) {
      if (i) append(&hdr, &len, &cap, ",", 1);
      append_json_string(&hdr, &len, &cap, meta[i].key);
      append(&hdr, &len, &cap, ":", 1);
      append_json_string(&hdr, &len, &cap, meta[i].value);
    }
    append(&hdr, &len, &cap, "}", 1);
  }
  size_t *sizes = dl_malloc((size_t)(n ? n : 1) * sizeof *sizes);
  for (int i = 0; i < n; i++) {
    int64_t numel = 1;
    if (i || meta_count) append(&hdr, &len, &cap, ",", 1);
    append_json_string(&hdr, &len, &cap, tensors[i].name);
    append(&hdr, &len, &cap, ":{\"dtype\":\"F32\",\"shape\":[", 25);
    for (int d = 0; d < tensors[i].ndim; d++) {
      numel *= tensors[i].shape[d];
      int k = snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)tensors[i].shape[d]);
      append(&hdr, &len, &cap, num, (size_t)k);
    }
    sizes[i] = (size_t)numel * 4;
    int k = snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", offset, offset + sizes[i]);
    append(&hdr, &len, &cap, num, (size_t)k);
    offset += sizes[i];
  }
  append(&hdr, &len, &cap, "}", 1);
  while ((8 + len) % 8) append(&hdr, &len, &cap, " ", 1);  // keeps the data 8-byte aligned
  uint8_t lenbuf[8];
  for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)len >> (8 * i));
  dl_chunk *chunks = dl_malloc((size_t)(n + 2) * sizeof *chunks);
  chunks[0] = (dl_chunk){lenbuf, 8};
  chunks[1] = (dl_chunk){hdr, len};
  for (int i = 0; i < n; i++) chunks[2 + i] = (dl_chunk){tensors[i].data, sizes[i]};
  int rc = dl_write_file_atomic(path, chunks, n + 2, err);
  free(chunks);
  free(sizes);
  free(hdr);
  return rc;
}
