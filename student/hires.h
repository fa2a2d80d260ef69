// The switch to the high-resolution phase (DESIGN.md section 6): the stored position
// table is resized to the new patch grid with the model's official mode
// (legacy bicubic a = -0.75 with scale_factor (g + 0.1) / M for models
// without registers, antialiased bicubic for register models; see
// model/pos_embed.h), so the first high-resolution step computes exactly
// what the official code's on-the-fly interpolation would. The EMA and the
// first Adam moment are resized by the same linear map; the second moment
// too, clamped at 0 (bicubic weights are partly negative and a variance
// cannot be). Every other tensor and the heads carry over unchanged.
#ifndef DISTILL_STUDENT_HIRES_H
#define DISTILL_STUDENT_HIRES_H

#include "model/train_step.h"

// Builds `out_vit` (pos grid tc->global_size / patch) and `out` (trained
// with `tc`: the phase's crop sizes and schedules, student_model.h's
// dl_student_hires_config) from `t`, carrying the whole optimizer state and
// step over. `t` and its student are left untouched (the caller frees them).
int dl_hires_switch(const dl_trainer *t, const dl_train_config *tc, dl_vit *out_vit, dl_trainer *out, dl_err *err);

#endif
