// A student family's plan as the teacher learns it from HELLO: the phases of
// group-level block ids and the resolution of each. The teacher uses plans to
// know which families will still need a block (teacher_families.h).
#ifndef DISTILL_TRANSPORT_FAMILY_PLAN_H
#define DISTILL_TRANSPORT_FAMILY_PLAN_H

#include <stdint.h>

typedef struct dl_plan_phase {
  uint64_t first_block, end_block;  // [first, end) in group-level block ids
  uint32_t resolution;              // global crop size in that phase
} dl_plan_phase;

#endif
