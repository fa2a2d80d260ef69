// The CUDA backend's host logic, checked on any machine (no GPU needed):
// the row-major -> column-major GEMM plans executed by a reference GEMM
// against the CPU linear layer, the AdamW segment table against
// dl_adamw_step, the NCCL id file rendezvous, and the device buffer carving.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "model/cpu/ops.h"
#include "model/cpu/ops_backward.h"
#include "model/cuda/adamw_segments.h"
#include "model/cuda/gemm_plan.h"
#include "model/cuda/rendezvous.h"
#include "model/cuda/train_flops.h"
#include "model/cuda/vit_cuda_layout.h"
#include "model/optim.h"
#include "tests/harness.h"

static float uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*s >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}
static float *random_floats(size_t n, uint64_t *s) {
  float *x = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) x[i] = uniform(s);
  return x;
}

// What cuBLAS computes for a plan: column-major C = op(A) op(B) + beta C.
static void reference_gemm(const dl_gemm_plan *p, const float *a, const float *b, float *c, float beta) {
  for (int j = 0; j < p->cols; j++)
    for (int i = 0; i < p->rows; i++) {
      double acc = 0.0;
      for (int l = 0; l < p->inner; l++) {
        const float av = p->trans_a ? a[l + (size_t)i * p->lda] : a[i + (size_t)l * p->lda];
        const float bv = p->trans_b ? b[j + (size_t)l * p->ldb] : b[l + (size_t)j * p->ldb];
        acc += (double)av * bv;
      }
      float *cv = &c[i + (size_t)j * p->ldc];
      *cv = (float)(beta * *cv + acc);
    }
}

static const float *pick(dl_gemm_operand o, const float *x, const float *w, const float *dy) {
  return o == DL_OPERAND_X ? x : o == DL_OPERAND_W ? w : dy;
}

static void check_gemm_plans(int m, int k, int n) {
  uint64_t s = 42 + (uint64_t)m * 131 + (uint64_t)k * 17 + (uint64_t)n;
  float *x = random_floats((size_t)m * k, &s), *w = random_floats((size_t)n * k, &s);
  float *dy = random_floats((size_t)m * n, &s), *dw0 = random_floats((size_t)n * k, &s);
  float *y_cpu = malloc((size_t)m * n * sizeof(float)), *y_plan = calloc((size_t)m * n, sizeof(float));
  dl_linear(y_cpu, x, w, NULL, m, k, n);
  dl_gemm_plan p = dl_gemm_plan_make(DL_GEMM_FORWARD, m, k, n);
  CHECK(p.a_rows * p.a_cols == (p.a == DL_OPERAND_W ? n * k : m * k) && p.ldc == p.rows,
        "forward plan %dx%dx%d: operand shapes cover the tensors", m, k, n);
  reference_gemm(&p, pick(p.a, x, w, dy), pick(p.b, x, w, dy), y_plan, 0.0f);
  double e = dl_rel_err(y_plan, y_cpu, (size_t)m * n);
  CHECK(e < 1e-6, "forward plan %dx%dx%d vs dl_linear: rel err %.2g < 1e-6", m, k, n, e);

  float *ones = malloc((size_t)m * sizeof(float));
  for (int i = 0; i < m; i++) ones[i] = 1.0f;
  float *dx_cpu = malloc((size_t)m * k * sizeof(float)), *dw_cpu = malloc((size_t)n * k * sizeof(float));
  memcpy(dw_cpu, dw0, (size_t)n * k * sizeof(float));
  dl_linear_backward(dx_cpu, dw_cpu, NULL, dy, x, w, m, k, n, ones, 0);

  float *dx_plan = calloc((size_t)m * k, sizeof(float)), *dw_plan = malloc((size_t)n * k * sizeof(float));
  p = dl_gemm_plan_make(DL_GEMM_BACKWARD_INPUT, m, k, n);
  reference_gemm(&p, pick(p.a, x, w, dy), pick(p.b, x, w, dy), dx_plan, 0.0f);
  e = dl_rel_err(dx_plan, dx_cpu, (size_t)m * k);
  CHECK(e < 1e-6, "input-gradient plan %dx%dx%d vs dl_linear_backward: rel err %.2g < 1e-6", m, k, n, e);

  // beta = 1: the weight gradient accumulates onto what is there.
  memcpy(dw_plan, dw0, (size_t)n * k * sizeof(float));
  p = dl_gemm_plan_make(DL_GEMM_BACKWARD_WEIGHT, m, k, n);
  reference_gemm(&p, pick(p.a, x, w, dy), pick(p.b, x, w, dy), dw_plan, 1.0f);
  e = dl_rel_err(dw_plan, dw_cpu, (size_t)n * k);
  CHECK(e < 1e-6, "weight-gradient plan %dx%dx%d (accumulating) vs dl_linear_backward: rel err %.2g < 1e-6", m, k,
        n, e);
  free(x); free(w); free(dy); free(dw0); free(y_cpu); free(y_plan); free(ones);
  free(dx_cpu); free(dw_cpu); free(dx_plan); free(dw_plan);
}

static float max_abs_diff(const float *a, const float *b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; i++) {
    const float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    m = d > m ? d : m;
  }
  return m;
}

// The segment table and the shared element update against dl_adamw_step on
// a small ViT, with a frozen tensor and padding between tensors.
static void check_adamw_segments(void) {
  const dl_vit_config cfg = {.patch = 14, .dim = 64, .depth = 2, .heads = 1, .ffn_hidden = 128,
                             .registers = 4, .pos_grid = 4, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_ANTIALIAS};
  dl_vit_layout layout;
  dl_vit_layout_build(&cfg, &layout);
  const size_t total = layout.total;
  uint64_t s = 7;
  float *p_cpu = random_floats(total, &s), *p_seg = malloc(total * sizeof(float));
  memcpy(p_seg, p_cpu, total * sizeof(float));
  dl_adamw_config ac = dl_adamw_config_default();
  ac.layer_decay = 0.9f;
  ac.patch_embed_lr_mult = 0.2f;
  dl_optim_module cpu, seg;
  dl_optim_module_init(&cpu, &layout, p_cpu, cfg.depth, &ac);
  dl_optim_module_init(&seg, &layout, p_seg, cfg.depth, &ac);
  cpu.groups[dl_vit_global_index(DL_P_MASK)].frozen = seg.groups[dl_vit_global_index(DL_P_MASK)].frozen = true;
  dl_adamw_segment *segs = malloc((size_t)layout.count * sizeof *segs);
  int misplaced = 0, padding = 0;
  for (long step = 1; step <= 3; step++) {
    for (size_t i = 0; i < total; i++) cpu.grads[i] = seg.grads[i] = uniform(&s);
    const double lr = 1e-3 * (double)step, wd = 0.04, last = 0.0;
    dl_adamw_step(&cpu, &ac, step, lr, wd, last);
    float bc2s;
    dl_adamw_segments_fill(segs, &seg, &ac, step, lr, wd, last, &bc2s);
    // Exactly as the kernel walks the flat buffer: every index finds its segment.
    for (size_t i = 0; i < total; i++) {
      const int si = dl_adamw_segment_find(segs, layout.count, i);
      const dl_adamw_segment *sg = &segs[si];
      if (sg->offset > i || (si + 1 < layout.count && segs[si + 1].offset <= i)) misplaced++;
      if (i >= sg->offset + sg->numel) {
        padding++;
        continue;
      }
      if (sg->frozen) continue;
      dl_adamw_segment_apply(sg, &seg.params[i], &seg.m[i], &seg.v[i], seg.grads[i], ac.beta1, ac.beta2, ac.eps,
                             bc2s);
    }
  }
  CHECK(misplaced == 0, "segment search: %d of %zu indices outside the segment found", misplaced, total);
  printf("info %d tensors, %zu floats, %d padding visits\n", layout.count, total, padding);
  const float dp = max_abs_diff(p_seg, p_cpu, total), dm = max_abs_diff(seg.m, cpu.m, total);
  const float dv = max_abs_diff(seg.v, cpu.v, total);
  CHECK(dp <= 1e-7f && dm <= 1e-7f && dv <= 1e-7f,
        "3 AdamW steps through the segment table vs dl_adamw_step: max |diff| params %.2g m %.2g v %.2g <= 1e-7", dp,
        dm, dv);
  const dl_param_entry *mask = &layout.entries[dl_vit_global_index(DL_P_MASK)];
  CHECK(memcmp(seg.m + mask->offset, cpu.m + mask->offset, mask->numel * sizeof(float)) == 0 &&
            seg.m[mask->offset] == 0.0f,
        "the frozen mask token keeps zero moments");
  dl_optim_module_free(&cpu);
  dl_optim_module_free(&seg);
  free(p_cpu); free(p_seg); free(segs);
  dl_vit_layout_free(&layout);
}

static void check_rendezvous(void) {
  char path[256];
  snprintf(path, sizeof path, "%s/distill_rendezvous_%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
           (long)getpid());
  unlink(path);
  unsigned char id[128], got[128];
  for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 11);
  dl_err err;

  int rc = dl_rendezvous_wait(path, "run-a", got, sizeof got, 0.05, &err);
  CHECK(rc != 0 && strstr(err.msg, "no file"), "wait without a file times out: %s", rc ? err.msg : "returned 0");

  // A waiter started before the publisher gets the blob.
  const pid_t child = fork();
  if (child == 0) {
    dl_err e;
    unsigned char b[128];
    const int r = dl_rendezvous_wait(path, "run-a", b, sizeof b, 10.0, &e);
    _exit(r == 0 && memcmp(b, id, sizeof b) == 0 ? 0 : 1);
  }
  const struct timespec pause = {0, 100 * 1000 * 1000};
  nanosleep(&pause, NULL);
  rc = dl_rendezvous_publish(path, "run-a", id, sizeof id, &err);
  CHECK(rc == 0, "publish: %s", rc ? err.msg : "ok");
  int status = -1;
  waitpid(child, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a waiting process received the 128-byte id");

  memset(got, 0, sizeof got);
  rc = dl_rendezvous_wait(path, "run-a", got, sizeof got, 1.0, &err);
  CHECK(rc == 0 && memcmp(got, id, sizeof id) == 0, "same session reads the published id");
  rc = dl_rendezvous_wait(path, "run-b", got, sizeof got, 0.05, &err);
  CHECK(rc != 0 && strstr(err.msg, "another session"), "another run's file is refused: %s",
        rc ? err.msg : "accepted");
  rc = dl_rendezvous_wait(path, "run-a", got, 64, 0.05, &err);
  CHECK(rc != 0 && strstr(err.msg, "expected 64"), "a blob of the wrong size is refused: %s",
        rc ? err.msg : "accepted");

  FILE *f = fopen(path, "wb");
  fputs("garbage", f);
  fclose(f);
  rc = dl_rendezvous_wait(path, "run-a", got, sizeof got, 0.05, &err);
  CHECK(rc != 0 && strstr(err.msg, "not a rendezvous file"), "a foreign file is refused: %s",
        rc ? err.msg : "accepted");
  unlink(path);
}

static void check_carving(void) {
  // ViT-g/14 at 224 and 518, the teacher's two shapes.
  const dl_vit_config g = {.patch = 14, .dim = 1536, .depth = 40, .heads = 24, .ffn_hidden = 4096,
                           .registers = 0, .pos_grid = 37, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_LEGACY};
  const int shapes[2][2] = {{64, 224}, {8, 518}};
  for (int c = 0; c < 2; c++) {
    const int n = shapes[c][0], res = shapes[c][1];
    dl_cuda_vit_buffers b;
    const size_t bf16 = dl_cuda_vit_carve(&b, NULL, &g, 2, n, res, res);
    const size_t f32 = dl_cuda_vit_carve(&b, NULL, &g, 4, n, res, res);
    unsigned char *base = (unsigned char *)(uintptr_t)4096;  // addresses only, never dereferenced
    dl_cuda_vit_carve(&b, base, &g, 2, n, res, res);
    const int np = (res / 14) * (res / 14), t = 1 + np;
    const size_t rows = (size_t)n * t;
    // Each buffer's start, in carving order, and the bytes it must hold.
    void *starts[] = {b.x, b.ln, b.qkv, b.attn, b.hidden, b.gated, b.tmp, b.unfold, b.pos};
    const size_t need[] = {rows * 1536 * 2, rows * 1536 * 2, rows * 3 * 1536 * 2, rows * 1536 * 2,
                           rows * 8192 * 2, rows * 4096 * 2, rows * 1536 * 2, (size_t)n * np * 588 * 2,
                           (size_t)np * 1536 * 2};
    int bad = 0;
    for (int i = 0; i < 9; i++) {
      const size_t off = (size_t)((unsigned char *)starts[i] - base);
      const size_t end = i < 8 ? (size_t)((unsigned char *)starts[i + 1] - base) : bf16;
      if (off % 256 || end < off + need[i]) bad++;
    }
    CHECK(bad == 0, "ViT-g batch %d at %d: 9 buffers 256-byte aligned, none overlapping (%.2f GiB bf16)", n, res,
          (double)bf16 / (1 << 30));
    CHECK(f32 > bf16 && f32 <= 2 * bf16 + 9 * 256, "float32 buffers take twice the bf16 bytes (%zu vs %zu)", f32,
          bf16);
  }
}

// ViT-g/14 at 224 px, counted by hand: 257 tokens, 40 blocks of
// qkv 1536x4608, proj 1536x1536, fc1 1536x8192, fc2 4096x1536 and attention.
static void check_flops(void) {
  const dl_vit_config g = {.patch = 14, .dim = 1536, .depth = 40, .heads = 24, .ffn_hidden = 4096,
                           .registers = 0, .pos_grid = 37, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_LEGACY};
  const double t = 257, linear = 1536.0 * 4608 + 1536.0 * 1536 + 1536.0 * 8192 + 4096.0 * 1536;
  const double want = 2 * 256 * 588.0 * 1536 + 40 * (2 * t * linear + 4 * t * t * 1536);
  const double got = dl_vit_forward_flops(&g, 224, 224);
  CHECK(fabs(got - want) <= 1e-9 * want, "ViT-g/14 224 px forward: %.1f GFLOP per image (hand count %.1f)",
        got / 1e9, want / 1e9);
}

// One ViT-S/14 forward at r px counted by hand: patch embedding, 12 blocks of
// qkv 384x1152, proj 384x384, fc1 384x1536, fc2 1536x384 and attention.
static double vits14_forward_by_hand(int r) {
  const double np = (r / 14) * (r / 14), t = np + 1;
  return 2 * np * 588.0 * 384 + 12 * (2 * t * (384.0 * 1152 + 384.0 * 384 + 384.0 * 1536 + 1536.0 * 384) +
                                      4 * t * t * 384);
}

// The student training step of bench/run gpu-train-vits14, per image: 2 x 224
// + 8 x 98 crops, DINO/iBOT heads 384 -> 2048 -> 2048 -> 256 -> 65536, the
// teacher's last layers (bottleneck 256) on 2 CLS and 512 patch rows; the
// features kind with adaptors 384 -> 1536 -> 1536.
static void check_train_flops(void) {
  const dl_vit_config s = {.patch = 14, .dim = 384, .depth = 12, .heads = 6, .ffn_hidden = 1536,
                           .registers = 0, .pos_grid = 16, .ffn = DL_FFN_MLP, .interp = DL_INTERP_LEGACY};
  const dl_head_config h = {.in_dim = 384, .hidden_dim = 2048, .out_dim = 256, .nlayers = 3, .prototypes = 65536};
  dl_train_config c = {.mode = DL_TRAIN_PROTOTYPES, .batch = 32, .global_crops = 2, .local_crops = 8,
                       .global_size = 224, .local_size = 98, .dino_head = h, .ibot_head = h, .teacher_dim = 1536};
  const double backbone = 2 * vits14_forward_by_hand(224) + 8 * vits14_forward_by_hand(98);
  const double head = 2 * (384.0 * 2048 + 2048.0 * 2048 + 2048.0 * 256) + 2 * 256.0 * 65536;
  const double want = 3 * (backbone + 10 * head + 512 * head) + 2 * 256.0 * 65536 * (2 + 512);
  double got = dl_train_step_flops(&s, &c, 256);
  CHECK(fabs(got - want) <= 1e-9 * want, "ViT-S/14 prototypes training step: %.1f GFLOP per image (hand count %.1f)",
        got / 1e9, want / 1e9);
  c.mode = DL_TRAIN_FEATURES;
  const double adaptor = 2 * (384.0 * 1536 + 1536.0 * 1536);
  const double want_f = 3 * (backbone + 10 * adaptor + 512 * adaptor);
  got = dl_train_step_flops(&s, &c, 256);
  CHECK(fabs(got - want_f) <= 1e-9 * want_f, "ViT-S/14 features training step: %.1f GFLOP per image (hand count %.1f)",
        got / 1e9, want_f / 1e9);
}

int main(void) {
  check_flops();
  check_train_flops();
  check_gemm_plans(7, 5, 3);
  check_gemm_plans(33, 64, 17);
  check_gemm_plans(1, 9, 12);
  check_adamw_segments();
  check_rendezvous();
  check_carving();
  return dl_test_summary("test_cuda_host");
}
