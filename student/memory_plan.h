// The memory a student rank needs, counted from what the code allocates:
// `distill student --plan` prints it per phase so that ranks and batch can
// be chosen before renting GPUs (docs/operations.md, "Sizing a student").
//
// CPU: float32, what model/train_step.c, model/vit_train.c, model/heads.c,
// student/step_batch.c, the student client and the loader allocate, counting
// the bytes the run writes (an allocation that is never written takes
// address space, not memory: that part is reported apart as `untouched`).
// GPU: bf16 activations and float32 masters, gradients, moments and EMA, as
// model/cuda/train_step_cuda.c, vit_cuda_train.c and heads_cuda.c allocate
// them; the CUDA context and NCCL's buffers are estimates (DL_MEM_RUNTIME).
#ifndef DISTILL_STUDENT_MEMORY_PLAN_H
#define DISTILL_STUDENT_MEMORY_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "model/heads.h"
#include "model/train_step.h"
#include "recipe/recipe.h"

typedef enum dl_mem_item {
  DL_MEM_WEIGHTS,      // backbone, the student's heads, the teacher's last layers (GPU: + float32 masters)
  DL_MEM_GRADS,
  DL_MEM_ADAM,         // both moments
  DL_MEM_EMA,
  DL_MEM_ACTIVATIONS,  // the backbone's training workspaces (global and local crops) and its outputs' buffers
  DL_MEM_HEAD_WS,      // the heads' workspaces: MLP activations, the effective last layer and its gradient
  DL_MEM_BLAS,         // CPU: packed operands the matrix multiplies keep (the own sgemm's, OpenBLAS's)
  DL_MEM_LOGITS,       // head outputs, their gradients and the teacher's targets, [rows, K] each
  DL_MEM_STEP_BATCH,   // one step's images and teacher data
  DL_MEM_WINDOW,       // target blocks the client holds (train.window, decoded float32)
  DL_MEM_LOADER,       // crops the loader builds ahead
  DL_MEM_RUNTIME,      // CPU: libraries, threads, BLAS buffers; GPU: CUDA context, cuBLASLt, NCCL (estimated)
  DL_MEM_ITEMS
} dl_mem_item;

const char *dl_mem_item_name(dl_mem_item i);

// Everything the count depends on, for one phase of one rank.
typedef struct dl_mem_shape {
  dl_vit_config student;  // pos_grid: the phase's stored grid (global_size / patch)
  dl_train_mode mode;
  int batch;              // images per rank
  int global_crops, local_crops, global_size, local_size;
  dl_head_config head[2];  // the student's heads: DINO + iBOT, or the CLS + patch adaptors
  int teacher_width[2];    // what the teacher sends per row: bottlenecks (prototypes) or teacher_dim
  int ibot_rows;           // prototypes with an iBOT selection: the rows it scores (dl_trainer_ibot_rows),
                           // gathered from the patches; 0: every patch of the global crops, in place
  int block_size;
  int window;              // target blocks the client holds: train.window and the one being copied, at most
                           // the phase's blocks (the client asks for none past its end)
  int loader_blocks;       // blocks the loader holds at most (built ahead, in progress, the one being used)
  int threads;             // OpenMP threads of the CPU step (its per-thread scratch)
  int world;               // ranks of the group (GPU: NCCL's buffers when > 1)
} dl_mem_shape;

typedef struct dl_mem_plan {
  size_t cpu[DL_MEM_ITEMS], gpu[DL_MEM_ITEMS];  // bytes
  size_t cpu_total, gpu_total;
  size_t cpu_untouched;  // allocated by the CPU step and never written (not in cpu_total)
  size_t cpu_sgemm_pack;  // cpu[DL_MEM_BLAS]: the sgemm's packed operand (memory_plan_blas.c)
  size_t cpu_init;       // of cpu_total: what dl_trainer_init and the student's ViT allocate (a hires switch
                         // holds these for the new phase while the old phase's trainer still lives)
} dl_mem_plan;

// The count for one phase.
void dl_mem_plan_shape(const dl_mem_shape *s, dl_mem_plan *out);

// Prototypes on the GPU: the rows per chunk of the student's DINO and iBOT
// logits (model/cuda/loss_chunks.h) for elements of elem_bytes.
void dl_mem_loss_chunks(const dl_mem_shape *s, size_t elem_bytes, size_t rows[2]);

// Bytes of the process itself (libraries, OpenMP and BLAS threads) on the
// CPU, and the GPU's runtime estimate for a group of `world` ranks.
size_t dl_mem_cpu_runtime_bytes(void);
size_t dl_mem_gpu_runtime_bytes(int world);

// ---- from a recipe ----

#define DL_MEM_MAX_PHASES 2

typedef struct dl_mem_phase {
  const char *name;  // "main", "hires"
  long steps;
  dl_mem_shape shape;
  dl_mem_plan plan;
} dl_mem_phase;

typedef struct dl_mem_recipe_plan {
  int ranks, batch, blocks_per_rank;  // batch: images per rank
  int nphases;
  dl_mem_phase phases[DL_MEM_MAX_PHASES];
  bool ibot_selected;  // iBOT logits only on the selected patches (else every patch)
  size_t switch_cpu;   // CPU bytes while the hires switch holds both phases' trainers (0: no switch)
  size_t peak_cpu, peak_gpu;  // the most any moment of the run needs
} dl_mem_recipe_plan;

// Which patches the iBOT head scores: the recipe's choice, or either one
// (the plan shows both).
typedef enum dl_mem_ibot { DL_MEM_IBOT_RECIPE, DL_MEM_IBOT_ALL, DL_MEM_IBOT_SELECTED } dl_mem_ibot;

typedef struct dl_mem_options {
  int ranks;             // ranks of the group (>= 1)
  int batch;             // images per rank; 0: train.batch / ranks
  dl_mem_ibot ibot;
} dl_mem_options;

// The plan of a student recipe. Prototypes mode reads the teacher's heads'
// shapes (not their values) from train.teacher_heads. -1 with a one-line
// message on a recipe that cannot run.
int dl_mem_plan_recipe(const dl_recipe *r, const dl_mem_options *o, dl_mem_recipe_plan *out, dl_err *err);

// The largest per-rank batch (a whole number of data.block_size blocks) whose
// peak fits `bytes` on the CPU (gpu false) or the GPU; 0 when one block does
// not fit. At most `cap` images. o->batch is ignored.
int dl_mem_max_batch(const dl_recipe *r, const dl_mem_options *o, size_t bytes, bool gpu, int cap, dl_err *err);

#endif
