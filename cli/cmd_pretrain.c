// distill pretrain: DINOv2 self-distillation from scratch (teacher/pretrain.h)
// on a recipe's sample stream; writes the EMA teacher's backbone and heads.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/err.h"
#include "common/timing.h"
#include "data/loader.h"
#include "recipe/recipe.h"
#include "teacher/model_io.h"
#include "teacher/pretrain.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig, g_stop = 1; }

static dl_vit_config model_config(const dl_recipe *r) {
  const dl_recipe_pretrain *p = &r->pretrain;
  return (dl_vit_config){.patch = p->patch, .dim = p->dim, .depth = p->depth, .heads = p->heads,
                         .ffn_hidden = p->dim * p->mlp_ratio, .registers = 0,
                         .pos_grid = r->crops.global_size / p->patch, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
}

static dl_pretrain_config pretrain_config(const dl_recipe *r) {
  const dl_recipe_pretrain *p = &r->pretrain;
  const dl_head_config head = {p->dim, p->head_hidden, p->head_bottleneck, p->head_layers, p->head_prototypes};
  dl_pretrain_config c = {
      .batch = p->batch, .global_crops = r->crops.global_count, .local_crops = r->crops.local_count,
      .global_size = r->crops.global_size, .local_size = r->crops.local_size, .dino_head = head, .ibot_head = head,
      .weights = dl_loss_weights_default(), .student_temp = (float)p->student_temp, .sk_iters = p->sk_iters,
      .mask_probability = (float)p->mask_probability, .mask_ratio_lo = (float)p->mask_ratio_lo,
      .mask_ratio_hi = (float)p->mask_ratio_hi, .adamw = dl_adamw_config_default(), .seed = r->seed};
  c.weights.dino = (float)p->dino_weight;
  c.weights.ibot = (float)p->ibot_weight;
  c.weights.koleo = (float)p->koleo_weight;
  c.adamw.clip = (float)p->clip;
  c.adamw.layer_decay = (float)p->layer_decay;
  c.adamw.patch_embed_lr_mult = (float)p->patch_embed_lr_mult;
  c.sched.lr = (dl_schedule){.base = p->lr, .final = p->min_lr, .total = p->steps, .warmup = p->warmup_steps};
  c.sched.last_layer_lr = c.sched.lr;
  c.sched.last_layer_lr.zero_until = p->freeze_last_layer_steps;
  c.sched.wd = (dl_schedule){.base = p->weight_decay, .final = p->weight_decay_end, .total = p->steps};
  c.sched.momentum = (dl_schedule){.base = p->momentum, .final = p->momentum_end, .total = p->steps};
  c.sched.teacher_temp = (dl_schedule){.base = p->teacher_temp, .final = p->teacher_temp,
                                       .total = p->teacher_temp_warmup_steps, .warmup = p->teacher_temp_warmup_steps,
                                       .start_warmup = p->teacher_temp_start};
  return c;
}

// Copies one block's crops into the crop-major batch (crop c, image i at row c * batch + i).
static void place_block(const dl_block *b, int first_image, int batch, float *global, float *local) {
  const size_t gsz = 3 * (size_t)b->global_size * b->global_size, lsz = 3 * (size_t)b->local_size * b->local_size;
  for (int i = 0; i < b->num_samples; i++) {
    for (int c = 0; c < b->global_count; c++)
      memcpy(global + ((size_t)c * batch + first_image + i) * gsz,
             b->global_crops + ((size_t)i * b->global_count + c) * gsz, gsz * sizeof(float));
    for (int c = 0; c < b->local_count; c++)
      memcpy(local + ((size_t)c * batch + first_image + i) * lsz,
             b->local_crops + ((size_t)i * b->local_count + c) * lsz, lsz * sizeof(float));
  }
}

static void save(const char *dir, const dl_pretrainer *t, long step) {
  char path[4200];
  dl_err err;
  snprintf(path, sizeof path, "%s/backbone.safetensors", dir);
  if (dl_vit_save(&t->teacher, t->mods[0].ema, path, &err)) dl_die_input("pretrain: %s", err.msg);
  snprintf(path, sizeof path, "%s/heads.safetensors", dir);
  if (dl_heads_save(&t->heads[0], t->mods[1].ema, &t->heads[1], t->mods[2].ema, path, &err))
    dl_die_input("pretrain: %s", err.msg);
  printf("event=saved step=%ld dir=%s\n", step, dir);
  fflush(stdout);
}

static void check_recipe(const dl_recipe *r, const char *path) {
  const dl_recipe_pretrain *p = &r->pretrain;
  if (!p->present) dl_die_input("pretrain: %s has no pretrain section", path);
  if (p->batch % r->block_size) dl_die_input("pretrain: pretrain.batch %d is not a multiple of data.block_size %d", p->batch, r->block_size);
  if (r->crops.global_size % p->patch || (r->crops.local_count && r->crops.local_size % p->patch))
    dl_die_input("pretrain: crop sizes %d and %d are not multiples of pretrain.patch %d", r->crops.global_size,
                 r->crops.local_size, p->patch);
  if (r->crops.global_count != 2) dl_die_input("pretrain: needs crops.global_count 2 (each global crop is taught by the other)");
}

int cmd_pretrain(int argc, char **argv) {
  const char *recipe_path = NULL, *out = NULL;
  int steps = -1;
  const dl_flag flags[] = {
      {"recipe", DL_FLAG_STRING, &recipe_path, "FILE", "recipe with data, crops and pretrain sections"},
      {"out", DL_FLAG_STRING, &out, "DIR", "writes DIR/backbone.safetensors and DIR/heads.safetensors (EMA teacher)"},
      {"steps", DL_FLAG_INT, &steps, "N", "stop after N steps (the schedules still span pretrain.steps); 0: write the initialized model"},
  };
  const dl_command_spec spec = {
      "pretrain", "--recipe R --out DIR [--steps N]",
      "Trains a ViT from scratch with DINOv2 self-distillation (EMA teacher, DINO + iBOT\n"
      "with masking + KoLeo) and exports the teacher's backbone and DINO/iBOT heads.\n"
      "SIGINT/SIGTERM stop after the current step and save.",
      flags, (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  dl_require_flag(&spec, "recipe", recipe_path);
  dl_require_flag(&spec, "out", out);
  if (steps < -1) dl_die_input("pretrain: --steps must be 0 or positive");
  dl_recipe r;
  dl_err err;
  if (dl_recipe_load(recipe_path, &r, &err)) dl_die_input("%s", err.msg);
  check_recipe(&r, recipe_path);
  if (mkdir(out, 0777) != 0 && access(out, W_OK) != 0) dl_die_input("pretrain: cannot create or write %s", out);
  dl_dataset *ds;
  if (dl_dataset_open(r.dataset, &ds, &err)) dl_die_input("%s", err.msg);

  const dl_recipe_pretrain *p = &r.pretrain;
  const dl_vit_config vc = model_config(&r);
  dl_vit vit;
  dl_vit_init_random(&vit, &vc, (float)p->layerscale, r.seed);
  const dl_pretrain_config pc = pretrain_config(&r);
  dl_pretrainer t;
  if (dl_pretrainer_init(&t, &vit, &pc, &err)) dl_die_input("pretrain: %s", err.msg);
  const long run_steps = steps >= 0 && steps < p->steps ? steps : p->steps;
  const int per_step = p->batch / r.block_size;
  // The schedules' step counts are the recipe's; a shorter run ends early.
  dl_sample_stream st = {ds, r.seed, r.block_size, r.crops, 0};
  dl_loader *ld = dl_loader_start(&st, 0, 1, run_steps * per_step, r.crops.global_size, r.loader_threads, 2 * per_step);
  const size_t gsz = 3 * (size_t)pc.global_size * pc.global_size, lsz = 3 * (size_t)pc.local_size * pc.local_size;
  float *global = dl_malloc((size_t)pc.global_crops * p->batch * gsz * sizeof(float));
  float *local = dl_malloc(((size_t)pc.local_crops * p->batch * lsz + 1) * sizeof(float));
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  printf("event=start params=%zu steps=%ld batch=%d dim=%d depth=%d\n", dl_vit_param_count(&vit), run_steps, p->batch,
         vc.dim, vc.depth);
  const double t0 = dl_now_seconds();
  long s = 0;
  double data_wait = 0.0;  // seconds the step waited for the loader
  for (; s < run_steps && !g_stop; s++) {
    const double w0 = dl_now_seconds();
    for (int j = 0; j < per_step; j++) {
      dl_block b;
      if (!dl_loader_next(ld, &b)) dl_die_input("pretrain: the loader ended early");
      place_block(&b, j * r.block_size, p->batch, global, local);
      dl_block_free(&b);
    }
    data_wait += dl_now_seconds() - w0;
    dl_pretrain_report rep;
    if (dl_pretrainer_step(&t, global, local, &rep, &err)) dl_die_input("pretrain: %s", err.msg);
    if ((s + 1) % p->log_every == 0 || s + 1 == run_steps) {
      const double el = dl_now_seconds() - t0;
      printf("step=%ld loss=%.4f dino=%.4f ibot=%.4f koleo=%.4f lr=%.3g wd=%.3g momentum=%.5f teacher_temp=%.4f "
             "masked=%d img_s=%.1f data_wait_s=%.1f elapsed_s=%.0f eta_s=%.0f\n", s + 1, rep.total, rep.dino, rep.ibot, rep.koleo,
             rep.lr, rep.wd, rep.momentum, rep.teacher_temp, rep.masked, (s + 1) * p->batch / el, data_wait, el,
             el / (s + 1) * (run_steps - s - 1));
      fflush(stdout);
    }
    if (p->save_every && (s + 1) % p->save_every == 0) save(out, &t, s + 1);
  }
  if (!(p->save_every && s > 0 && s % p->save_every == 0)) save(out, &t, s);  // unless just saved
  printf("event=done steps=%ld seconds=%.1f skipped_items=%lld\n", s, dl_now_seconds() - t0,
         (long long)dl_loader_skipped(ld));
  dl_loader_stop(ld);
  free(global);
  free(local);
  dl_pretrainer_free(&t);
  dl_vit_free(&vit);
  dl_dataset_close(ds);
  return 0;
}
