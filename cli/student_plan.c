// The plan's table: one pair of columns (CPU float32, GPU bf16) per phase.
#include "cli/student_plan.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/err.h"
#include "student/memory_plan.h"

#define DEFAULT_MEMORY "80G"
#define MAX_BATCH_CAP (1 << 20)  // images per rank the largest-batch search goes up to

double dl_parse_memory_size(const char *text) {
  char *end = NULL;
  errno = 0;
  const double v = strtod(text, &end);
  if (errno || end == text || !isfinite(v) || v <= 0) return -1;
  static const char *const units = "KMGT";
  double scale = 1;
  if (*end) {
    const char *u = strchr(units, toupper((unsigned char)*end));
    if (!u) return -1;
    scale = ldexp(1.0, 10 * (int)(u - units + 1));
    end++;
    if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0) end += strlen(end);
  }
  return *end ? -1 : v * scale;
}

static const char *human(char *buf, size_t n, size_t bytes) {
  if (bytes >= ((size_t)1 << 30)) snprintf(buf, n, "%.2f GiB", bytes / 1073741824.0);
  else snprintf(buf, n, "%.1f MiB", bytes / 1048576.0);
  return buf;
}

static void print_header(const char *path, const dl_recipe *r, const dl_mem_recipe_plan *p) {
  const dl_mem_shape *s = &p->phases[0].shape;
  const dl_vit_config *v = &s->student;
  printf("memory plan: %s, %d rank(s), %d images per rank (%d blocks of %d; train.batch %d)\n", path, p->ranks,
         p->batch, p->blocks_per_rank, r->block_size, r->train.batch);
  printf("student: ViT %d wide, %d blocks, %d heads, %s %d, patch %d, %d registers\n", v->dim, v->depth, v->heads,
         v->ffn == DL_FFN_SWIGLU ? "SwiGLU" : "MLP", v->ffn_hidden, v->patch, v->registers);
  if (s->mode == DL_TRAIN_PROTOTYPES)
    printf("targets: prototypes; DINO head %dx%d -> %d x %d prototypes, iBOT head -> %d x %d; iBOT logits on %s\n",
           s->head[0].hidden_dim, s->head[0].nlayers, s->head[0].out_dim, s->head[0].prototypes, s->head[1].out_dim,
           s->head[1].prototypes, p->ibot_selected ? "the selected patches (their upper bound)" : "every patch");
  else
    printf("targets: features of width %d; adaptors %d -> %d -> %d\n", s->teacher_width[0], v->dim,
           s->head[0].hidden_dim, s->head[0].out_dim);
  if (s->mode == DL_TRAIN_PROTOTYPES) {
    size_t c[2];
    dl_mem_loss_chunks(s, 2, c);
    printf("GPU losses: the student's logits in chunks of %zu (DINO) and %zu (iBOT) rows (bf16); the teacher's "
           "logits once per head\n", c[0], c[1]);
  }
  printf("CPU: float32, %d OpenMP threads; GPU: bf16 activations, float32 masters, gradients, moments, EMA\n\n",
         s->threads);
}

static void print_table(const dl_mem_recipe_plan *p) {
  char a[32], b[32], label[64];
  printf("%-22s", "per rank");
  for (int i = 0; i < p->nphases; i++) {
    const dl_mem_shape *s = &p->phases[i].shape;
    snprintf(label, sizeof label, "%s: %d px, locals %d", p->phases[i].name, s->global_size, s->local_size);
    printf("  %-26s", label);
  }
  printf("\n%-22s", "");
  for (int i = 0; i < p->nphases; i++) printf("  %12s %13s", "CPU f32", "GPU bf16");
  printf("\n");
  for (int k = 0; k <= DL_MEM_ITEMS; k++) {
    printf("%-22s", k < DL_MEM_ITEMS ? dl_mem_item_name((dl_mem_item)k) : "total");
    for (int i = 0; i < p->nphases; i++) {
      const dl_mem_plan *m = &p->phases[i].plan;
      const size_t cpu = k < DL_MEM_ITEMS ? m->cpu[k] : m->cpu_total, gpu = k < DL_MEM_ITEMS ? m->gpu[k] : m->gpu_total;
      // The client and the loader live in host memory; the GPU's matrix
      // multiplies keep no packed copies (their workspace is in the runtime).
      const char *gpu_text = k == DL_MEM_WINDOW || k == DL_MEM_LOADER ? "(host)" : k == DL_MEM_BLAS ? "-" : NULL;
      printf("  %12s %13s", human(a, sizeof a, cpu), gpu_text ? gpu_text : human(b, sizeof b, gpu));
    }
    printf("%s\n", k == DL_MEM_RUNTIME ? "   (GPU: estimated)" : "");
  }
}

static void print_footer(const dl_mem_recipe_plan *p) {
  char a[32], b[32];
  size_t idle = 0;
  for (int i = 0; i < p->nphases; i++)
    if (p->phases[i].plan.cpu_untouched > idle) idle = p->phases[i].plan.cpu_untouched;
  printf("\n");
  if (p->switch_cpu)
    printf("switch to hires: %s on the CPU for a moment (the main phase's trainer and the new one's state)\n",
           human(a, sizeof a, p->switch_cpu));
  printf("peak per rank: CPU %s, GPU %s\n", human(a, sizeof a, p->peak_cpu), human(b, sizeof b, p->peak_gpu));
  printf("allocated on the CPU but never written (address space, not memory): up to %s\n", human(a, sizeof a, idle));
}

static void print_fits(const dl_recipe *r, const dl_mem_options *o, const char *memory, double bytes) {
  dl_err err;
  // In whole blocks of the recipe, and with blocks of one sample (a smaller
  // data.block_size, which the teacher's recipe must share).
  dl_recipe one = *r;
  one.block_size = 1;
  int fit[4];
  for (int i = 0; i < 4; i++)
    if ((fit[i] = dl_mem_max_batch(i < 2 ? r : &one, o, (size_t)bytes, i % 2, MAX_BATCH_CAP, &err)) < 0)
      dl_die_input("student: --plan: %s", err.msg);
  printf("largest per-rank batch within %s: CPU %d, GPU %d images in whole blocks of %d; CPU %d, GPU %d with "
         "data.block_size 1%s\n", memory, fit[0], fit[1], r->block_size, fit[2], fit[3],
         fit[3] > 1024 ? " (the CUDA step takes at most 1024)" : "");
}

int dl_student_plan(const char *recipe_path, int ranks, const char *memory) {
  if (!memory) memory = DEFAULT_MEMORY;
  const double bytes = dl_parse_memory_size(memory);
  if (bytes < 0) dl_die_input("student: --memory %s: give a size such as 80G, 512M or 1.5T", memory);
  if (ranks < 1) dl_die_input("student: --ranks %d: a group has at least one rank", ranks);
  dl_recipe r;
  dl_err err;
  if (dl_recipe_load(recipe_path, &r, &err)) dl_die_input("%s", err.msg);
  dl_mem_options o = {.ranks = ranks, .batch = 0, .ibot = DL_MEM_IBOT_RECIPE};
  dl_mem_recipe_plan p;
  if (dl_mem_plan_recipe(&r, &o, &p, &err)) dl_die_input("student: --plan: %s: %s", recipe_path, err.msg);
  print_header(recipe_path, &r, &p);
  print_table(&p);
  print_footer(&p);
  if (r.train.prototypes) {  // the other iBOT choice, for comparison
    dl_mem_options other = o;
    other.ibot = p.ibot_selected ? DL_MEM_IBOT_ALL : DL_MEM_IBOT_SELECTED;
    dl_mem_recipe_plan q;
    char a[32], b[32];
    if (dl_mem_plan_recipe(&r, &other, &q, &err) == 0)
      printf("with iBOT logits on %s instead: peak CPU %s, GPU %s\n",
             q.ibot_selected ? "the selected patches" : "every patch", human(a, sizeof a, q.peak_cpu),
             human(b, sizeof b, q.peak_gpu));
  }
  print_fits(&r, &o, memory, bytes);
  return 0;
}
