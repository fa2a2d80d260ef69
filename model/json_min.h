// A small strict JSON tokenizer, enough for safetensors headers: objects,
// arrays, strings (with escapes) and non-negative integers. It never reads
// past `end` and has no recursion, so hostile input is safe.
#ifndef DISTILL_MODEL_JSON_MIN_H
#define DISTILL_MODEL_JSON_MIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dl_json {
  const char *p, *end, *start;
  const char *error;  // first error, NULL while fine
  char msgbuf[32];
} dl_json;

void dl_json_init(dl_json *j, const char *text, size_t n);
void dl_json_skip_ws(dl_json *j);
// Consumes `c` (after whitespace) or records an error.
bool dl_json_expect(dl_json *j, char c);
// True and consumes `c` if it is next.
bool dl_json_accept(dl_json *j, char c);
// Parses a string into a new malloc'd, NUL-terminated buffer (NULL on error).
char *dl_json_string(dl_json *j);
// Parses a non-negative integer up to 2^53.
bool dl_json_uint(dl_json *j, uint64_t *out);
bool dl_json_fail(dl_json *j, const char *msg);
size_t dl_json_offset(const dl_json *j);

#endif
