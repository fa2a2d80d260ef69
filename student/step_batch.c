#include "student/step_batch.h"

#include <stdlib.h>
#include <string.h>

void dl_step_batch_init(dl_step_batch *b, const dl_train_config *cfg, int patches, int cls_dim, int patch_dim) {
  memset(b, 0, sizeof *b);
  b->batch = cfg->batch;
  b->global_crops = cfg->global_crops;
  b->local_crops = cfg->local_crops;
  b->global_size = cfg->global_size;
  b->local_size = cfg->local_size;
  b->patches = patches;
  b->cls_dim = cls_dim;
  b->patch_dim = patch_dim;
  b->prototypes = cfg->mode == DL_TRAIN_PROTOTYPES;
  const size_t gb = (size_t)b->global_crops * b->batch;
  b->global_images = dl_aligned_alloc(gb * 3 * b->global_size * b->global_size * sizeof(float));
  if (b->local_crops)
    b->local_images =
        dl_aligned_alloc((size_t)b->local_crops * b->batch * 3 * b->local_size * b->local_size * sizeof(float));
  b->teacher_cls = dl_aligned_alloc(gb * cls_dim * sizeof(float));
  b->teacher_patch = dl_aligned_alloc(gb * patches * patch_dim * sizeof(float));
}

void dl_step_batch_free(dl_step_batch *b) {
  free(b->global_images);
  free(b->local_images);
  free(b->teacher_cls);
  free(b->teacher_patch);
  memset(b, 0, sizeof *b);
}

static int check_tensor(const dl_target_block *tb, const char *name, size_t rows, int cols, dl_err *err) {
  const dl_tensor *t = dl_target_block_find(tb, name);
  if (!t) return dl_fail(err, "teacher block %llu has no '%s' tensor", (unsigned long long)tb->block, name);
  if (t->rows != rows || (int)t->cols != cols)
    return dl_fail(err, "teacher block %llu: '%s' is %u x %u, the student expects %zu x %d (check the recipe's "
                        "crops, block size and teacher width against the teacher)",
                   (unsigned long long)tb->block, name, t->rows, t->cols, rows, cols);
  return 0;
}

int dl_step_batch_put(dl_step_batch *b, int j, const dl_block *blk, const dl_target_block *tb, dl_err *err) {
  const int G = b->global_crops, L = b->local_crops, bs = blk->num_samples, P = b->patches;
  const int Dc = b->cls_dim, Dp = b->patch_dim;
  if ((int64_t)tb->block != blk->block || tb->resolution != (uint32_t)b->global_size ||
      tb->num_samples != (uint32_t)bs)
    return dl_fail(err, "teacher block %llu at %u px with %u samples, expected block %lld at %d px with %d",
                   (unsigned long long)tb->block, tb->resolution, tb->num_samples, (long long)blk->block,
                   b->global_size, bs);
  // A teacher serving both kinds names the bottlenecks apart; one serving only
  // prototypes sends them as "cls"/"patch".
  const bool proto = b->prototypes && dl_target_block_find(tb, "cls_proto");
  const char *cls_name = proto ? "cls_proto" : "cls", *patch_name = proto ? "patch_proto" : "patch";
  if (check_tensor(tb, cls_name, (size_t)bs * G, Dc, err) || check_tensor(tb, patch_name, (size_t)bs * G * P, Dp, err))
    return -1;
  const float *cls = dl_target_block_find(tb, cls_name)->data, *patch = dl_target_block_find(tb, patch_name)->data;
  const size_t gpix = (size_t)3 * b->global_size * b->global_size, lpix = (size_t)3 * b->local_size * b->local_size;
  for (int s = 0; s < bs; s++) {
    const size_t i = (size_t)j * bs + s;
    for (int c = 0; c < G; c++) {
      const size_t row = (size_t)c * b->batch + i, src = (size_t)s * G + c;
      memcpy(b->global_images + row * gpix, blk->global_crops + src * gpix, gpix * sizeof(float));
      memcpy(b->teacher_cls + row * Dc, cls + src * Dc, (size_t)Dc * sizeof(float));
      memcpy(b->teacher_patch + row * P * Dp, patch + src * P * Dp, (size_t)P * Dp * sizeof(float));
    }
    for (int c = 0; c < L; c++)
      memcpy(b->local_images + ((size_t)c * b->batch + i) * lpix, blk->local_crops + ((size_t)s * L + c) * lpix,
             lpix * sizeof(float));
  }
  return 0;
}

dl_train_batch dl_step_batch_view(const dl_step_batch *b) {
  return (dl_train_batch){b->global_images, b->local_images, b->teacher_cls, b->teacher_patch};
}
