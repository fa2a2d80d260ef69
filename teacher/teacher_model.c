#include "teacher/teacher_model.h"

#include <string.h>

#include "common/file_io.h"
#include "teacher/model_io.h"
#include "transport/xxhash64.h"

// The hash of a file's bytes, chained from `seed`, so weights + heads hash as one.
static int hash_file(const char *path, uint64_t seed, uint64_t *out, dl_err *err) {
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) return -1;
  *out = dl_xxhash64(f.data, f.size, seed);
  dl_unmap_file(&f);
  return 0;
}

static int check_heads(const dl_teacher_model *m, const char *path, dl_err *err) {
  const int D = m->vit.cfg.dim;
  if (m->dino.cfg.in_dim != D || m->ibot.cfg.in_dim != D)
    return dl_fail(err, "%s: the heads take %d and %d features, the backbone gives %d", path, m->dino.cfg.in_dim,
                   m->ibot.cfg.in_dim, D);
  return 0;
}

static int load(const dl_recipe *r, const dl_forward_backend *backend, dl_teacher_model *m, dl_err *err) {
  const dl_recipe_teacher *t = &r->teacher;
  dl_vit_overrides ov = {0, -1};
  if (dl_vit_load(t->weights, &ov, &m->vit, NULL, err)) return -1;
  if (hash_file(t->weights, 0, &m->weights_hash, err)) return -1;
  m->target_kind = (int)t->target;
  if (m->target_kind != DL_TARGET_FEATURES) {
    if (dl_heads_load(t->heads, &m->dino, &m->ibot, err) || check_heads(m, t->heads, err)) return -1;
    if (hash_file(t->heads, m->weights_hash, &m->weights_hash, err)) return -1;
    m->heads_hash = dl_heads_last_layer_hash(&m->dino, &m->ibot);
  }
  if (r->crops.global_size % m->vit.cfg.patch)
    return dl_fail(err, "crops.global_size %d is not a multiple of the teacher's patch size %d", r->crops.global_size,
                   m->vit.cfg.patch);
  if (dl_dataset_open(r->dataset, &m->dataset, err)) return -1;
  dl_teacher_engine_config ec = {
      .vit = &m->vit, .dino = m->target_kind ? &m->dino : NULL, .ibot = m->target_kind ? &m->ibot : NULL,
      .kind = m->target_kind,
      .stream = {m->dataset, r->seed, r->block_size, r->crops, 0}, .batch = t->batch, .workers = t->workers,
      .max_resolution = 2048, .backend = backend};
  int dims[2];
  dl_teacher_engine_target_dims(&ec, dims);
  m->cls_dim = (uint32_t)dims[0];
  m->patch_dim = (uint32_t)dims[1];
  m->patch_tokens = (uint32_t)dl_vit_num_patches(&m->vit.cfg, r->crops.global_size, r->crops.global_size);
  m->engine = dl_teacher_engine_start(&ec, err);
  return m->engine ? 0 : -1;
}

int dl_teacher_model_open(const dl_recipe *r, const dl_forward_backend *backend, dl_teacher_model *m, dl_err *err) {
  memset(m, 0, sizeof *m);
  if (!r->teacher.present) return dl_fail(err, "the recipe has no teacher section");
  if (load(r, backend, m, err) == 0) return 0;
  dl_teacher_model_close(m);
  return -1;
}

void dl_teacher_model_close(dl_teacher_model *m) {
  dl_teacher_engine_stop(m->engine);
  if (m->dataset) dl_dataset_close(m->dataset);
  if (m->dino.params) dl_head_free(&m->dino);
  if (m->ibot.params) dl_head_free(&m->ibot);
  if (m->vit.params) dl_vit_free(&m->vit);
  memset(m, 0, sizeof *m);
}
