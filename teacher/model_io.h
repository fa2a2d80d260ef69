// What the teacher side reads and writes besides the backbone loader: a
// freshly initialized ViT (DINOv2's initialization), the backbone in the
// official names, and the DINO and iBOT heads in one file.
//
// Heads file: every tensor of the DINO head under "dino_head." and of the
// iBOT head under "ibot_head." (mlp.N.weight/bias, last_layer.weight_g/v),
// as DINOv2 training checkpoints name them. The heads' shapes are inferred
// from the tensors, so any head size loads.
#ifndef DISTILL_TEACHER_MODEL_IO_H
#define DISTILL_TEACHER_MODEL_IO_H

#include "common/err.h"
#include "model/heads.h"
#include "model/vit.h"

// DINOv2's initialization (vision_transformer.py init_weights): truncated
// normal (std 0.02, cut at 2 std) for pos_embed and every linear/conv weight,
// cls_token normal(1e-6), mask_token and registers 0 / 1e-6, zero biases,
// LayerNorm weights 1, LayerScale gammas `layerscale`. Deterministic in seed.
void dl_vit_init_random(dl_vit *vit, const dl_vit_config *cfg, float layerscale, unsigned long long seed);

// Writes params (vit's layout; e.g. the EMA buffer) in the official names.
int dl_vit_save(const dl_vit *vit, const float *params, const char *path, dl_err *err);

// Writes both heads' parameters (params[k] in heads[k]'s layout).
int dl_heads_save(const dl_head *dino, const float *dino_params, const dl_head *ibot, const float *ibot_params,
                  const char *path, dl_err *err);
// Loads both heads; a missing, unknown or misshapen head tensor is an error
// naming it. Other tensors (a training checkpoint's backbone) are ignored; a
// file without ibot_head.* gives the DINO head twice (DINOv2's shared head).
int dl_heads_load(const char *path, dl_head *dino, dl_head *ibot, dl_err *err);

// The identity of the heads' last layers, which the student applies to the
// teacher's bottlenecks: WELCOME's heads_hash, which a student with prototypes
// targets compares with its own copy (train.teacher_heads). xxHash64, chained
// (each call seeded with the hash so far, from 0), over in order
// dino_head.last_layer.weight_g, dino_head.last_layer.weight_v,
// ibot_head.last_layer.weight_g, ibot_head.last_layer.weight_v, each as: the
// name with its NUL, ndim (u32), the dims (i64), all little-endian, then the
// float32 values. A shared head (no ibot_head.* in the file) passes the DINO
// head as ibot, so it hashes like a file whose ibot_head.* equals dino_head.*.
// 0 when a head has no last layer (nothing to compare); otherwise never 0.
uint64_t dl_heads_last_layer_hash(const dl_head *dino, const dl_head *ibot);

#endif
