// The envelope frame: packing and a validating decoder. Whatever arrives from
// the network goes through dl_envelope_decode first, so everything after it
// may rely on sane counts, sizes and enum values.
#ifndef DISTILL_TRANSPORT_ENVELOPE_H
#define DISTILL_TRANSPORT_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "proto/distill.pb-c.h"

// 2: HELLO carries the stream text, the family's plan and the cursor;
// REQUEST and HEARTBEAT the cursor; HOLD (teacher -> student) exists.
#define DL_PROTOCOL_VERSION 2
#define DL_PLAN_MAX_PHASES 16
#define DL_STREAM_TEXT_MAX 2048
#define DL_ENVELOPE_MAX_BYTES (64 * 1024)  // an envelope is metadata only
#define DL_REQUEST_MAX_BLOCKS 1024
#define DL_GROUP_NAME_MAX 64
#define DL_MAX_WORLD 65536  // ranks in one group: bounds what a HELLO makes a teacher allocate
#define DL_TARGET_DIM_MAX 65536  // WELCOME's target widths (a backbone's dim or a head's bottleneck)

typedef Distill__Envelope dl_envelope;

// Unpacks and validates. *out is freed with dl_envelope_free. Returns 0, or
// -1 with a message saying what is wrong.
int dl_envelope_decode(const uint8_t *data, size_t n, dl_envelope **out, dl_err *err);
void dl_envelope_free(dl_envelope *e);

// Packs into a malloc'd buffer; *n gets its size.
uint8_t *dl_envelope_pack(const dl_envelope *e, size_t *n);

// Builders for the small messages (the caller fills the body's fields).
void dl_envelope_init(dl_envelope *e);

#endif
