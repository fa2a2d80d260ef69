// `distill student`: one rank of a student group. Trains the recipe's
// student on the targets the teachers serve, checkpoints on the recipe's
// schedule, and on SIGTERM or SIGINT finishes the step, writes a checkpoint
// and leaves (exit 0), so `--resume auto` continues exactly.
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/student_plan.h"
#ifdef DISTILL_HAVE_CUDA_BACKEND
#include "cli/gpu_device.h"
#include "cli/student_cuda.h"
#endif
#include "common/file_io.h"
#include "teacher/model_io.h"
#include "student/gpu_rank.h"
#include "student/reduce.h"
#include "student/student_model.h"
#include "student/student_run.h"
#include "student/tcp_io.h"
#include "transport/student_client.h"
#include "transport/xxhash64.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

// The student exactly as a run starts it (same recipe, same seed): what the
// demo's "random initialization" row evaluates.
static int export_initial_student(const dl_recipe *r, char *text, const char *path) {
  dl_vit_config cfg;
  dl_vit vit;
  dl_err err;
  dl_student_vit_config(r, r->crops.global_size, &cfg);
  dl_student_vit_init(&vit, &cfg, r->model.layerscale, r->model.seed);
  int rc = dl_vit_save(&vit, vit.params, path, &err);
  dl_vit_free(&vit);
  free(text);
  if (rc) dl_die_input("student: %s", err.msg);
  printf("student: wrote the initial student to %s\n", path);
  return 0;
}

// --device: 0 for the CPU step, else the number of CUDA devices (and this
// rank's local rank, from which it picks one); bad input exits 2.
static int cuda_devices(const char *device, int rank, int world, int *local_rank) {
  if (strcmp(device, "cpu") == 0) return 0;
  if (strcmp(device, "cuda") != 0) dl_die_input("student: --device %s: use cpu or cuda", device);
#ifdef DISTILL_HAVE_CUDA_BACKEND
  dl_err err;
  const int count = dl_gpu_device_count(&err);
  if (count < 0) dl_die_input("student: --device cuda: %s", err.msg);
  if (dl_local_rank(rank, local_rank, &err)) dl_die_input("student: --device cuda: %s", err.msg);
  // More ranks on this machine than GPUs: refused here, before the group forms, by every rank.
  int local_size = 0;
  if (dl_local_size(&local_size, &err) || dl_gpu_for_rank(*local_rank, local_size, count, &err) < 0)
    dl_die_input("student: --device cuda: %s", err.msg);
#ifdef DISTILL_HAVE_NCCL
  (void)world;
#else
  if (world > 1)
    dl_die_input("student: --device cuda: a group of %d ranks needs NCCL, which this build lacks (install it and "
                 "rebuild)", world);
#endif
  return count;
#else
  (void)rank, (void)world, (void)local_rank;
  dl_die_input("student: --device cuda: " DL_NO_CUDA_BACKEND);
#endif
}

int cmd_student(int argc, char **argv) {
  const char *recipe_path = NULL, *teachers = NULL, *resume = NULL, *out = "out/student", *group = NULL;
  const char *metrics_addr = "127.0.0.1", *export_init = NULL, *curve_key = NULL, *teacher_key = NULL;
  const char *device = "cpu", *group_addr = NULL, *memory = NULL;
  int rank = -1, world = -1, group_timeout_s = 300, metrics_port = 0, heartbeat_ms = 0, dead_after_ms = 0,
      resolve_interval_ms = 0, plan_ranks = -1;
  bool quiet = false, plan = false;
  const dl_flag flags[] = {
      {"recipe", DL_FLAG_STRING, &recipe_path, "FILE", "the recipe (YAML; docs/recipes.md)"},
      {"teachers", DL_FLAG_STRING, &teachers, "EP[,EP..]",
       "teacher endpoints, e.g. tcp://10.0.0.5:5555; dns:NAME:PORT is every address of NAME, re-resolved"},
      {"resolve-interval-ms", DL_FLAG_INT, &resolve_interval_ms, "MS",
       "how often dns: teacher names are resolved again (default 10000)"},
      {"rank", DL_FLAG_INT, &rank, "R", "this rank in the group (default: mpirun's, else 0)"},
      {"world", DL_FLAG_INT, &world, "W", "ranks in the group (default: mpirun's, else 1)"},
      {"group-addr", DL_FLAG_STRING, &group_addr, "HOST:PORT",
       "form the group over TCP without mpirun: rank 0 listens on PORT, the others connect to HOST:PORT "
       "(needs --rank and --world)"},
      {"group-timeout-s", DL_FLAG_INT, &group_timeout_s, "S",
       "with --group-addr: how long the ranks wait for each other to join, and for a peer in a reduction "
       "(default 300)"},
      {"resume", DL_FLAG_STRING, &resume, "auto|FILE", "continue from the newest usable checkpoint, or from FILE"},
      {"out", DL_FLAG_STRING, &out, "DIR", "metrics.jsonl and checkpoints/ go here (default out/student)"},
      {"group", DL_FLAG_STRING, &group, "NAME", "the group's name on the wire (default: the --out folder's name)"},
      {"metrics-port", DL_FLAG_INT, &metrics_port, "P", "serve Prometheus text metrics on this TCP port"},
      {"metrics-addr", DL_FLAG_STRING, &metrics_addr, "IP", "address for --metrics-port (default 127.0.0.1; 0.0.0.0 for all)"},
      {"heartbeat-ms", DL_FLAG_INT, &heartbeat_ms, "MS", "heartbeat interval (default 1000)"},
      {"dead-after-ms", DL_FLAG_INT, &dead_after_ms, "MS", "a silent teacher is dead after this (default 5000)"},
      {"curve-key", DL_FLAG_STRING, &curve_key, "FILE", "this student's secret key (distill keygen): CURVE on"},
      {"teacher-key", DL_FLAG_STRING, &teacher_key, "FILE", "the teachers' public key (.pub), with --curve-key"},
      {"quiet", DL_FLAG_BOOL, &quiet, NULL, "no progress or event lines"},
      {"device", DL_FLAG_STRING, &device, "cpu|cuda",
       "where the steps run (default cpu); cuda: the CUDA step in bf16 on GPU local-rank % GPUs, NCCL in a group"},
      {"export-init", DL_FLAG_STRING, &export_init, "FILE",
       "write the recipe's student at its initialization (official names) and exit: the baseline for evaluations"},
      {"plan", DL_FLAG_BOOL, &plan, NULL,
       "print the memory per rank of each phase (CPU float32, GPU bf16) and the largest batch that fits, and exit"},
      {"ranks", DL_FLAG_INT, &plan_ranks, "N",
       "with --plan: ranks of the group (default 1; per-rank batch train.batch / N)"},
      {"memory", DL_FLAG_STRING, &memory, "SIZE", "with --plan: memory per rank to fit, e.g. 80G (default 80G)"},
  };
  const dl_command_spec spec = {
      "student",
      "--recipe R --teachers EP[,EP...] [--rank r --world W [--group-addr HOST:PORT]] [--resume auto|PATH] [--out DIR]\n"
      "       distill student --recipe R --plan [--ranks N] [--memory SIZE]",
      "Trains one rank of a student group on the teachers' targets (DESIGN.md section 6).\n"
      "Writes OUT/metrics.jsonl (one line per step) and checkpoints with EMA exports.",
      flags, (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;
  dl_require_flag(&spec, "recipe", recipe_path);
  if (plan) return dl_student_plan(recipe_path, plan_ranks < 0 ? 1 : plan_ranks, memory);
  if (plan_ranks >= 0 || memory) dl_die_input("student: --ranks and --memory go with --plan");
  if (!export_init) dl_require_flag(&spec, "teachers", teachers);
  // Ranks of a group are MPI processes (mpirun -np W distill student ...) or
  // processes that meet at rank 0's --group-addr over TCP (Kubernetes): the
  // gradients and the Sinkhorn-Knopp sums travel through student/reduce.h.
  dl_err err;
  dl_group ranks;
  if (dl_group_init(&ranks, &err)) dl_die_input("student: %s", err.msg);
  if (group_addr) {
    if (ranks.mpi) dl_die_input("student: --group-addr and mpirun both form a group: use one of them");
    if (world < 1 || rank < 0 || rank >= world)
      dl_die_input("student: --group-addr needs --rank R and --world W with 0 <= R < W (got rank %d, world %d)", rank,
                   world);
    if (group_timeout_s < 1) dl_die_input("student: --group-timeout-s must be at least 1");
    char host[256];
    int port;
    if (dl_tcp_split_addr(group_addr, host, sizeof host, &port, &err)) dl_die_input("student: --group-addr %s", err.msg);
  } else {
    if ((rank >= 0 && rank != ranks.rank) || (world >= 0 && world != ranks.world))
      dl_die_input("student: --rank/--world disagree with the launcher: this is rank %d of %d%s", ranks.rank,
                   ranks.world, ranks.mpi ? "" : " (start the ranks of a group with mpirun -np W, or give --group-addr)");
    rank = ranks.rank;
    world = ranks.world;
  }
  if (metrics_port < 0 || metrics_port > 65535) dl_die_input("student: --metrics-port %d is not a TCP port", metrics_port);
  if (heartbeat_ms < 0 || dead_after_ms < 0 || resolve_interval_ms < 0)
    dl_die_input("student: --heartbeat-ms, --dead-after-ms and --resolve-interval-ms must be positive");
  if (!curve_key != !teacher_key) dl_die_input("student: --curve-key and --teacher-key go together");
  dl_curve_key secret, public, teacher_public;
  if (curve_key && (dl_curve_read_key(curve_key, &secret, &err) || dl_curve_public_of(&secret, &public, &err) ||
                    dl_curve_read_key(teacher_key, &teacher_public, &err)))
    dl_die_input("student: %s", err.msg);
  int local_rank = 0;
  const int gpus = cuda_devices(device, rank, world, &local_rank);

  dl_recipe recipe;
  dl_mapped_file f;
  if (dl_map_file(recipe_path, &f, &err)) dl_die_input("%s", err.msg);
  char *text = dl_malloc(f.size + 1);
  if (f.size) memcpy(text, f.data, f.size);
  text[f.size] = 0;
  dl_unmap_file(&f);
  if (dl_recipe_parse(recipe_path, (const uint8_t *)text, strlen(text), &recipe, &err)) dl_die_input("%s", err.msg);
  if (!recipe.has_model || !recipe.has_train) dl_die_input("%s: a student recipe needs the model and train sections", recipe_path);
  if (dl_recipe_resolve_paths(&recipe, recipe_path, &err)) dl_die_input("%s", err.msg);
  if (export_init) return export_initial_student(&recipe, text, export_init);

  char *list = strdup(teachers), *save = NULL, *out_copy = strdup(out);
  if (!group) group = basename(out_copy);
  const char *eps[DL_MAX_TEACHERS];
  int n = 0;
  for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (n == DL_MAX_TEACHERS) dl_die_input("student: at most %d teachers", DL_MAX_TEACHERS);
    char name[256];
    int port;
    if (dl_is_dns_spec(t) && dl_dns_parse(t, name, sizeof name, &port, &err)) dl_die_input("student: --teachers %s", err.msg);
    eps[n++] = t;
  }
  if (n == 0) dl_die_input("student: --teachers names no endpoint");

  // SIGTERM/SIGINT from here on: a clean stop (while the group forms, too).
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  if (group_addr && world > 1) {
    // Every rank must train the same recipe text: its hash is in the hello.
    const dl_group_hello me = {.rank = rank, .world = world, .group = group,
                               .recipe_hash = dl_xxhash64(text, strlen(text), 0)};
    const int joined = dl_group_join_tcp(&ranks, group_addr, &me, group_timeout_s, &g_stop, &err);
    if (joined == DL_GROUP_REFUSED) dl_die_input("student: %s", err.msg);
    if (joined) {  // unreachable or timed out (the launcher may try again), or SIGTERM: nothing to save
      fprintf(stderr, "distill: student: %s\n", err.msg);
      free(list);
      free(out_copy);
      free(text);
      return joined == DL_GROUP_STOPPED ? 0 : 1;
    }
  }

  // The GPU and, in a group, NCCL: once the group has formed (its broadcast
  // carries rank 0's NCCL id).
  const dl_step_backend *backend = NULL;
#ifdef DISTILL_HAVE_CUDA_BACKEND
  dl_student_cuda *gpu = NULL;
  dl_step_backend cuda_backend;
  if (gpus > 0) {
    if (!(gpu = dl_student_cuda_open(&ranks, local_rank, gpus, &err))) {  // a rank is gone: nothing to save
      fprintf(stderr, "distill: student: rank %d of %d: %s\n", rank, world, err.msg);
      free(list);
      free(out_copy);
      free(text);
      dl_group_finalize(&ranks);
      return 1;
    }
    if (!quiet)
      fprintf(stderr, "student: rank %d of %d (local rank %d): CUDA device %d of %d%s\n", rank, world, local_rank,
              dl_student_cuda_device(gpu), gpus, world > 1 ? ", NCCL group formed" : "");
    cuda_backend = dl_student_cuda_backend(gpu);
    backend = &cuda_backend;
  }
#else
  (void)gpus;
#endif
  dl_student_options o = {.backend = backend, .recipe = &recipe, .recipe_text = text, .teachers = eps, .nteachers = n, .rank = rank,
                          .world = world, .reduce = dl_group_reduce(&ranks), .ranks = &ranks, .resume = resume, .out_dir = out, .group = group,
                          .heartbeat_ms = heartbeat_ms, .metrics_port = metrics_port, .metrics_addr = metrics_addr, .dead_after_ms = dead_after_ms, .quiet = quiet, .stop = &g_stop,
                          .resolve_interval_ms = resolve_interval_ms, .curve_secret = curve_key ? &secret : NULL,
                          .curve_public = &public, .teacher_public = &teacher_public};
  // Evaluations (the recipe's eval section) run this same binary: distill knn.
  static char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) exe[len] = 0, o.eval_exe = exe;
  int rc = dl_student_run(&o, &err);
  if (rc) fprintf(stderr, "distill: student: %s\n", err.msg);
  free(list);
  free(out_copy);
  free(text);
#ifdef DISTILL_HAVE_CUDA_BACKEND
  dl_student_cuda_close(gpu);
#endif
  dl_group_finalize(&ranks);
  return rc;
}
