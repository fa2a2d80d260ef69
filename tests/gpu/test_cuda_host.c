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
#include "model/cuda/attention_plan.h"
#include "model/cuda/gemm_plan.h"
#include "model/cuda/grad_buckets.h"
#include "model/cuda/loss_chunks.h"
#include "model/cuda/rendezvous.h"
#include "model/cuda/train_flops.h"
#include "model/cuda/vec_plan.h"
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

// The alignment the heuristic is told: what the address promises, capped at 256.
static void check_gemm_alignment(void) {
  unsigned char *base = (unsigned char *)(uintptr_t)(1u << 20);  // addresses only, never dereferenced
  const int offsets[] = {0, 2, 16, 32, 96, 256, 384, 4094};
  const int want[] = {256, 2, 16, 32, 32, 256, 128, 2};
  int bad = 0;
  for (int i = 0; i < 8; i++) bad += dl_gemm_alignment(base + offsets[i]) != want[i];
  CHECK(bad == 0, "pointer alignment at offsets 0, 2, 16, 32, 96, 256, 384, 4094 of a 1 MiB address: %d wrong", bad);
  CHECK(dl_gemm_alignment(NULL) == 256 && dl_gemm_alignment(base + 1) == 1, "NULL counts as 256, an odd address as 1");
  // A bf16 weight 32 bytes into a 256-aligned buffer: its key differs from the aligned one's.
  const dl_gemm_plan p = dl_gemm_plan_make(DL_GEMM_FORWARD, 64, 384, 1152);
  const dl_gemm_key k256 = dl_gemm_key_make(&p, 14, 14, 2, 14, base, base, base, base);
  const dl_gemm_key k32 = dl_gemm_key_make(&p, 14, 14, 2, 14, base + 32, base, base, base);
  CHECK(k32.align_a == 32 && k256.align_a == 256 && memcmp(&k32, &k256, sizeof k32) != 0,
        "the A operand's alignment (32 vs 256) is part of the key");
}

// The plan cache: a key finds its own slot again, every field of the key
// tells plans apart, and the least recently used slot is the one evicted.
static void check_gemm_cache(void) {
  dl_gemm_cache *c = calloc(1, sizeof *c);
  const dl_gemm_plan fwd = dl_gemm_plan_make(DL_GEMM_FORWARD, 64, 384, 1152);
  const void *ptr = (const void *)(uintptr_t)4096;
  const dl_gemm_key k = dl_gemm_key_make(&fwd, 14, 14, 1, 14, ptr, ptr, ptr, ptr);
  int hit = -1;
  dl_gemm_cache_slot *first = dl_gemm_cache_lookup(c, &k, &hit);
  first->value = (void *)first;
  CHECK(hit == 0 && c->misses == 1, "a new key misses");
  dl_gemm_cache_slot *again = dl_gemm_cache_lookup(c, &k, &hit);
  CHECK(hit == 1 && again == first && again->value == (void *)first, "the same key hits its slot and value");
  // Each variation of one field must miss.
  dl_gemm_key v[8];
  for (int i = 0; i < 8; i++) v[i] = k;
  v[0].trans_a ^= 1, v[1].rows++, v[2].inner++, v[3].ldb++, v[4].ab_type = 0, v[5].c_type = 0, v[6].epilogue = 0;
  v[7].align_d = 32;
  int missed = 0;
  for (int i = 0; i < 8; i++) {
    dl_gemm_cache_slot *sl = dl_gemm_cache_lookup(c, &v[i], &hit);
    missed += !hit && sl != first;
  }
  CHECK(missed == 8, "transpose, shape, leading dimension, types, epilogue and alignment each key a new plan (%d/8)",
        missed);
  // Fill every slot, touching the first key each time: the eviction takes
  // the oldest other key, never the one in use.
  dl_gemm_key fill = k;
  dl_gemm_cache_slot *evicted = NULL;
  long evictions = c->evictions;
  for (int i = 0; i < DL_GEMM_CACHE_SLOTS; i++) {
    fill.cols = 10000 + i;
    dl_gemm_cache_slot *sl = dl_gemm_cache_lookup(c, &fill, &hit);
    if (c->evictions > evictions && !evicted) evicted = sl;
    evictions = c->evictions;
    dl_gemm_cache_lookup(c, &k, &hit);
  }
  CHECK(evicted != NULL && evicted != first && hit == 1, "a full cache evicts, but not the key used every time");
  dl_gemm_key oldest = k;
  oldest.trans_a ^= 1;  // v[0], the oldest key after k
  dl_gemm_cache_lookup(c, &oldest, &hit);
  CHECK(hit == 0, "the least recently used key (the first variation) was the one evicted");
  CHECK(c->hits >= DL_GEMM_CACHE_SLOTS + 1, "%ld hits, %ld misses, %ld evictions", c->hits, c->misses,
        c->evictions);
  free(c);
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

// DISTILL_NCCL_TIMEOUT_S: the default when unset, seconds when a positive number, refused otherwise.
static void check_nccl_timeout(void) {
  dl_err err;
  double t = -1;
  CHECK(dl_nccl_timeout_parse(NULL, &t, &err) == 0 && t == DL_NCCL_TIMEOUT_DEFAULT_S &&
            dl_nccl_timeout_parse("", &t, &err) == 0 && t == DL_NCCL_TIMEOUT_DEFAULT_S,
        "unset or empty: the default %.0f s", DL_NCCL_TIMEOUT_DEFAULT_S);
  CHECK(dl_nccl_timeout_parse("2.5", &t, &err) == 0 && t == 2.5, "'2.5' -> %.1f s", t);
  const char *bad[] = {"0", "-3", "ten", "5s", "nan", "1e9"};
  int refused = 0;
  for (int i = 0; i < 6; i++) refused += dl_nccl_timeout_parse(bad[i], &t, &err) == -1 && strstr(err.msg, bad[i]);
  CHECK(refused == 6, "0, -3, ten, 5s, nan, 1e9 refused with the value named (%d/6): %s", refused, err.msg);
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
    const size_t need[] = {rows * 1536 * 4, rows * 1536 * 2, rows * 3 * 1536 * 2, rows * 1536 * 2,
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

// The element-wise kernels' split into 16-byte vectors and a scalar tail:
// every element covered once, vectors only from 16-byte aligned pointers.
static void check_vec_plan(void) {
  unsigned char *base = (unsigned char *)(uintptr_t)4096;  // addresses only, never dereferenced
  const void *aligned[] = {base, base + 256, NULL};        // NULL: an absent optional pointer
  const void *odd[] = {base, base + 8};
  int bad = 0;
  const size_t ns[] = {0, 1, 7, 8, 9, 4095, 4096, 4097, (size_t)1 << 33};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    const size_t n = ns[i];
    const dl_vec_split b = dl_vec_plan(n, 2, aligned, 3), f = dl_vec_plan(n, 4, aligned, 3);
    const dl_vec_split m = dl_vec_plan(n, 2, odd, 2);
    bad += b.width != 8 || b.head % 8 || b.tail >= 8 || b.head + b.tail != n;
    bad += f.width != 4 || f.head % 4 || f.tail >= 4 || f.head + f.tail != n;
    bad += m.width != 1 || m.head != 0 || m.tail != n;
  }
  CHECK(bad == 0, "vector split: 8 bf16 / 4 float per 16-byte access plus a tail below that, all scalar when a "
                  "pointer is only 8-byte aligned (%d wrong)", bad);
  const void *x_bf16_rows[] = {base, base + 512};
  CHECK(dl_vec_row_width(1536, x_bf16_rows, 2) == 4 && dl_vec_row_width(384, x_bf16_rows, 2) == 4 &&
            dl_vec_row_width(6, x_bf16_rows, 2) == 1 && dl_vec_row_width(1536, odd, 2) == 1,
        "LayerNorm rows: 4 per access for d = 1536 and 384, one for d = 6 or an 8-byte aligned pointer");
}

// The prototype losses' chunks of rows (model/cuda/loss_chunks.h): the
// figures at K = 131072 (issue 15), a K that is no multiple of anything, and
// over a sweep, each chunk as large as the budget and the GEMM limit allow.
static void check_loss_chunks(void) {
  const int rows_ibot = 16384, K = 131072;
  const int bf16 = dl_loss_chunk_rows(rows_ibot, K, 2, DL_LOSS_CHUNK_DEFAULT_BYTES);
  CHECK(bf16 == 1024 && dl_loss_chunk_count(rows_ibot, bf16) == 16,
        "K = 131072, 16384 rows, bf16, 256 MiB: %d rows per chunk, %d chunks (1024, 16)", bf16,
        dl_loss_chunk_count(rows_ibot, bf16));
  const int unbounded = dl_loss_chunk_rows(rows_ibot, K, 4, SIZE_MAX);
  CHECK(unbounded == 8192 && (size_t)unbounded * K <= DL_LOSS_CHUNK_MAX_ELEMS && (size_t)unbounded * K < (1ull << 31),
        "without a budget the GEMM limit holds: %d rows of 131072 (2^30 elements)", unbounded);
  const int odd = dl_loss_chunk_rows(37, 1000, 4, 5 * 1000 * 4 + 3);
  CHECK(odd == 5 && dl_loss_chunk_count(37, odd) == 8 && 37 - 7 * odd == 2,
        "K = 1000, 37 rows, a budget of 5 rows and 3 bytes: %d rows per chunk, 8 chunks, the last of 2", odd);
  CHECK(dl_loss_chunk_rows(37, 1000, 4, 10) == 1 && dl_loss_chunk_rows(0, 1000, 4, 1 << 20) == 0 &&
            dl_loss_chunk_rows(3, 1000, 4, 1 << 20) == 3 && dl_loss_chunk_count(0, 5) == 0,
        "a budget below one row takes one row; no rows, no chunk; few rows, one chunk");
  int bad = 0;
  const int ks[] = {1, 7, 1000, 65536, 65537, 131072, 262144};
  const size_t budgets[] = {1, 4096, (size_t)3 << 20, (size_t)256 << 20, (size_t)64 << 30};
  for (size_t a = 0; a < sizeof ks / sizeof *ks; a++)
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++)
      for (size_t e = 2; e <= 4; e += 2)
        for (int rows = 1; rows <= 40000; rows = rows * 3 + 1) {
          const size_t k = (size_t)ks[a], n = (size_t)dl_loss_chunk_rows(rows, ks[a], e, budgets[b]);
          const bool fits = n * k <= DL_LOSS_CHUNK_MAX_ELEMS && n * k * e <= budgets[b];
          const bool more_fits = (n + 1) * k <= DL_LOSS_CHUNK_MAX_ELEMS && (n + 1) * k * e <= budgets[b];
          bad += n < 1 || n > (size_t)rows || (!fits && n != 1) || (more_fits && n != (size_t)rows);
          bad += dl_loss_chunk_count(rows, (int)n) != (int)((rows + n - 1) / n);
        }
  CHECK(bad == 0, "chunk sizes over 7 K x 5 budgets x 2 widths x 10 row counts: %d not the largest that fits", bad);
  setenv("DISTILL_CUDA_LOSS_CHUNK_BYTES", "4096", 1);
  const size_t set = dl_loss_chunk_budget();
  setenv("DISTILL_CUDA_LOSS_CHUNK_BYTES", "4k", 1);
  const size_t junk = dl_loss_chunk_budget();
  unsetenv("DISTILL_CUDA_LOSS_CHUNK_BYTES");
  CHECK(set == 4096 && junk == DL_LOSS_CHUNK_DEFAULT_BYTES && dl_loss_chunk_budget() == DL_LOSS_CHUNK_DEFAULT_BYTES,
        "DISTILL_CUDA_LOSS_CHUNK_BYTES: a number sets the budget (%zu), anything else leaves the default", set);
}

// The attention dispatch's host logic: DISTILL_ATTENTION, the strides
// through which cuDNN reads the packed qkv in place, the plan cache keying.
static int64_t element(const dl_attn_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
  return x->offset + i0 * x->strides[0] + i1 * x->strides[1] + i2 * x->strides[2] + i3 * x->strides[3];
}

static void check_attention_path(void) {
  dl_attn_path p = DL_ATTN_OWN;
  CHECK(dl_attn_path_parse(NULL, &p) == 0 && p == DL_ATTN_AUTO, "unset DISTILL_ATTENTION is auto");
  CHECK(dl_attn_path_parse("", &p) == 0 && p == DL_ATTN_AUTO, "empty DISTILL_ATTENTION is auto");
  CHECK(dl_attn_path_parse("own", &p) == 0 && p == DL_ATTN_OWN, "own");
  CHECK(dl_attn_path_parse("cudnn", &p) == 0 && p == DL_ATTN_CUDNN, "cudnn");
  CHECK(dl_attn_path_parse("auto", &p) == 0 && p == DL_ATTN_AUTO, "auto");
  CHECK(dl_attn_path_parse("cuDNN", &p) != 0 && dl_attn_path_parse("flash", &p) != 0, "anything else is refused");
  CHECK(!strcmp(dl_attn_path_name(DL_ATTN_CUDNN), "cudnn"), "path names");
}

// Every q, k, v element cuDNN addresses is the one the CPU op (and the own
// kernels) keep there, and together they cover qkv exactly once.
static void check_attention_layout(int n, int t, int heads, int hd) {
  dl_attn_layout l;
  dl_attn_layout_make(&l, n, t, heads, hd);
  const int64_t D = (int64_t)heads * hd, total = (int64_t)n * t * 3 * D;
  unsigned char *seen = calloc((size_t)total, 1);
  const dl_attn_tensor *qkv[3] = {&l.q, &l.k, &l.v};
  int bad = 0;
  for (int which = 0; which < 3; which++) {
    const dl_attn_tensor *x = qkv[which];
    bad += x->dims[0] != n || x->dims[1] != heads || x->dims[2] != t || x->dims[3] != hd || x->strides[3] != 1;
    for (int b = 0; b < n; b++)
      for (int h = 0; h < heads; h++)
        for (int s = 0; s < t; s++)
          for (int d = 0; d < hd; d++) {
            const int64_t want = ((int64_t)b * t + s) * 3 * D + which * D + (int64_t)h * hd + d;
            const int64_t got = element(x, b, h, s, d);
            bad += got != want;
            if (got >= 0 && got < total) seen[got]++;
            // The transposed view (K^T, V^T in the backward) is the same element.
            const dl_attn_tensor xt = dl_attn_transposed(x);
            bad += element(&xt, b, h, d, s) != got;
            // out [n, t, heads, hd], stats [n, heads, t].
            if (which == 0) {
              bad += element(&l.o, b, h, s, d) != ((int64_t)b * t + s) * D + (int64_t)h * hd + d;
              bad += element(&l.stats, b, h, s, 0) != ((int64_t)b * heads + h) * t + s;
            }
          }
  }
  for (int64_t i = 0; i < total; i++) bad += seen[i] != 1;
  CHECK(bad == 0, "attention layout n=%d t=%d heads=%d hd=%d: cuDNN's strides address the packed qkv (%d bad)", n,
        t, heads, hd, bad);
  const dl_attn_tensor p = dl_attn_packed(2, 3, 5, 7);
  CHECK(p.strides[0] == 105 && p.strides[1] == 35 && p.strides[2] == 7 && p.strides[3] == 1 && p.offset == 0,
        "packed strides");
  free(seen);
}

// The bucket plan of model/cuda/grad_buckets.h for one ViT and one target:
// the buckets tile the flat buffer from its end to its start, every
// parameter lies in exactly one, each starts after the backward stage that
// finishes its last parameter (never before, never later), and every bucket
// but the last holds at least the target and less than the target plus one
// stage.
static void check_bucket_plan(const char *name, const dl_vit_config *c, size_t target) {
  dl_vit_layout l;
  dl_vit_layout_build(c, &l);
  const int stages = dl_grad_stage_count(c->depth);
  dl_grad_bucket *b = malloc((size_t)stages * sizeof *b);
  const int n = dl_grad_buckets_plan(&l, target, b);
  int gaps = 0, order = 0, sizes = 0, homeless = 0, off_stage = 0;
  size_t largest_stage = 0;
  for (int s = 0; s < stages; s++) {  // a stage's floats: its layer's first entry to the next layer's
    size_t lo = SIZE_MAX, hi = l.total;
    for (int i = 0; i < l.count; i++) {
      const int stage = c->depth + 1 - l.entries[i].layer_id;
      if (stage == s && l.entries[i].offset < lo) lo = l.entries[i].offset;
      if (stage == s - 1 && l.entries[i].offset < hi) hi = l.entries[i].offset;
    }
    if (s == stages - 1) lo = 0;
    if ((hi - lo) * sizeof(float) > largest_stage) largest_stage = (hi - lo) * sizeof(float);
  }
  for (int k = 0; k < n; k++) {
    const size_t end = k == 0 ? l.total : b[k - 1].offset;
    gaps += b[k].offset + b[k].count != end || b[k].count == 0;
    order += k > 0 && b[k].stage <= b[k - 1].stage;
    const size_t bytes = b[k].count * sizeof(float);
    sizes += k < n - 1 && (bytes < target || bytes >= target + largest_stage);
    // Its all-reduce starts after the latest stage among its parameters:
    // never before one is final, never later than needed.
    int latest = -1;
    for (int i = 0; i < l.count; i++) {
      const dl_param_entry *e = &l.entries[i];
      const int stage = c->depth + 1 - e->layer_id;
      if (e->numel && e->offset >= b[k].offset && e->offset < b[k].offset + b[k].count && stage > latest)
        latest = stage;
    }
    off_stage += b[k].stage != latest;
  }
  gaps += n == 0 || b[n - 1].offset != 0;
  for (int i = 0; i < l.count; i++) {
    const dl_param_entry *e = &l.entries[i];
    int holders = 0;
    for (int k = 0; k < n; k++)
      holders += e->offset >= b[k].offset && e->offset + e->numel <= b[k].offset + b[k].count;
    homeless += holders != 1 && e->numel;
  }
  CHECK(gaps == 0 && order == 0, "%s, %zu MiB buckets: %d buckets of %d stages tile the %zu floats from the end to "
        "the start, in the order they become final", name, target >> 20, n, stages, l.total);
  CHECK(homeless == 0 && off_stage == 0, "%s: each of %d parameters in exactly one bucket; each bucket starts "
        "right after the stage that finishes its last parameter", name, l.count);
  CHECK(sizes == 0, "%s: every bucket but the last in [%zu, %zu) bytes (last: %zu)", name, target,
        target + largest_stage, n ? b[n - 1].count * sizeof(float) : 0);
  free(b);
  dl_vit_layout_free(&l);
}

static void check_grad_buckets(void) {
  const dl_vit_config small = {.patch = 14, .dim = 384, .depth = 12, .heads = 6, .ffn_hidden = 1536,
                               .registers = 4, .pos_grid = 37, .ffn = DL_FFN_MLP, .interp = DL_INTERP_ANTIALIAS};
  const dl_vit_config giant = {.patch = 14, .dim = 1536, .depth = 40, .heads = 24, .ffn_hidden = 4096,
                               .registers = 0, .pos_grid = 37, .ffn = DL_FFN_SWIGLU, .interp = DL_INTERP_LEGACY};
  check_bucket_plan("ViT-S/14 reg", &small, (size_t)25 << 20);
  check_bucket_plan("ViT-S/14 reg", &small, (size_t)4 << 20);
  check_bucket_plan("ViT-g/14", &giant, (size_t)25 << 20);
  check_bucket_plan("ViT-g/14", &giant, (size_t)100 << 20);
  // One byte: every stage its own bucket; the whole buffer: one bucket after the embedding.
  dl_vit_layout l;
  dl_vit_layout_build(&small, &l);
  dl_grad_bucket b[14];
  const int each = dl_grad_buckets_plan(&l, 1, b);
  CHECK(each == 14 && b[0].stage == 0 && b[1].stage == dl_grad_stage_of_block(12, 11) && b[12].stage == 12 &&
            b[13].stage == 13 && b[13].offset == 0,
        "1-byte target: %d buckets, final norm first (stage %d), block 11 next, the embedding last (stage %d)", each,
        b[0].stage, b[13].stage);
  const int whole = dl_grad_buckets_plan(&l, l.total * sizeof(float) + 1, b);
  CHECK(whole == 1 && b[0].offset == 0 && b[0].count == l.total && b[0].stage == 13,
        "a target above the buffer: one bucket of %zu floats, started after the embedding (stage %d)", b[0].count,
        b[0].stage);
  dl_vit_layout_free(&l);

  dl_err err;
  size_t bytes = 1;
  CHECK(dl_grad_bucket_bytes_parse(NULL, &bytes, &err) == 0 && bytes == (size_t)25 << 20,
        "DISTILL_NCCL_BUCKET_MB unset: 25 MiB (%zu bytes)", bytes);
  CHECK(dl_grad_bucket_bytes_parse("0", &bytes, &err) == 0 && bytes == 0, "DISTILL_NCCL_BUCKET_MB=0: no buckets");
  CHECK(dl_grad_bucket_bytes_parse("64", &bytes, &err) == 0 && bytes == (size_t)64 << 20, "64: %zu bytes", bytes);
  const char *bad[] = {"-1", "abc", "1.5", "25MB", "70000"};
  for (int i = 0; i < 5; i++)
    CHECK(dl_grad_bucket_bytes_parse(bad[i], &bytes, &err) != 0 && strstr(err.msg, "DISTILL_NCCL_BUCKET_MB"),
          "'%s' refused: %s", bad[i], err.msg);
}

static void check_attention_cache(void) {
  dl_attn_cache *c = calloc(1, sizeof *c);
  const dl_attn_key base = {0, 2, 257, 6, 64, 1, DL_ATTN_FWD_TRAIN};
  dl_attn_key keys[7];
  for (int i = 0; i < 7; i++) keys[i] = base;
  keys[1].device = 1, keys[2].n = 3, keys[3].t = 54, keys[4].heads = 16, keys[5].dtype = 0, keys[6].dir = DL_ATTN_BWD;
  int plans[7];
  for (int i = 0; i < 7; i++) CHECK(dl_attn_cache_insert(c, &keys[i], i % 2, &plans[i]) != NULL, "insert key %d", i);
  int found = 0;
  for (int i = 0; i < 7; i++) {
    const dl_attn_cache_entry *e = dl_attn_cache_find(c, &keys[i]);
    found += e && e->plan == &plans[i] && e->supported == i % 2;
  }
  CHECK(found == 7, "device, n, t, heads, dtype and direction each make their own entry: %d of 7", found);
  dl_attn_key other = base;
  other.head_dim = 128;
  CHECK(dl_attn_cache_find(c, &other) == NULL, "an unseen shape is not found");
  for (int i = 7; i < DL_ATTN_CACHE_SLOTS; i++) {
    other.t = 1000 + i;
    dl_attn_cache_insert(c, &other, 0, NULL);
  }
  other.t = 5000;
  CHECK(dl_attn_cache_insert(c, &other, 1, NULL) == NULL && c->count == DL_ATTN_CACHE_SLOTS,
        "a full cache refuses a new shape");
  free(c);

  const char *why = NULL;
  dl_attn_key k = base;
  CHECK(dl_attn_cudnn_precheck(&k, 1, &why) == 0, "bf16, head dimension 64 goes to cuDNN");
  k.dtype = 0;
  CHECK(dl_attn_cudnn_precheck(&k, 1, &why) != 0 && strstr(why, "bf16"), "fp32 is refused: %s", why);
  k = base, k.head_dim = 60;
  CHECK(dl_attn_cudnn_precheck(&k, 1, &why) != 0 && strstr(why, "multiple of 8"), "head dimension 60: %s", why);
  char line[160];
  dl_attn_key_describe(&base, "bf16", line, sizeof line);
  CHECK(strstr(line, "t=257") && strstr(line, "heads=6") && strstr(line, "forward(train)"), "log line: %s", line);
}

int main(void) {
  check_loss_chunks();
  check_vec_plan();
  check_flops();
  check_train_flops();
  check_gemm_plans(7, 5, 3);
  check_gemm_plans(33, 64, 17);
  check_gemm_plans(1, 9, 12);
  check_gemm_alignment();
  check_gemm_cache();
  check_adamw_segments();
  check_rendezvous();
  check_nccl_timeout();
  check_carving();
  check_grad_buckets();
  check_attention_path();
  check_attention_layout(2, 5, 3, 8);
  check_attention_layout(1, 54, 2, 64);
  check_attention_cache();
  return dl_test_summary("test_cuda_host");
}
