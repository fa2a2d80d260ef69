#include "student/student_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/timing.h"
#include "data/loader.h"
#include "student/checkpoint.h"
#include "student/checkpoint_share.h"
#include "student/export_catalog.h"
#include "student/export_eval.h"
#include "student/hires.h"
#include "student/metrics.h"
#include "student/metrics_http.h"
#include "student/step_batch.h"
#include "student/student_model.h"
#include "teacher/model_io.h"
#include "transport/malloc_tuning.h"
#include "transport/student_client.h"

typedef struct run_state {
  const dl_student_options *o;
  const dl_recipe *r;
  dl_dataset *dataset;
  dl_sample_stream stream;
  dl_head teacher_heads[2];
  bool have_heads;
  uint64_t heads_hash;  // of teacher_heads' last layers, checked against WELCOME's
  dl_vit vit;
  dl_trainer t;
  bool have_trainer;
  void *backend;  // o->backend's state (NULL: the CPU steps)
  int global_size, blocks_per_rank;
  bool hires;      // the trainer has the high-resolution phase's configuration (student_model.h)
  long phase_end;  // the step at which the current client and loader stop
  dl_student_client *client;
  dl_loader *loader;
  dl_step_batch batch;
  dl_student_log log;
  dl_metrics_http *http;
  dl_student_metrics client_totals;  // of clients already closed (one per phase)
  char ckpt_dir[1100];
  long last_ckpt_step;
  double last_ckpt_time;
  char resumed_from[DL_CKPT_PATH_MAX];  // the checkpoint setup restored
  bool refused;                         // a teacher refused this student's stream or protocol: bad input
  // Rank 0: the catalogue of exports and their evaluation (export_catalog.h, export_eval.h).
  dl_export_catalog catalog;
  bool have_catalog;
  dl_export_evaluator evaluator;
  bool evaluating;                      // the recipe has an eval section and a binary to run it
  long last_eval_step;                  // the latest evaluation that succeeded (state DONE; NONE:
  dl_export_eval last_eval;             // none yet), for the Prometheus endpoint
  dl_step_report last_report;
  double last_images_per_s;
} run_state;

static uint64_t group_blocks(const run_state *s, long steps) {
  return (uint64_t)steps * (uint64_t)s->blocks_per_rank * (uint64_t)s->o->world;
}

static int make_dir(const char *path, dl_err *err) {
  if (mkdir(path, 0755) != 0 && errno != EEXIST) return dl_fail(err, "%s: cannot create the folder", path);
  return 0;
}

static void add_client_metrics(dl_student_metrics *a, const dl_student_metrics *b) {
  a->received += b->received;
  a->delivered += b->delivered;
  a->rerequested += b->rerequested;
  a->checksum_failures += b->checksum_failures;
  a->failovers += b->failovers;
  a->teacher_deaths += b->teacher_deaths;
  a->teacher_restarts += b->teacher_restarts;
  a->bytes_wire += b->bytes_wire;
  a->teachers_added += b->teachers_added;
  a->teachers_removed += b->teachers_removed;
  a->holds += b->holds;
  a->held_seconds += b->held_seconds;
  a->wait_seconds += b->wait_seconds;
}

static void stop_stream(run_state *s) {
  if (s->client) {
    dl_student_metrics m = dl_student_client_metrics(s->client);
    add_client_metrics(&s->client_totals, &m);
  }
  if (s->loader) dl_loader_stop(s->loader);
  if (s->client) dl_student_client_destroy(s->client);
  s->loader = NULL;
  s->client = NULL;
}

// Width of the teacher's "cls" (head 0) or "patch" (head 1) rows: the DINO or
// the iBOT head's bottleneck (they may differ), or the teacher's features.
static int target_dim(const run_state *s, int head) {
  return s->r->train.prototypes ? s->teacher_heads[head].cfg.out_dim : s->r->train.teacher_dim;
}

// The family's whole plan, sent to the teachers in every HELLO so that they
// know which blocks it will still need and at which resolution: the main
// phase (train.steps) at crops.global_size, then the high-resolution phase
// (hires.steps more), if any.
static int family_plan(const run_state *s, dl_plan_phase *plan) {
  const dl_recipe *r = s->r;
  int n = 0;
  plan[n++] = (dl_plan_phase){0, group_blocks(s, r->train.steps), (uint32_t)r->crops.global_size};
  if (r->hires.steps)
    plan[n++] = (dl_plan_phase){group_blocks(s, r->train.steps), group_blocks(s, dl_student_total_steps(r)),
                                (uint32_t)r->hires.size};
  return n;
}

// The client and loader for steps [t.step, phase_end) at the current sizes.
static int start_stream(run_state *s, dl_err *err) {
  const dl_recipe *r = s->r;
  s->phase_end = s->hires ? dl_student_total_steps(r) : r->train.steps;
  // The local crops at the phase's size: the student's own, so the stream
  // identity sent to the teachers stays the recipe's (global crops do not
  // depend on the local size, data/augment.h).
  s->stream.crops.local_size = s->t.cfg.local_size;
  const uint64_t start_index = (uint64_t)s->t.step * (uint64_t)s->blocks_per_rank;
  dl_student_config cfg;
  dl_student_config_defaults(&cfg);
  cfg.teachers = s->o->teachers;
  cfg.nteachers = s->o->nteachers;
  cfg.group = s->o->group;
  cfg.rank = (uint32_t)s->o->rank;
  cfg.world = (uint32_t)s->o->world;
  cfg.recipe_hash = dl_recipe_stream_hash(r);
  cfg.heads_hash = s->heads_hash;  // 0 in features mode: no check
  cfg.heads_path = r->train.teacher_heads;
  char stream_text[DL_RECIPE_STREAM_TEXT_MAX];
  dl_recipe_stream_text(r, stream_text, sizeof stream_text);
  cfg.stream_text = stream_text;
  dl_plan_phase plan[2];
  cfg.plan = plan;
  cfg.nplan = family_plan(s, plan);
  cfg.resolution = (uint32_t)s->global_size;
  cfg.start_index = start_index;
  cfg.end_block = group_blocks(s, s->phase_end);
  cfg.window = r->train.window;
  if (s->o->heartbeat_ms > 0) cfg.heartbeat_ms = s->o->heartbeat_ms;
  if (s->o->dead_after_ms > 0) cfg.dead_after_ms = s->o->dead_after_ms;
  if (s->o->resolve_interval_ms > 0) cfg.resolve_interval_ms = s->o->resolve_interval_ms;
  if (s->o->curve_secret) {
    cfg.curve_secret = s->o->curve_secret;
    cfg.curve_public = s->o->curve_public;
    cfg.teacher_public = s->o->teacher_public;
    cfg.nteacher_keys = 1;
  }
  cfg.quiet = s->o->quiet;
  s->client = dl_student_client_create(&cfg, err);
  if (!s->client) return -1;
  const int64_t count = (int64_t)(s->phase_end - s->t.step) * s->blocks_per_rank;
  s->loader = dl_loader_start(&s->stream, (int64_t)(s->o->rank + start_index * (uint64_t)s->o->world), s->o->world,
                              count, s->global_size, r->loader_threads, 2 * s->blocks_per_rank + 2);
  dl_step_batch_free(&s->batch);
  dl_step_batch_init(&s->batch, &s->t.cfg, s->t.patches, target_dim(s, 0), target_dim(s, 1));
  return 0;
}

static void publish(run_state *s, const dl_step_report *r, double images_per_s);

static int write_checkpoint(run_state *s, dl_err *err) {
  if (s->o->rank != 0 || s->t.step == s->last_ckpt_step) return 0;
  if (s->backend && s->o->backend->sync(s->backend, &s->t, err)) return -1;
  dl_checkpoint_info info = {.step = s->t.step, .cursor = group_blocks(s, s->t.step), .vit = s->vit.cfg,
                             .global_size = s->global_size, .prototypes = s->r->train.prototypes,
                             .hires = s->hires, .images_seen = s->t.step * (long)s->r->train.batch,
                             .final = s->t.step >= dl_student_total_steps(s->r)};
  char path[DL_CKPT_PATH_MAX];
  if (dl_checkpoint_write(s->ckpt_dir, &s->t, &info, s->o->recipe_text, s->r->checkpoint.keep, path, err))
    return -1;
  s->last_ckpt_step = s->t.step;
  s->last_ckpt_time = dl_now_seconds();
  dl_student_log_event(&s->log, "checkpoint", s->t.step, path);
  if (s->have_catalog && dl_export_catalog_add(&s->catalog, s->t.step, err)) return -1;
  return 0;
}

// Rank 0, between steps: collects a finished evaluation (recorded, logged,
// published; retention may now keep or drop exports) and starts the next
// pending one. Never waits: the evaluation is another process.
static int poll_evaluation(run_state *s, dl_err *err) {
  if (!s->evaluating) return 0;
  dl_export_evaluator *ev = &s->evaluator;
  if (dl_export_evaluator_poll(ev) == 1) {
    if (dl_export_catalog_set_eval(&s->catalog, ev->step, &ev->result, err)) return -1;
    dl_student_log_eval(&s->log, ev->step, &ev->result);
    if (ev->result.state == DL_EXPORT_EVAL_DONE) {
      s->last_eval_step = ev->step;
      s->last_eval = ev->result;
    }
    publish(s, &s->last_report, s->last_images_per_s);
  }
  dl_export_record *next = dl_export_evaluator_busy(ev) ? NULL : dl_export_catalog_next_pending(&s->catalog);
  if (!next) return 0;
  char path[DL_CKPT_PATH_MAX + 100];
  snprintf(path, sizeof path, "%s/%s", s->ckpt_dir, next->file);
  const long step = next->step;
  if (dl_export_evaluator_start(ev, path, step, err) || dl_export_catalog_started(&s->catalog, step, err)) return -1;
  char detail[64];
  snprintf(detail, sizeof detail, "pid=%ld", (long)ev->pid);
  dl_student_log_event_value(&s->log, "eval_start", step, "pid", (double)ev->pid, detail);
  return 0;
}

// At the end of a run: the evaluations still pending (the final export's
// at least), polled so that SIGTERM still stops the wait.
static int finish_evaluations(run_state *s, dl_err *err) {
  if (!s->evaluating) return 0;
  const int pending = dl_export_catalog_pending_count(&s->catalog);
  if (pending) {
    char detail[64];
    snprintf(detail, sizeof detail, "waiting for %d evaluation%s", pending, pending == 1 ? "" : "s");
    dl_student_log_event(&s->log, "eval_wait", s->t.step, detail);
  }
  while (dl_export_catalog_pending_count(&s->catalog) > 0 && !*s->o->stop) {
    if (poll_evaluation(s, err)) return -1;
    usleep(50 * 1000);
  }
  return 0;
}

// Rank 0: the catalogue (index.json rebuilt when it is not what the files
// say) and, with an eval section, the evaluator.
static int open_catalog(run_state *s, dl_err *err) {
  if (s->o->rank != 0) return 0;
  if (dl_export_catalog_open(&s->catalog, s->ckpt_dir, s->o->group ? s->o->group : "student", s->r,
                             dl_student_total_steps(s->r), err))
    return -1;
  s->have_catalog = true;
  if (s->catalog.rebuilt[0]) dl_student_log_event(&s->log, "index", s->t.step, s->catalog.rebuilt);
  if (!s->r->eval.present) return 0;
  if (!s->o->eval_exe) return dl_fail(err, "the recipe's eval section needs the distill binary to run evaluations");
  // Bad eval data is bad input: refused now, not in every evaluation.
  const char *const sets[2][2] = {{"eval.train", s->r->eval.train}, {"eval.test", s->r->eval.test}};
  for (int i = 0; i < 2; i++) {
    dl_dataset *ds;
    if (dl_dataset_open(sets[i][1], &ds, err)) return dl_fail_prefix(err, sets[i][0]);
    const int classes = dl_dataset_num_classes(ds);
    dl_dataset_close(ds);
    if (classes <= 0) return dl_fail(err, "%s: %s has no labels (k-NN needs labelled images)", sets[i][0], sets[i][1]);
  }
  char dir[1200];
  snprintf(dir, sizeof dir, "%s/eval", s->o->out_dir);
  if (make_dir(dir, err)) return -1;
  dl_export_evaluator_init(&s->evaluator, s->o->eval_exe, &s->r->eval, dir);
  s->evaluating = true;
  return 0;
}

static int init_trainer(run_state *s, unsigned long long seed, dl_err *err) {
  dl_train_config cfg;
  dl_student_train_config(s->r, s->o->world, s->global_size, s->have_heads ? s->teacher_heads : NULL, s->vit.cfg.dim,
                          &cfg);
  if (s->hires) dl_student_hires_config(s->r, &cfg);
  cfg.reduce = s->o->reduce;
  cfg.world = s->o->world;
  cfg.ibot.rank = s->o->rank;  // each rank selects iBOT patches for its own crops
  if (dl_trainer_init(&s->t, &s->vit, &cfg, &s->teacher_heads[0], &s->teacher_heads[1], seed, err)) return -1;
  s->have_trainer = true;
  return 0;
}

// A resumed run: the newest usable checkpoint (spec "auto") or the named one.
// Returns 1 when one was restored, 0 when there is none, -1 on failure.
static int resume(run_state *s, const char *spec, dl_err *err) {
  char **paths = NULL, *one[1];
  int n;
  const bool automatic = strcmp(spec, "auto") == 0;
  if (automatic) n = dl_checkpoint_candidates(s->ckpt_dir, &paths);
  else one[0] = (char *)spec, paths = one, n = 1;
  int rc = 0, refused = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    dl_checkpoint ck;
    if (dl_checkpoint_open(paths[i], &ck, err) == 0) {
      const dl_checkpoint_info *in = &ck.info;
      dl_vit_config want;
      dl_student_vit_config(s->r, in->global_size, &want);
      want.pos_grid = in->vit.pos_grid;
      if (memcmp(&want, &in->vit, sizeof want) != 0 || in->prototypes != s->r->train.prototypes) {
        dl_fail(err, "%s: the checkpoint's model or target kind differs from the recipe's", paths[i]);
      } else if (in->cursor != group_blocks(s, in->step)) {
        // The next block follows from the step only while batch and block size stay.
        dl_fail(err, "%s: the group consumed %llu blocks in %ld steps; this recipe takes %d per step (train.batch or "
                     "data.block_size changed)", paths[i], (unsigned long long)in->cursor, in->step,
                s->blocks_per_rank * s->o->world);
      } else {
        dl_vit_init_empty(&s->vit, &in->vit);
        s->global_size = in->global_size;
        // A checkpoint at train.steps may be from before the switch or after
        // it: its crop size tells (with equal sizes both are the same state).
        s->hires = s->r->hires.steps && in->step >= s->r->train.steps && in->global_size == s->r->hires.size;
        if (init_trainer(s, s->r->model.seed, err) == 0 && dl_checkpoint_restore(&ck, &s->t, err) == 0) {
          rc = 1;
          snprintf(s->resumed_from, sizeof s->resumed_from, "%s", paths[i]);
        } else if (s->have_trainer) dl_trainer_free(&s->t), s->have_trainer = false, dl_vit_free(&s->vit);
      }
      dl_checkpoint_close(&ck);
    }
    if (rc == 0 && !automatic) return -1;  // the named checkpoint: its own message
    if (rc == 0) {
      refused++;
      fprintf(stderr, "distill: student: refusing checkpoint: %s%s\n", err->msg,
              i + 1 < n ? "; trying the previous one" : "");
    }
  }
  if (automatic) dl_checkpoint_candidates_free(paths, n);
  if (rc == 0 && refused) return dl_fail(err, "no usable checkpoint in %s (%d refused; see above)", s->ckpt_dir, refused);
  if (rc == 1) {
    s->last_ckpt_step = s->t.step;
    char detail[64];
    snprintf(detail, sizeof detail, "global_size=%d", s->global_size);
    dl_student_log_event(&s->log, "resume", s->t.step, detail);
  }
  return rc;
}

// A group resumes from rank 0's checkpoint (checkpoint_share.h); the other
// ranks' --resume and volumes play no part. Same returns as resume().
static int resume_group(run_state *s, dl_err *err) {
  if (s->o->rank == 0) {
    const int rc = s->o->resume ? resume(s, s->o->resume, err) : 0;
    dl_err sent;
    if (dl_checkpoint_send(s->o->ranks, rc == 1 ? s->resumed_from : NULL, rc < 0, &sent) && rc >= 0) {
      *err = sent;
      return -1;
    }
    return rc;
  }
  char path[DL_CKPT_PATH_MAX];
  snprintf(path, sizeof path, "%s/resume-rank%d.safetensors", s->o->out_dir, s->o->rank);
  int got, rc = dl_checkpoint_receive(s->o->ranks, path, &got, err);
  if (rc == 0 && got) rc = resume(s, path, err);
  unlink(path);
  return rc;
}

static int setup(run_state *s, dl_err *err) {
  const dl_recipe *r = s->r;
  if (dl_recipe_rank_blocks(r, s->o->world, &s->blocks_per_rank, err)) return -1;
  if (make_dir(s->o->out_dir, err)) return -1;
  if (r->checkpoint.dir[0]) snprintf(s->ckpt_dir, sizeof s->ckpt_dir, "%s", r->checkpoint.dir);
  else snprintf(s->ckpt_dir, sizeof s->ckpt_dir, "%s/checkpoints", s->o->out_dir);
  if (make_dir(s->ckpt_dir, err)) return -1;
  if (dl_dataset_open(r->dataset, &s->dataset, err)) return -1;
  s->stream = (dl_sample_stream){.dataset = s->dataset, .seed = r->seed, .block_size = r->block_size, .crops = r->crops};
  if (r->train.prototypes) {
    if (dl_student_load_teacher_heads(r->train.teacher_heads, s->teacher_heads, err)) return -1;
    s->have_heads = true;
    s->heads_hash = dl_heads_last_layer_hash(&s->teacher_heads[0], &s->teacher_heads[1]);
  } else if (r->train.teacher_dim <= 0) {
    return dl_fail(err, "train.teacher_dim is required with features targets");
  }
  s->last_ckpt_step = -1;
  int resumed = 0;
  if (s->o->world > 1 && s->o->ranks) resumed = resume_group(s, err);
  else if (s->o->resume) resumed = resume(s, s->o->resume, err);
  if (resumed < 0) return -1;
  if (!resumed) {
    s->global_size = r->crops.global_size;
    dl_vit_config cfg;
    dl_student_vit_config(r, s->global_size, &cfg);
    dl_student_vit_init(&s->vit, &cfg, r->model.layerscale, r->model.seed);
    if (init_trainer(s, r->model.seed, err)) return -1;
  }
  s->last_ckpt_time = dl_now_seconds();
  return open_catalog(s, err);
}

static void stop_backend(run_state *s) {
  if (s->backend) s->o->backend->stop(s->backend);
  s->backend = NULL;
}

static int start_backend(run_state *s, dl_err *err) {
  if (!s->o->backend) return 0;
  s->backend = s->o->backend->start(s->o->backend->user, &s->t, err);
  return s->backend ? 0 : -1;
}

static int switch_to_hires(run_state *s, dl_err *err) {
  stop_stream(s);
  if (s->backend && s->o->backend->sync(s->backend, &s->t, err)) return -1;
  stop_backend(s);
  dl_vit vit;
  dl_trainer t;
  dl_train_config cfg = s->t.cfg;
  dl_student_hires_config(s->r, &cfg);
  if (dl_hires_switch(&s->t, &cfg, &vit, &t, err)) return -1;
  dl_trainer_free(&s->t);
  dl_vit_free(&s->vit);
  dl_transport_release_free_memory();  // the main phase's freed buffers, not reused by the larger phase
  s->vit = vit;
  // The trainer points into itself (module layouts) and at its student:
  // re-aim those pointers after the move.
  s->t = t;
  s->t.student = &s->vit;
  s->t.mods[0].layout = &s->vit.layout;
  for (int k = 0; k < 2; k++) s->t.mods[k + 1].layout = &s->t.heads[k].layout;
  s->global_size = s->r->hires.size;
  s->hires = true;
  if (start_backend(s, err)) return -1;
  char detail[96];
  snprintf(detail, sizeof detail, "global_size=%d pos_grid=%d local_size=%d", s->global_size, s->vit.cfg.pos_grid,
           s->t.cfg.local_size);
  dl_student_log_event(&s->log, "hires", s->t.step, detail);
  return 0;
}

// The rank's next target block; 1 got it, 0 stopped by a signal, -1 fatal.
static int next_target(run_state *s, dl_target_block *tb, dl_err *err) {
  for (;;) {
    // A group stops together, between steps (the flag is reduced there).
    if (*s->o->stop && s->o->world == 1) return 0;
    int rc = dl_student_client_next(s->client, tb, 200, err);
    if (rc < 0) s->refused = dl_student_client_refused(s->client);
    if (rc != 0) return rc;
  }
}

// The Prometheus exposition of the latest step.
static void publish(run_state *s, const dl_step_report *r, double images_per_s) {
  if (!s->http) return;
  dl_student_metrics m = s->client_totals;
  if (s->client) {
    dl_student_metrics c = dl_student_client_metrics(s->client);
    add_client_metrics(&m, &c);
    m.live_teachers = c.live_teachers;
  }
  char labels[160], text[4096];
  snprintf(labels, sizeof labels, "group=\"%s\",rank=\"%d\"", s->o->group, s->o->rank);
  const struct { const char *name, *type, *term; double value; } rows[] = {
      {"distill_student_step", "gauge", NULL, (double)s->t.step},
      {"distill_student_steps_total_planned", "gauge", NULL, (double)dl_student_total_steps(s->r)},
      {"distill_student_resolution", "gauge", NULL, (double)s->global_size},
      {"distill_student_loss", "gauge", "total", r->total},
      {"distill_student_loss", "gauge", "dino", r->dino},
      {"distill_student_loss", "gauge", "ibot", r->ibot},
      {"distill_student_loss", "gauge", "koleo", r->koleo},
      {"distill_student_loss", "gauge", "feat_cls", r->feat_cls},
      {"distill_student_loss", "gauge", "feat_cos", r->feat_cos},
      {"distill_student_loss", "gauge", "feat_l1", r->feat_l1},
      {"distill_student_learning_rate", "gauge", NULL, r->lr},
      {"distill_student_images_per_second", "gauge", NULL, images_per_s},
      {"distill_student_checkpoint_step", "gauge", NULL, (double)s->last_ckpt_step},
      {"distill_student_blocks_received_total", "counter", NULL, (double)m.received},
      {"distill_student_blocks_rerequested_total", "counter", NULL, (double)m.rerequested},
      {"distill_student_checksum_failures_total", "counter", NULL, (double)m.checksum_failures},
      {"distill_student_failovers_total", "counter", NULL, (double)m.failovers},
      {"distill_student_teacher_restarts_total", "counter", NULL, (double)m.teacher_restarts},
      {"distill_student_live_teachers", "gauge", NULL, (double)m.live_teachers},
      {"distill_student_teachers_added_total", "counter", NULL, (double)m.teachers_added},
      {"distill_student_teachers_removed_total", "counter", NULL, (double)m.teachers_removed},
      {"distill_student_wire_bytes_total", "counter", NULL, (double)m.bytes_wire},
      {"distill_student_target_wait_seconds_total", "counter", NULL, m.wait_seconds},
      {"distill_student_target_held_seconds_total", "counter", NULL, m.held_seconds},
  };
  size_t n = 0;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0] && n < sizeof text; i++) {
    if (i == 0 || strcmp(rows[i].name, rows[i - 1].name) != 0)
      n += (size_t)snprintf(text + n, sizeof text - n, "# TYPE %s %s\n", rows[i].name, rows[i].type);
    if (n >= sizeof text) break;
    if (rows[i].term)
      n += (size_t)snprintf(text + n, sizeof text - n, "%s{%s,term=\"%s\"} %.9g\n", rows[i].name, labels,
                            rows[i].term, rows[i].value);
    else
      n += (size_t)snprintf(text + n, sizeof text - n, "%s{%s} %.9g\n", rows[i].name, labels, rows[i].value);
  }
  if (s->last_eval.state == DL_EXPORT_EVAL_DONE && n < sizeof text) {  // the latest evaluated export, by family
    const dl_export_eval *e = &s->last_eval;
    n += (size_t)snprintf(text + n, sizeof text - n,
                          "# TYPE distill_eval_knn_top1 gauge\ndistill_eval_knn_top1{family=\"%s\",k=\"%d\"} %.9g\n"
                          "# TYPE distill_eval_step gauge\ndistill_eval_step{family=\"%s\"} %ld\n",
                          s->o->group, e->knn_k, e->knn_top1, s->o->group, s->last_eval_step);
    if (e->has_linear && n < sizeof text)
      n += (size_t)snprintf(text + n, sizeof text - n,
                            "# TYPE distill_eval_linear_top1 gauge\ndistill_eval_linear_top1{family=\"%s\"} %.9g\n",
                            s->o->group, e->linear_top1);
  }
  dl_metrics_http_publish(s->http, text);
}

// One training step; 1 done, 0 stopped by a signal before it began, -1 fatal.
static int train_step(run_state *s, dl_err *err) {
  const double t0 = dl_now_seconds();
  const dl_student_metrics before = dl_student_client_metrics(s->client);
  for (int j = 0; j < s->blocks_per_rank; j++) {
    dl_target_block tb;
    int rc = next_target(s, &tb, err);
    if (rc <= 0) return rc;
    dl_block blk;
    if (!dl_loader_next(s->loader, &blk)) {
      dl_target_block_free(&tb);
      return dl_fail(err, "the sample loader ended early");
    }
    rc = dl_step_batch_put(&s->batch, j, &blk, &tb, err);
    dl_block_free(&blk);
    dl_target_block_free(&tb);
    if (rc) return -1;
  }
  dl_step_report rep;
  const dl_train_batch b = dl_step_batch_view(&s->batch);
  if (s->backend ? s->o->backend->step(s->backend, &s->t, &b, &rep, err) : dl_trainer_step(&s->t, &b, &rep, err))
    return -1;
  if (s->o->world > 1) {  // the group's losses: the mean of the ranks' means
    float terms[7] = {rep.total, rep.dino, rep.ibot, rep.koleo, rep.feat_cls, rep.feat_cos, rep.feat_l1};
    dl_reduce_all(&s->o->reduce, terms, 7, DL_REDUCE_SUM);
    float *dst[7] = {&rep.total, &rep.dino, &rep.ibot, &rep.koleo, &rep.feat_cls, &rep.feat_cos, &rep.feat_l1};
    for (int i = 0; i < 7; i++) *dst[i] = terms[i] / (float)s->o->world;
  }
  const double seconds = dl_now_seconds() - t0;
  const dl_student_metrics after = dl_student_client_metrics(s->client);
  dl_student_log_step(&s->log, s->t.step - 1, s->global_size, &rep, seconds, s->r->train.batch,
                      after.wait_seconds - before.wait_seconds, after.held_seconds - before.held_seconds);
  s->last_report = rep;
  s->last_images_per_s = seconds > 0 ? s->r->train.batch / seconds : 0.0;
  publish(s, &rep, s->last_images_per_s);
  return 1;
}

static bool checkpoint_due(const run_state *s) {
  const dl_recipe_checkpoint *c = &s->r->checkpoint;
  if (s->t.step >= dl_student_total_steps(s->r)) return true;
  if (c->every_steps > 0 && s->t.step % c->every_steps == 0) return true;
  return c->every_minutes > 0 && dl_now_seconds() - s->last_ckpt_time >= c->every_minutes * 60.0;
}

// The event that ends a run (the last export, or a stop by signal) carries
// the share of the EMA that comes from high-resolution steps, from the
// schedules (dl_student_ema_hires_share).
static void log_ema_share(run_state *s, const char *event, const char *what) {
  const double share = dl_student_ema_hires_share(s->r, s->t.step);
  char detail[DL_CKPT_PATH_MAX + 160];
  if (strcmp(event, "export") == 0)
    snprintf(detail, sizeof detail, "%s/student-ema-%010ld.safetensors: %.4g %% of the EMA comes from the %ld "
             "high-resolution steps", s->ckpt_dir, s->t.step, 100.0 * share, s->r->hires.steps);
  else
    snprintf(detail, sizeof detail, "%s; %.4g %% of the EMA so far from high-resolution steps", what, 100.0 * share);
  dl_student_log_event_value(&s->log, event, s->t.step, "ema_hires_share", share, detail);
}

static int train(run_state *s, dl_err *err) {
  const dl_recipe *r = s->r;
  const long total = dl_student_total_steps(r);
  while (s->t.step < total) {
    if (r->hires.steps && s->t.step >= r->train.steps && !s->hires && switch_to_hires(s, err)) return -1;
    if (!s->client && start_stream(s, err)) return -1;
    int rc = train_step(s, err);
    if (rc < 0) return -1;
    float stop = *s->o->stop ? 1.0f : 0.0f;
    if (s->o->world > 1) dl_reduce_all(&s->o->reduce, &stop, 1, DL_REDUCE_MAX);
    if (rc == 0 || stop > 0.0f) {
      log_ema_share(s, "stop", "signal: checkpoint and leave");
      return write_checkpoint(s, err);  // a running evaluation is ended by dl_student_run; its export stays pending
    }
    if (checkpoint_due(s) && write_checkpoint(s, err)) return -1;
    if (poll_evaluation(s, err)) return -1;
    if (s->t.step == s->phase_end) stop_stream(s);
  }
  if (s->o->rank == 0) log_ema_share(s, "export", NULL);
  return finish_evaluations(s, err);
}

int dl_student_run(const dl_student_options *o, dl_err *err) {
  run_state s;
  memset(&s, 0, sizeof s);
  s.o = o;
  s.r = o->recipe;
  dl_transport_tune_malloc();
  int status = 2;
  if (o->metrics_port && !(s.http = dl_metrics_http_start(o->metrics_addr ? o->metrics_addr : "127.0.0.1",
                                                          o->metrics_port, err)))
    return 2;
  if (make_dir(o->out_dir, err) == 0 &&
      dl_student_log_open(&s.log, o->out_dir, o->rank, dl_student_total_steps(o->recipe), 0, o->quiet || o->rank > 0, err) == 0 && setup(&s, err) == 0) {
    s.log.step_start = s.t.step;
    // A backend that cannot take this student (e.g. the CUDA attention's
    // head dimension) is bad input, like a bad recipe.
    status = start_backend(&s, err) == 0 ? (train(&s, err) == 0 ? 0 : s.refused ? 2 : 1) : 2;
  }
  stop_stream(&s);
  if (s.log.jsonl && s.client_totals.delivered + s.client_totals.received > 0) {
    char detail[128];  // how long the rank waited for targets, and how much of it pacing held it back
    snprintf(detail, sizeof detail, "wait_seconds=%.1f held_seconds=%.1f", s.client_totals.wait_seconds,
             s.client_totals.held_seconds);
    dl_student_log_event(&s.log, "targets", s.t.step, detail);
  }
  stop_backend(&s);
  if (s.evaluating) dl_export_evaluator_kill(&s.evaluator);
  if (s.have_catalog) dl_export_catalog_close(&s.catalog);
  dl_step_batch_free(&s.batch);
  if (s.have_trainer) dl_trainer_free(&s.t), dl_vit_free(&s.vit);
  if (s.have_heads) dl_head_free(&s.teacher_heads[0]), dl_head_free(&s.teacher_heads[1]);
  if (s.dataset) dl_dataset_close(s.dataset);
  if (s.log.jsonl) dl_student_log_close(&s.log);
  dl_metrics_http_stop(s.http);
  return status;
}
