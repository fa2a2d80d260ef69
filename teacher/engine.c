#include "teacher/engine.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { JOB_QUEUED, JOB_PREPARING, JOB_PREPARED, JOB_COMPUTING, JOB_DONE, JOB_FAILED } job_state;

typedef struct job {
  uint64_t block;
  uint32_t resolution;
  job_state state;
  bool taken;              // compute_block is waiting for it
  dl_block input;          // PREPARED: the global crops
  dl_target_block result;  // DONE
  char error[sizeof(((dl_err *)0)->msg)];  // FAILED
  struct job *next;
} job;

struct dl_teacher_engine {
  dl_teacher_engine_config cfg;
  pthread_mutex_t mu;
  pthread_cond_t work;  // a job became QUEUED or PREPARED, or room to prepare, or stop
  pthread_cond_t done;  // a job became DONE or FAILED
  job *head, *tail;     // FIFO, the server's job order
  bool stop;
  pthread_t *workers, compute;
  dl_teacher_engine_stats stats;
  // compute thread only
  dl_vit_workspace ws;
  float *stage_images, *stage_cls, *stage_patch;
  size_t stage_images_cap, stage_cls_cap, stage_patch_cap;
  dl_head_ws head_ws;
  void *backend;  // cfg.backend's state (NULL: the CPU forward)
};

void dl_teacher_engine_target_dims(const dl_teacher_engine_config *cfg, int dims[2]) {
  const bool heads = cfg->kind == 1;
  dims[0] = heads ? dl_head_out_dim(cfg->dino, DL_HEAD_BOTTLENECK) : cfg->vit->cfg.dim;
  dims[1] = heads ? dl_head_out_dim(cfg->ibot, DL_HEAD_BOTTLENECK) : cfg->vit->cfg.dim;
}

static int count_state(const dl_teacher_engine *e, job_state s) {
  int n = 0;
  for (const job *j = e->head; j; j = j->next) n += j->state == s;
  return n;
}

// Appends a job; the caller holds the lock.
static job *add_job(dl_teacher_engine *e, uint64_t block, uint32_t res) {
  job *j = dl_calloc(1, sizeof *j);
  j->block = block;
  j->resolution = res;
  if (e->tail) e->tail->next = j; else e->head = j;
  e->tail = j;
  pthread_cond_broadcast(&e->work);
  return j;
}

static const char *check_resolution(const dl_teacher_engine *e, uint32_t res) {
  const int p = e->cfg.vit->cfg.patch;
  if (res == 0 || (int)res > e->cfg.max_resolution || res % (uint32_t)p) return "resolution not a multiple of the patch size, or too large";
  return NULL;
}

// ---- workers: decode + augment

static void *worker_main(void *arg) {
  dl_teacher_engine *e = arg;
  // At most two prepared blocks per worker wait for the forward pass (memory).
  const int ahead = 2 * e->cfg.workers;
  pthread_mutex_lock(&e->mu);
  while (!e->stop) {
    job *j = NULL;
    if (count_state(e, JOB_PREPARED) < ahead)
      for (j = e->head; j && j->state != JOB_QUEUED; j = j->next) {}
    if (!j) {
      pthread_cond_wait(&e->work, &e->mu);
      continue;
    }
    const char *bad = check_resolution(e, j->resolution);
    if (bad) {
      snprintf(j->error, sizeof j->error, "block %llu at %u px: %s", (unsigned long long)j->block, j->resolution, bad);
      j->state = JOB_FAILED;
      e->stats.failed++;
      pthread_cond_broadcast(&e->done);
      continue;
    }
    j->state = JOB_PREPARING;
    pthread_mutex_unlock(&e->mu);
    dl_sample_stream_block(&e->cfg.stream, (int64_t)j->block, (int)j->resolution, &j->input);
    pthread_mutex_lock(&e->mu);
    j->state = JOB_PREPARED;
    e->stats.prepared++;
    pthread_cond_broadcast(&e->work);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

// ---- compute thread: the forward pass in batches

static float *grow(float **buf, size_t *cap, size_t n) {
  if (n > *cap) {
    free(*buf);
    *buf = dl_aligned_alloc(n * sizeof(float));
    *cap = n;
  }
  return *buf;
}

static int images_of(const job *j) { return j->input.num_samples * j->input.global_count; }

// The first prepared job, and after it (in FIFO order) more prepared jobs of
// the same resolution while their images fit in one batch. Marks them COMPUTING.
static int take_batch(dl_teacher_engine *e, job **out, int max) {
  job *first = NULL;
  for (job *j = e->head; j && !first; j = j->next)
    if (j->state == JOB_PREPARED) first = j;
  if (!first) return 0;
  int n = 0, images = 0;
  for (job *j = first; j && n < max; j = j->next) {
    if (j->state != JOB_PREPARED || j->resolution != first->resolution) continue;
    if (n > 0 && images + images_of(j) > e->cfg.batch) break;
    images += images_of(j);
    j->state = JOB_COMPUTING;
    out[n++] = j;
  }
  return n;
}

// The backbone over all images of the jobs, `batch` at a time, into the staging buffers.
static int forward_jobs(dl_teacher_engine *e, job **jobs, int n, int res, dl_err *err) {
  const dl_vit *vit = e->cfg.vit;
  const int D = vit->cfg.dim, P = dl_vit_num_patches(&vit->cfg, res, res);
  const size_t img = 3 * (size_t)res * res;
  int total = 0;
  for (int i = 0; i < n; i++) total += images_of(jobs[i]);
  float *images = n == 1 ? jobs[0]->input.global_crops : grow(&e->stage_images, &e->stage_images_cap, total * img);
  for (int i = 0, at = 0; n > 1 && i < n; at += images_of(jobs[i]), i++)
    memcpy(images + (size_t)at * img, jobs[i]->input.global_crops, (size_t)images_of(jobs[i]) * img * sizeof(float));
  float *cls = grow(&e->stage_cls, &e->stage_cls_cap, (size_t)total * D);
  float *patch = grow(&e->stage_patch, &e->stage_patch_cap, (size_t)total * P * D);
  float regs[1];  // unused when the model has no registers
  float *reg_buf = vit->cfg.registers ? dl_malloc((size_t)e->cfg.batch * vit->cfg.registers * D * sizeof(float)) : regs;
  int rc = 0;
  for (int i = 0; i < total && rc == 0; i += e->cfg.batch) {
    const int m = total - i < e->cfg.batch ? total - i : e->cfg.batch;
    dl_vit_outputs o = {cls + (size_t)i * D, vit->cfg.registers ? reg_buf : NULL, patch + (size_t)i * P * D, NULL};
    rc = e->backend ? e->cfg.backend->forward(e->backend, images + (size_t)i * img, m, res, &o, err)
                    : dl_vit_forward(vit, images + (size_t)i * img, m, res, res, NULL, &e->ws, &o, err);
    e->stats.forward_passes++;
    e->stats.images += (uint64_t)m;
  }
  if (reg_buf != regs) free(reg_buf);
  return rc;
}

// One job's targets from the staged outputs, starting at image `at`.
static int fill_targets(dl_teacher_engine *e, job *j, int at, int res, dl_err *err) {
  const dl_vit *vit = e->cfg.vit;
  const int D = vit->cfg.dim, P = dl_vit_num_patches(&vit->cfg, res, res), m = images_of(j);
  dl_target_block *t = &j->result;
  t->block = j->block;
  t->resolution = j->resolution;
  t->first_sample = j->block * (uint64_t)e->cfg.stream.block_size;
  t->num_samples = (uint32_t)j->input.num_samples;
  const float *scls = e->stage_cls + (size_t)at * D, *spatch = e->stage_patch + (size_t)at * P * D;
  // Each head has its own bottleneck width (ViT-g/14: DINO 384, iBOT 256).
  const uint32_t B0 = e->cfg.kind == 0 ? 0 : (uint32_t)dl_head_out_dim(e->cfg.dino, DL_HEAD_BOTTLENECK);
  const uint32_t B1 = e->cfg.kind == 0 ? 0 : (uint32_t)dl_head_out_dim(e->cfg.ibot, DL_HEAD_BOTTLENECK);
  // Every tensor in one buffer, in payload order: with codec f32 the teacher
  // sends it without another copy (dl_encode_block_take).
  size_t floats = (e->cfg.kind != 1 ? (size_t)m * (P + 1) * D : 0) + (size_t)m * B0 + (size_t)m * P * B1;
  dl_target_block_reserve(t, floats * sizeof(float));
  if (e->cfg.kind != 1) {
    float *cls = dl_target_block_add_uninitialized(t, "cls", (uint32_t)m, (uint32_t)D);
    float *patch = dl_target_block_add_uninitialized(t, "patch", (uint32_t)m * P, (uint32_t)D);
    if (!cls || !patch) return dl_fail(err, "block %llu: cannot add target tensors", (unsigned long long)j->block);
    memcpy(cls, scls, (size_t)m * D * sizeof(float));
    memcpy(patch, spatch, (size_t)m * P * D * sizeof(float));
  }
  if (e->cfg.kind == 0) return 0;
  float *cls = dl_target_block_add_uninitialized(t, e->cfg.kind == 2 ? "cls_proto" : "cls", (uint32_t)m, B0);
  float *patch = dl_target_block_add_uninitialized(t, e->cfg.kind == 2 ? "patch_proto" : "patch", (uint32_t)m * P, B1);
  if (!cls || !patch) return dl_fail(err, "block %llu: cannot add target tensors", (unsigned long long)j->block);
  if (e->backend) {  // the heads on the backend's device
    if (e->cfg.backend->bottleneck(e->backend, 0, scls, m, cls, err)) return -1;
    return e->cfg.backend->bottleneck(e->backend, 1, spatch, m * P, patch, err);
  }
  dl_head_forward(e->cfg.dino, DL_HEAD_BOTTLENECK, scls, m, cls, &e->head_ws);
  dl_head_forward(e->cfg.ibot, DL_HEAD_BOTTLENECK, spatch, m * P, patch, &e->head_ws);
  return 0;
}

static void *compute_main(void *arg) {
  dl_teacher_engine *e = arg;
  enum { kMaxJobs = 64 };
  job *jobs[kMaxJobs];
  pthread_mutex_lock(&e->mu);
  while (!e->stop) {
    const int n = take_batch(e, jobs, kMaxJobs);
    if (n == 0) {
      pthread_cond_wait(&e->work, &e->mu);
      continue;
    }
    pthread_mutex_unlock(&e->mu);
    const int res = (int)jobs[0]->resolution;
    dl_err err = {{0}};
    int rc = forward_jobs(e, jobs, n, res, &err);
    for (int i = 0, at = 0; i < n; at += images_of(jobs[i]), i++) {
      if (rc == 0 && fill_targets(e, jobs[i], at, res, &err) != 0) dl_target_block_free(&jobs[i]->result);
      dl_block_free(&jobs[i]->input);
    }
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < n; i++) {
      jobs[i]->state = rc == 0 && jobs[i]->result.ntensors == (e->cfg.kind == 2 ? 4 : 2) ? JOB_DONE : JOB_FAILED;
      if (jobs[i]->state == JOB_FAILED) {
        snprintf(jobs[i]->error, sizeof jobs[i]->error, "%s", err.msg[0] ? err.msg : "forward pass failed");
        e->stats.failed++;
      }
    }
    pthread_cond_broadcast(&e->done);
    pthread_cond_broadcast(&e->work);  // room for the workers to prepare more
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

// ---- the server's side

void dl_teacher_engine_announce(void *engine, uint64_t block, uint32_t resolution) {
  dl_teacher_engine *e = engine;
  pthread_mutex_lock(&e->mu);
  add_job(e, block, resolution);
  pthread_mutex_unlock(&e->mu);
}

static void unlink_job(dl_teacher_engine *e, job *target) {
  job **pp = &e->head, *prev = NULL;
  while (*pp != target) prev = *pp, pp = &(*pp)->next;
  *pp = target->next;
  if (e->tail == target) e->tail = prev;
}

int dl_teacher_engine_compute(void *engine, uint64_t block, uint32_t resolution, dl_target_block *out, dl_err *err) {
  dl_teacher_engine *e = engine;
  pthread_mutex_lock(&e->mu);
  job *j = e->head;
  while (j && (j->taken || j->block != block || j->resolution != resolution)) j = j->next;
  if (!j) j = add_job(e, block, resolution);  // not announced: computed all the same
  j->taken = true;
  while (j->state != JOB_DONE && j->state != JOB_FAILED) pthread_cond_wait(&e->done, &e->mu);
  unlink_job(e, j);
  pthread_mutex_unlock(&e->mu);
  int rc = 0;
  if (j->state == JOB_DONE) *out = j->result;  // ownership of the tensors moves to out
  else rc = dl_fail(err, "%s", j->error);
  free(j);
  return rc;
}

dl_teacher_engine *dl_teacher_engine_start(const dl_teacher_engine_config *cfg, dl_err *err) {
  if (cfg->batch <= 0 || cfg->workers <= 0 || cfg->max_resolution <= 0) {
    dl_fail(err, "teacher engine: batch %d, workers %d, max resolution %d must be positive", cfg->batch, cfg->workers,
            cfg->max_resolution);
    return NULL;
  }
  if (cfg->kind < 0 || cfg->kind > 2 || (cfg->kind != 0 && (!cfg->dino || !cfg->ibot))) {
    dl_fail(err, "teacher engine: target kind %d needs the DINO and the iBOT head (kind 1 or 2)", cfg->kind);
    return NULL;
  }
  void *backend = NULL;
  if (cfg->backend && !(backend = cfg->backend->start(cfg->vit, cfg->dino, cfg->ibot, err))) return NULL;
  dl_teacher_engine *e = dl_calloc(1, sizeof *e);
  e->cfg = *cfg;
  e->backend = backend;
  e->cfg.stream.crops.local_count = 0;  // local crops are the students' alone
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->work, NULL);
  pthread_cond_init(&e->done, NULL);
  e->workers = dl_calloc((size_t)cfg->workers, sizeof(pthread_t));
  for (int i = 0; i < cfg->workers; i++) pthread_create(&e->workers[i], NULL, worker_main, e);
  pthread_create(&e->compute, NULL, compute_main, e);
  return e;
}

dl_teacher_engine_stats dl_teacher_engine_stats_get(dl_teacher_engine *e) {
  pthread_mutex_lock(&e->mu);
  dl_teacher_engine_stats s = e->stats;
  pthread_mutex_unlock(&e->mu);
  return s;
}

void dl_teacher_engine_stop(dl_teacher_engine *e) {
  if (!e) return;
  pthread_mutex_lock(&e->mu);
  e->stop = true;
  pthread_cond_broadcast(&e->work);
  pthread_mutex_unlock(&e->mu);
  for (int i = 0; i < e->cfg.workers; i++) pthread_join(e->workers[i], NULL);
  pthread_join(e->compute, NULL);
  for (job *j = e->head, *next; j; j = next) {
    next = j->next;
    dl_block_free(&j->input);
    dl_target_block_free(&j->result);
    free(j);
  }
  if (e->backend) e->cfg.backend->stop(e->backend);
  dl_vit_workspace_free(&e->ws);
  dl_head_ws_free(&e->head_ws);
  free(e->stage_images), free(e->stage_cls), free(e->stage_patch);
  pthread_mutex_destroy(&e->mu);
  pthread_cond_destroy(&e->work);
  pthread_cond_destroy(&e->done);
  free(e->workers);
  free(e);
}
