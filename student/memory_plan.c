// The per-phase count of dl_mem_plan_shape. Each function below mirrors one
// allocation site (named in its comment) item by item, so a change there
// must change it here; tests/service/test_memory_plan.c holds the two
// together against what the allocator reports.
#include "student/memory_plan.h"

#include "model/cuda/loss_chunks.h"
#include "model/pos_embed_train.h"
#include "student/memory_plan_rows.h"

#define F32 DL_MEM_F32
#define BF16 2

static const char *const kNames[DL_MEM_ITEMS] = {
    "weights",      "gradients",           "Adam moments", "EMA",            "activations",   "head workspaces",
    "BLAS packing", "head logits/targets", "step batch",   "receive window", "sample loader", "runtime"};

const char *dl_mem_item_name(dl_mem_item i) { return i < DL_MEM_ITEMS ? kNames[i] : "?"; }

// What a student process holds besides the counted buffers: the binary and
// its libraries, OpenMP's and OpenBLAS's threads, ZeroMQ. Measured on the
// 2-core development machine: the demo's two student recipes (3 steps, no
// high-resolution phase) peaked 55 and 60 MiB above their counted buffers.
#define CPU_RUNTIME_MIB 60
// Estimates (no GPU was available to measure them): a CUDA context with
// cuBLASLt's kernels loaded takes about 500 MiB on recent GPUs, plus the
// 32 MiB cuBLASLt workspace of model/cuda/matmul.c; NCCL's buffers about
// 4 MiB per channel and peer, taken as 256 MiB for a group.
#define GPU_CONTEXT_MIB 512
#define GPU_CUBLAS_WORKSPACE_MIB 32
#define GPU_NCCL_MIB 256

size_t dl_mem_cpu_runtime_bytes(void) { return (size_t)CPU_RUNTIME_MIB << 20; }

size_t dl_mem_gpu_runtime_bytes(int world) {
  return ((size_t)GPU_CONTEXT_MIB + GPU_CUBLAS_WORKSPACE_MIB + (world > 1 ? GPU_NCCL_MIB : 0)) << 20;
}

// The CPU arenas (vit_train.c, heads.c) hand out 64-byte slices.
static size_t S(size_t floats) { return (floats + 15) & ~(size_t)15; }
// The device arena (device_arena.h) hands out 256-byte slices.
static size_t G(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

// A head's parameters (model/heads.c dl_head_init).
static size_t head_params(const dl_head_config *c) {
  size_t n = 0;
  for (int l = 0; l < c->nlayers; l++) n += dl_mem_layer_out(c, l) * dl_mem_layer_in(c, l) + dl_mem_layer_out(c, l);
  return c->prototypes > 0 ? n + (size_t)c->prototypes * (1 + (size_t)c->out_dim) : n;
}

static size_t backbone_params(const dl_vit_config *c) {
  dl_vit_layout l;
  dl_vit_layout_build(c, &l);
  const size_t n = l.total;
  dl_vit_layout_free(&l);
  return n;
}

// ---- CPU ----

// model/vit_train.c carve() for n images of size x size; *untouched gets
// dunfold (written only when the input's gradient is asked for, which the
// distillation step never does).
static size_t cpu_vit_ws(const dl_vit_config *c, int n, int size, int threads, size_t *untouched) {
  const size_t gh = (size_t)(size / c->patch), np = gh * gh, t = 1 + (size_t)c->registers + np;
  const size_t D = (size_t)c->dim, rows = (size_t)n * t, F = (size_t)c->ffn_hidden, M = (size_t)c->pos_grid;
  const size_t fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1), pp = (size_t)c->patch * c->patch * 3, npr = n * np;
  const size_t nt = (size_t)threads, ptmp = dl_pos_embed_tmp_floats(c->pos_grid, c->dim, (int)gh, (int)gh);
  size_t f = (size_t)(c->depth + 1) * S(rows * D);  // residual streams
  const size_t block = 6 * S(rows * D) + 4 * S(rows) + S(rows * 3 * D) + S((size_t)n * c->heads * t * t) +
                       S(rows * fc1) + S(rows * F);
  f += (size_t)c->depth * block;
  f += 3 * S(rows) + S(npr * pp) + S(npr * D) + S(np * D) + 2 * S(gh * M) + S(ptmp);  // embedding side
  f += 4 * S(rows * D) + S(rows * 3 * D) + S(rows * fc1) + S(rows * F) + S(np * D) + S(ptmp) + S(npr * pp);
  f += S(dl_mem_max(nt * t * t, dl_mem_max(2 * D * nt, nt * D)));  // attention / LayerNorm backward scratch
  *untouched += S(npr * pp) * F32;
  return (f - S(npr * pp)) * F32;
}

// model/heads.c carve() for m rows; `last_only`: the teacher's frozen last
// layer, whose forward writes only zn, w_eff, vnorm and ones.
static size_t cpu_head_ws(const dl_head_config *c, size_t m, bool last_only, size_t *untouched) {
  size_t wid = (size_t)dl_mem_max((size_t)c->hidden_dim, (size_t)c->out_dim);
  wid = dl_mem_max(wid, (size_t)c->in_dim);
  const size_t K = (size_t)c->prototypes, B = (size_t)c->out_dim;
  size_t mlp = 0;
  for (int l = 0; l < c->nlayers; l++) mlp += 2 * S(m * (l == c->nlayers - 1 ? B : (size_t)c->hidden_dim));
  const size_t written_last = S(m * B) + S(K * B) + S(K) + S(m);  // zn, w_eff, vnorm, ones
  const size_t all = mlp + S(m * B) + S(m) + 2 * S(K * B) + S(K) + 2 * S(m * B) + 2 * S(m * wid) + S(m);
  size_t idle;
  if (last_only) idle = all - written_last;
  else if (K) idle = S(m * B);  // act of the last MLP layer: its output is pre
  else idle = S(m * B) + S(m * B) + S(m) + S(m * B);  // adaptor: also zn, znorm, dz
  *untouched += idle * F32;
  return (all - idle) * F32;
}

// The teacher's last layers as the student loads them.
static size_t teacher_params(const dl_mem_shape *s) {
  size_t n = 0;
  for (int k = 0; k < 2 && dl_mem_proto(s); k++) {
    const dl_head_config t = dl_mem_teacher_last(s->teacher_width[k], s->head[k].prototypes);
    n += head_params(&t);
  }
  return n;
}

// dl_vit_init_empty, dl_trainer_heads_init, dl_student_load_teacher_heads;
// dl_optim_module_init's gradients, moments and EMA for the three modules.
static size_t cpu_state(const dl_mem_shape *s, size_t *c) {
  const size_t student = backbone_params(&s->student) + head_params(&s->head[0]) + head_params(&s->head[1]);
  c[DL_MEM_WEIGHTS] = (student + teacher_params(s)) * F32;
  c[DL_MEM_GRADS] = c[DL_MEM_EMA] = student * F32;
  c[DL_MEM_ADAM] = 2 * student * F32;
  return 5 * student * F32;  // what the trainer allocates of these
}

// The step's buffers: the backbone's workspaces and its outputs' buffers
// (step_parts.c dl_crop_buffers_init), the iBOT selection's gathered rows,
// the heads' workspaces, the [rows, K] buffers of dl_trainer_init. Returns
// what dl_trainer_init allocates of them (the rest grows at the first step).
static size_t cpu_step(const dl_mem_shape *s, size_t *c, size_t *idle) {
  const size_t D = (size_t)s->student.dim, GB = (size_t)s->global_crops * s->batch, B = (size_t)s->batch;
  const size_t rc = dl_mem_rows_cls(s), rp = dl_mem_rows_patch(s), ri = dl_mem_rows_ibot(s);
  const size_t crops = (2 * rc * D + 2 * rp * D + 2 * B * D + 2 * B) * F32 + B * sizeof(int);
  // With a selection, train_step.c gathers the selected rows (and their
  // gradient) and the teacher's bottlenecks for them; masks, indices.
  const size_t gathered =
      s->ibot_rows > 0 ? (2 * ri * D + ri * (size_t)s->teacher_width[1]) * F32 + rp * sizeof(bool) + ri * sizeof(int)
                       : 0;
  c[DL_MEM_ACTIVATIONS] = cpu_vit_ws(&s->student, (int)GB, s->global_size, s->threads, idle) + crops + gathered;
  if (s->local_crops)
    c[DL_MEM_ACTIVATIONS] += cpu_vit_ws(&s->student, s->local_crops * s->batch, s->local_size, s->threads, idle);
  // head_ws[0..1]: the student's heads on every crop's CLS and on the iBOT
  // rows; teacher_ws[0..1]: the teacher's last layers.
  c[DL_MEM_HEAD_WS] = cpu_head_ws(&s->head[0], rc, false, idle) + cpu_head_ws(&s->head[1], ri, false, idle);
  for (int k = 0; k < 2 && dl_mem_proto(s); k++) {
    const dl_head_config t = dl_mem_teacher_last(s->teacher_width[k], s->head[k].prototypes);
    c[DL_MEM_HEAD_WS] += cpu_head_ws(&t, k ? ri : GB, true, idle);
  }
  // Outputs, their gradients and the targets for both heads, the centers,
  // the scratch and the iBOT weights.
  const size_t K0 = (size_t)(dl_mem_proto(s) ? s->head[0].prototypes : s->head[0].out_dim);
  const size_t K1 = (size_t)(dl_mem_proto(s) ? s->head[1].prototypes : s->head[1].out_dim);
  c[DL_MEM_LOGITS] = (3 * rc * K0 + 3 * ri * K1 + K0 + K1 + 2 * dl_mem_max(K0, K1) + 2 + ri) * F32;
  return crops + gathered + c[DL_MEM_LOGITS];
}

// What comes in: student/step_batch.c's crops and teacher data
// (crop-major), the client's window of decoded blocks (float32 tensors
// borrow the received frame), data/loader.c's blocks of crops.
static void cpu_inputs(const dl_mem_shape *s, size_t *c) {
  const size_t GB = (size_t)s->global_crops * s->batch, P = dl_mem_patches(s);
  const size_t W0 = (size_t)s->teacher_width[0], W1 = (size_t)s->teacher_width[1];
  const size_t gpix = 3 * (size_t)s->global_size * s->global_size, lpix = 3 * (size_t)s->local_size * s->local_size;
  const size_t images = GB * gpix + (size_t)s->local_crops * s->batch * lpix;
  c[DL_MEM_STEP_BATCH] = (images + GB * W0 + GB * P * W1) * F32;
  c[DL_MEM_WINDOW] = (size_t)s->window * s->block_size * s->global_crops * (W0 + P * W1) * F32;
  const size_t block_crops = (size_t)s->block_size * ((size_t)s->global_crops * gpix + (size_t)s->local_crops * lpix);
  c[DL_MEM_LOADER] = (size_t)s->loader_blocks * block_crops * F32;
}

static void cpu_plan(const dl_mem_shape *s, dl_mem_plan *p) {
  size_t idle = 0;
  const size_t state = cpu_state(s, p->cpu);
  const size_t init = cpu_step(s, p->cpu, &idle);
  p->cpu_sgemm_pack = dl_mem_sgemm_pack(s);
  p->cpu[DL_MEM_BLAS] = p->cpu_sgemm_pack;
  cpu_inputs(s, p->cpu);
  p->cpu[DL_MEM_RUNTIME] = dl_mem_cpu_runtime_bytes();
  p->cpu_untouched = idle;
  // dl_hires_switch builds the new phase's ViT and trainer before the old
  // one is freed: what dl_trainer_init writes (the teacher's last layers
  // are shared).
  p->cpu_init = state + init;
}

// ---- GPU ----

// vit_cuda_train.c carve(), e bytes per activation.
static size_t gpu_vit_ws(const dl_vit_config *c, int n, int size, size_t e) {
  const size_t gh = (size_t)(size / c->patch), np = gh * gh, t = 1 + (size_t)c->registers + np;
  const size_t D = (size_t)c->dim, rows = (size_t)n * t, F = (size_t)c->ffn_hidden, M = (size_t)c->pos_grid;
  const size_t fc1 = F * (c->ffn == DL_FFN_SWIGLU ? 2 : 1), pp = (size_t)c->patch * c->patch * 3, npr = n * np;
  const size_t lse = (size_t)n * c->heads * t;
  size_t b = (size_t)(c->depth + 1) * G(rows * D * e);
  const size_t block = 6 * G(rows * D * e) + G(rows * 3 * D * e) + G(rows * fc1 * e) + G(rows * F * e) +
                       4 * G(rows * F32) + G(lse * F32);
  b += (size_t)c->depth * block;
  b += G(npr * pp * e) + G(npr * D * e) + G(np * D * e) + G(rows * D * e) + 2 * G(rows * F32) + 2 * G(gh * M * F32) +
       G(npr);
  b += 4 * G(rows * D * e) + G(rows * 3 * D * e) + G(rows * fc1 * e) + G(rows * F * e) + G(npr * D * e) +
       G(np * D * F32) + G(lse * F32);
  return b;
}

// heads_cuda.c carve() for m rows.
static size_t gpu_head_ws(const dl_head_config *c, size_t m, size_t e) {
  size_t wid = dl_mem_max(dl_mem_max((size_t)c->hidden_dim, (size_t)c->out_dim), (size_t)c->in_dim), b = 0;
  const size_t K = (size_t)c->prototypes, B = (size_t)c->out_dim;
  for (int l = 0; l < c->nlayers; l++) b += 2 * G(m * (l == c->nlayers - 1 ? B : (size_t)c->hidden_dim) * e);
  return b + G(m * B * e) + G(m * F32) + G(K * B * e) + G(K * F32) + G(K * B * F32) + 2 * G(m * B * e) +
         2 * G(m * wid * e);
}

static size_t padded(size_t floats) { return (floats + 63) & ~(size_t)63; }

// vit_cuda.c: the backbone's bf16 copy; heads_cuda.c: each head's float32
// master and bf16 copy (the teacher's last layers too); train_step_cuda.c
// modules_init: the backbone's master, gradients, moments and EMA of the
// three modules, each started on 256 bytes.
static void gpu_state(const dl_mem_shape *s, size_t *g) {
  const size_t bb = backbone_params(&s->student), hp[2] = {head_params(&s->head[0]), head_params(&s->head[1])};
  g[DL_MEM_WEIGHTS] = bb * BF16 + (hp[0] + hp[1] + teacher_params(s)) * (F32 + BF16) + padded(bb) * F32;
  const size_t sum = padded(bb) + padded(hp[0]) + padded(hp[1]);
  g[DL_MEM_GRADS] = g[DL_MEM_EMA] = sum * F32;
  g[DL_MEM_ADAM] = 2 * sum * F32;
}

// The training workspaces, the heads' workspaces, and carve_step's buffers:
// backbone outputs and gradients (bf16 and float32), the selection's
// indices and gathered rows, centers, scratch, iBOT weights and per-row
// losses; with prototypes the teacher's logits (bf16, one copy per head),
// their targets' row and column offsets and one chunk of the student's
// logits; with features the adaptors' outputs (bf16 and float32) and their
// gradients (float32 and bf16).
static void gpu_step(const dl_mem_shape *s, size_t *g) {
  const size_t e = BF16, D = (size_t)s->student.dim, GB = (size_t)s->global_crops * s->batch, B = (size_t)s->batch;
  const size_t rc = dl_mem_rows_cls(s), rp = dl_mem_rows_patch(s), ri = dl_mem_rows_ibot(s);
  g[DL_MEM_ACTIVATIONS] = gpu_vit_ws(&s->student, (int)GB, s->global_size, e) +
                          (s->local_crops ? gpu_vit_ws(&s->student, s->local_crops * s->batch, s->local_size, e) : 0);
  g[DL_MEM_ACTIVATIONS] += G(rc * D * e) + G(rp * D * e) + G(GB * D * F32) + G(rc * D * F32) + G(rp * D * F32) +
                           G(rc * D * e) + G(rp * D * e) + G(B * D * F32) + G((B * D + 3 * B) * F32);
  if (s->ibot_rows > 0)
    g[DL_MEM_ACTIVATIONS] += G(ri * sizeof(int)) + 2 * G(ri * D * e) + G(ri * D * F32) +
                             G(ri * (size_t)s->teacher_width[1] * e);
  g[DL_MEM_HEAD_WS] = gpu_head_ws(&s->head[0], rc, e) + gpu_head_ws(&s->head[1], ri, e);
  for (int k = 0; k < 2 && dl_mem_proto(s); k++) {
    const dl_head_config t = dl_mem_teacher_last(s->teacher_width[k], s->head[k].prototypes);
    g[DL_MEM_HEAD_WS] += gpu_head_ws(&t, k ? ri : GB, e);
  }
  const size_t K0 = (size_t)(dl_mem_proto(s) ? s->head[0].prototypes : s->head[0].out_dim);
  const size_t K1 = (size_t)(dl_mem_proto(s) ? s->head[1].prototypes : s->head[1].out_dim), kmax = dl_mem_max(K0, K1);
  const size_t pairs = (size_t)(s->global_crops + s->local_crops) * s->global_crops - s->global_crops;
  const size_t losses = pairs * B + ri + (size_t)s->global_crops + (GB + (size_t)s->local_crops * GB) + 2 * rp + 3;
  g[DL_MEM_LOGITS] = G(K0 * F32) + G(K1 * F32) + G((kmax + 8) * F32) + G(ri * F32) + G(sizeof(double)) +
                     G(losses * F32);
  if (dl_mem_proto(s)) {  // the teacher's logits once, their offsets, one chunk of the student's logits
    size_t c[2];
    dl_mem_loss_chunks(s, e, c);
    g[DL_MEM_LOGITS] += G(GB * K0 * e) + G(ri * K1 * e) + G(GB * F32) + G(ri * F32) + G(K0 * F32) + G(K1 * F32) +
                        G(dl_mem_max(c[0] * K0, c[1] * K1) * e);
  } else {  // the adaptors' outputs and gradients, float32 and bf16
    g[DL_MEM_LOGITS] += 2 * (G(rc * K0 * e) + G(ri * K1 * e) + G(rc * K0 * F32) + G(ri * K1 * F32));
  }
}

void dl_mem_loss_chunks(const dl_mem_shape *s, size_t elem_bytes, size_t rows[2]) {
  const size_t budget = dl_loss_chunk_budget();
  rows[0] = (size_t)dl_loss_chunk_rows((int)dl_mem_rows_cls(s), s->head[0].prototypes, elem_bytes, budget);
  rows[1] = (size_t)dl_loss_chunk_rows((int)dl_mem_rows_ibot(s), s->head[1].prototypes, elem_bytes, budget);
}

// The teacher's data as received (float32, and bf16 for the last layers),
// and the images' device buffer (the larger of the two crop kinds).
static void gpu_inputs(const dl_mem_shape *s, size_t *g) {
  const size_t e = BF16, GB = (size_t)s->global_crops * s->batch, rp = dl_mem_rows_patch(s);
  const size_t W0 = (size_t)s->teacher_width[0], W1 = (size_t)s->teacher_width[1];
  const size_t gimg = GB * 3 * s->global_size * s->global_size;
  const size_t limg = (size_t)s->local_crops * s->batch * 3 * s->local_size * s->local_size;
  g[DL_MEM_STEP_BATCH] = G(GB * W0 * F32) + G(rp * W1 * F32) +
                         (dl_mem_proto(s) ? G(GB * W0 * e) + G(rp * W1 * e) : 0) + dl_mem_max(gimg, limg) * F32;
  g[DL_MEM_WINDOW] = g[DL_MEM_LOADER] = 0;  // host memory
}

static void gpu_plan(const dl_mem_shape *s, dl_mem_plan *p) {
  gpu_state(s, p->gpu);
  gpu_step(s, p->gpu);
  gpu_inputs(s, p->gpu);
  p->gpu[DL_MEM_RUNTIME] = dl_mem_gpu_runtime_bytes(s->world);
}

void dl_mem_plan_shape(const dl_mem_shape *s, dl_mem_plan *out) {
  *out = (dl_mem_plan){0};
  cpu_plan(s, out);
  gpu_plan(s, out);
  for (int i = 0; i < DL_MEM_ITEMS; i++) out->cpu_total += out->cpu[i], out->gpu_total += out->gpu[i];
}
