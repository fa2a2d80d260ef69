// `distill teacher`: serves targets to students over ZeroMQ, computed by the
// model a recipe names (--recipe R: teacher/teacher_model.h), or synthetic
// (--synthetic D,P, no model), or read from a target store.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/flags.h"
#ifdef DISTILL_HAVE_CUDA_BACKEND
#include "cli/gpu_device.h"
#include "cli/teacher_cuda.h"
#endif
#include "common/err.h"
#include "model/cpu/cpu_features.h"
#include "model/cpu/gemm_bf16.h"
#include "recipe/recipe.h"
#include "teacher/cpu_bf16.h"
#include "teacher/teacher_model.h"
#include "transport/malloc_tuning.h"
#include "transport/synthetic.h"
#include "student/gpu_rank.h"
#include "student/metrics_http.h"
#include "transport/teacher_server.h"

static dl_teacher_server *g_server;

// Where the status goes besides the log: the Prometheus endpoint and a JSON-lines file.
typedef struct status_sinks {
  dl_metrics_http *http;
  FILE *jsonl;
} status_sinks;

static void publish_status(void *user, const char *prometheus, const char *json_line) {
  status_sinks *k = user;
  if (k->http) dl_metrics_http_publish(k->http, prometheus);
  if (k->jsonl) {
    fprintf(k->jsonl, "%s\n", json_line);
    fflush(k->jsonl);
  }
}

static dl_lead_policy parse_policy(const char *name) {
  if (strcmp(name, "pace") == 0) return DL_LEAD_PACE;
  if (strcmp(name, "spill") == 0) return DL_LEAD_SPILL;
  if (strcmp(name, "free") == 0) return DL_LEAD_FREE;
  dl_die_input("teacher: lead policy '%s': use pace, spill or free", name);
}

static void on_signal(int sig) {
  (void)sig;
  if (g_server) dl_teacher_server_stop(g_server);  // an atomic store: signal-safe
}

static uint64_t parse_hash(const char *flag, const char *s) {
  char *end;
  if (!s) return 0;
  unsigned long long v = strtoull(s, &end, 16);
  if (end == s || *end || strlen(s) > 16) dl_die_input("teacher: --%s expects up to 16 hex digits, got '%s'", flag, s);
  return (uint64_t)v;
}

static void check_range(const char *flag, int v, int lo, int hi) {
  if (v < lo || v > hi) dl_die_input("teacher: --%s must lie in [%d, %d], got %d", flag, lo, hi, v);
}

// --precision on the CPU: NULL for the float32 forward, else the bf16 one
// (teacher/cpu_bf16.h), which needs AVX-512 BF16; bad input exits 2.
static const dl_forward_backend *cpu_backend(const char *precision, const char *recipe_path) {
  if (strcmp(precision, "f32") == 0) return NULL;
  if (!recipe_path) dl_die_input("teacher: --precision bf16 runs the recipe's model: it needs --recipe R");
  if (!dl_gemm_bf16_available() && dl_cpu_features_get()->avx512_bf16)
    dl_die_input("teacher: --precision bf16 needs the avx512 CPU kernel level; DISTILL_CPU_KERNELS=%s turns it off",
                 dl_cpu_level_name(dl_cpu_kernel_level()));
  if (!dl_gemm_bf16_available()) dl_die_input("teacher: " DL_CPU_BF16_UNAVAILABLE);
  return &dl_teacher_cpu_bf16_backend;
}

// --device and --precision (NULL: f32 on the CPU, bf16 on CUDA): NULL for
// the CPU's float32 forward, else the backend (on GPU `gpu` for cuda, -1:
// this process's local rank from the launcher, else 0); bad input exits 2.
static const dl_forward_backend *forward_backend(const char *device, const char *precision, const char *recipe_path,
                                                 int gpu) {
  if (precision && strcmp(precision, "f32") != 0 && strcmp(precision, "bf16") != 0)
    dl_die_input("teacher: --precision %s: use f32 or bf16", precision);
  if (strcmp(device, "cpu") == 0) return cpu_backend(precision ? precision : "f32", recipe_path);
  if (strcmp(device, "cuda") != 0) dl_die_input("teacher: --device %s: use cpu or cuda", device);
  if (precision && strcmp(precision, "bf16") != 0)
    dl_die_input("teacher: --device cuda runs the forward in bf16 only: drop --precision %s", precision);
#ifdef DISTILL_HAVE_CUDA_BACKEND
  if (!recipe_path) dl_die_input("teacher: --device cuda runs the recipe's model: it needs --recipe R");
  dl_err err;
  const int count = dl_gpu_device_count(&err);
  if (count < 0) dl_die_input("teacher: --device cuda: %s", err.msg);
  if (gpu < 0 && dl_local_rank(0, &gpu, &err)) dl_die_input("teacher: --device cuda: %s", err.msg);
  if (gpu >= count)
    dl_die_input("teacher: --gpu %d: this machine has %d GPU%s (0 to %d)", gpu, count, count == 1 ? "" : "s",
                 count - 1);
  dl_teacher_cuda_use_gpu(gpu);
  return &dl_teacher_cuda_backend;
#else
  (void)recipe_path, (void)gpu;
  dl_die_input("teacher: --device cuda: " DL_NO_CUDA_BACKEND);
#endif
}

int cmd_teacher(int argc, char **argv) {
  const char *bind = "tcp://127.0.0.1:5555", *id = NULL, *synthetic = NULL, *codec = NULL;
  const char *store = NULL, *curve_key = NULL, *allow = NULL, *recipe = NULL, *weights = NULL;
  const char *recipe_path = NULL, *device = "cpu", *precision = NULL;
  const char *policy = NULL, *spill_dir = NULL, *metrics_addr = "127.0.0.1", *metrics_file = NULL;
  int max_lead_mb = -1, spill_mb = -1, metrics_port = 0, status_every_s = 10;
  double grace_s = -1;
  // -1 / NULL: not given (the recipe's value, else the default)
  int block_size = 32, crops = 2, zstd_level = -1, cache_mb = -1, heartbeat_ms = 1000;
  int dead_after_ms = 5000, max_msg_kb = 1024, io_threads = 1, gpu = -1;
  bool store_write = false, quiet = false;
  const dl_flag flags[] = {
      {"recipe", DL_FLAG_STRING, &recipe_path, "FILE", "serve the model of the recipe's teacher section on its data"},
      {"bind", DL_FLAG_STRING, &bind, "ENDPOINT", "ZeroMQ endpoint to bind (default tcp://127.0.0.1:5555)"},
      {"listen", DL_FLAG_STRING, &bind, "ENDPOINT", "the same as --bind"},
      {"id", DL_FLAG_STRING, &id, "NAME", "stable teacher name for rendezvous hashing (default: the endpoint)"},
      {"synthetic", DL_FLAG_STRING, &synthetic, "D,P", "serve deterministic pseudo-targets: CLS of D floats, P patches per crop"},
      {"block-size", DL_FLAG_INT, &block_size, "N", "samples per block with --synthetic (default 32; a recipe sets its own)"},
      {"crops", DL_FLAG_INT, &crops, "N", "global crops per sample with --synthetic (default 2)"},
      {"codec", DL_FLAG_STRING, &codec, "SPEC", "f32|f16|bf16|int8, with NAME=CODEC overrides (default: recipe, else f32)"},
      {"zstd-level", DL_FLAG_INT, &zstd_level, "N", "zstd level on top of the codec, 0 = off (default: recipe, else 0)"},
      {"cache-mb", DL_FLAG_INT, &cache_mb, "N", "block cache budget in MiB; 0 = no cache, no coalescing (default: recipe, else 1024)"},
      {"heartbeat-ms", DL_FLAG_INT, &heartbeat_ms, "MS", "heartbeat interval (default 1000)"},
      {"dead-after-ms", DL_FLAG_INT, &dead_after_ms, "MS", "a silent student is forgotten after this (default 5000)"},
      {"max-msg-kb", DL_FLAG_INT, &max_msg_kb, "KB", "largest message a student may send (default 1024)"},
      {"io-threads", DL_FLAG_INT, &io_threads, "N", "ZeroMQ I/O threads sending to students (default 1; more for fast networks, see docs/protocol.md)"},
      {"lead-policy", DL_FLAG_STRING, &policy, "pace|spill|free",
       "when a family runs ahead of a slower one that needs the same blocks: hold it back (pace, default), keep "
       "the blocks on disk (spill), or drop and recompute (free); docs/operations.md"},
      {"max-lead-mb", DL_FLAG_INT, &max_lead_mb, "N", "pacing bound: MiB of blocks past the slower family (default: half the cache)"},
      {"family-grace-s", DL_FLAG_DOUBLE, &grace_s, "S", "a silent family still holds the others this long (default 30)"},
      {"spill", DL_FLAG_STRING, &spill_dir, "DIR", "the spill store's folder (scratch, emptied at start)"},
      {"spill-mb", DL_FLAG_INT, &spill_mb, "N", "the spill store's budget in MiB"},
      {"status-every-s", DL_FLAG_INT, &status_every_s, "S", "status line (and metrics) every S seconds; 0 = never (default 10)"},
      {"metrics-port", DL_FLAG_INT, &metrics_port, "PORT", "serve Prometheus metrics on this port (0 = none)"},
      {"metrics-addr", DL_FLAG_STRING, &metrics_addr, "ADDR", "the metrics endpoint's address (default 127.0.0.1)"},
      {"metrics-file", DL_FLAG_STRING, &metrics_file, "FILE", "append the status as JSON lines to FILE"},
      {"store", DL_FLAG_STRING, &store, "DIR", "target store to serve from (and to write with --store-write)"},
      {"store-write", DL_FLAG_BOOL, &store_write, NULL, "add every computed block to --store"},
      {"curve-key", DL_FLAG_STRING, &curve_key, "FILE", "this teacher's secret key (distill keygen): CURVE on"},
      {"allow", DL_FLAG_STRING, &allow, "FILE", "student public keys allowed to connect, one per line"},
      {"recipe-hash", DL_FLAG_STRING, &recipe, "HEX", "refuse students whose recipe hash differs"},
      {"weights-hash", DL_FLAG_STRING, &weights, "HEX", "hash of the weights, announced in WELCOME"},
      {"quiet", DL_FLAG_BOOL, &quiet, NULL, "no event log lines"},
      {"device", DL_FLAG_STRING, &device, "cpu|cuda",
       "where --recipe's forward passes run (default cpu); cuda: the backbone and heads in bf16 (distill-gpu)"},
      {"precision", DL_FLAG_STRING, &precision, "f32|bf16",
       "the forward's linear layers (default: f32 on the CPU, bf16 on cuda); bf16 on the CPU needs AVX-512 BF16 "
       "(docs/operations.md)"},
      {"gpu", DL_FLAG_INT, &gpu, "N",
       "with --device cuda: the GPU to run on (default: the local rank from OMPI_COMM_WORLD_LOCAL_RANK, "
       "SLURM_LOCALID or LOCAL_RANK, else 0)"},
  };
  const dl_command_spec spec = {
      "teacher", "(--recipe R | --synthetic D,P | --store DIR) [options]",
      "Serves teacher targets to student ranks over ZeroMQ until SIGINT or SIGTERM,\n"
      "then prints its metrics as one key=value line on stdout, then the sharing summary\n"
      "(\"computed N unique blocks for F families (S served); computed again: A (...)\"),\n"
      "and with --recipe a line of engine counters (blocks prepared, forward passes,\n"
      "images, failures, device, precision). With --recipe, students whose data and\n"
      "crops sections differ from the recipe's are refused at HELLO.",
      flags, (int)(sizeof flags / sizeof flags[0])};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 0, &npos)) return 0;

  dl_teacher_config cfg;
  dl_teacher_config_defaults(&cfg);
  dl_synthetic_spec syn = {0};
  dl_err err;
  if (!synthetic && !store && !recipe_path) dl_die_input("teacher: needs --recipe R, --synthetic D,P or --store DIR");
  const dl_forward_backend *backend = forward_backend(device, precision, recipe_path, gpu);
  if (synthetic && recipe_path) dl_die_input("teacher: --synthetic and --recipe exclude each other");
  if (synthetic && dl_synthetic_parse(synthetic, &syn, &err)) dl_die_input("teacher: %s", err.msg);
  dl_recipe rec;
  if (recipe_path && dl_recipe_load(recipe_path, &rec, &err)) dl_die_input("%s", err.msg);
  if (recipe_path && !rec.teacher.present) dl_die_input("teacher: %s has no teacher section", recipe_path);
  if (recipe_path) {  // flags given on the command line win over the recipe
    if (!codec) codec = rec.teacher.codec;
    if (zstd_level < 0) zstd_level = rec.teacher.zstd_level;
    if (cache_mb < 0) cache_mb = rec.teacher.cache_mb;
    if (!policy) policy = rec.teacher.lead_policy;
    if (max_lead_mb < 0) max_lead_mb = rec.teacher.max_lead_mb;
    if (grace_s < 0) grace_s = rec.teacher.family_grace_s;
    if (!spill_dir && rec.teacher.spill_dir[0]) spill_dir = rec.teacher.spill_dir;
    if (spill_mb < 0) spill_mb = rec.teacher.spill_mb;
  }
  if (!policy) policy = "pace";
  if (max_lead_mb < 0) max_lead_mb = 0;
  if (grace_s < 0) grace_s = 30;
  if (spill_mb < 0) spill_mb = 0;
  if (!codec) codec = "f32";
  if (zstd_level < 0) zstd_level = 0;
  if (cache_mb < 0) cache_mb = 1024;
  check_range("block-size", block_size, 1, 1 << 16);
  check_range("crops", crops, 1, 64);
  check_range("zstd-level", zstd_level, 0, 22);
  check_range("cache-mb", cache_mb, 0, 1 << 20);
  check_range("heartbeat-ms", heartbeat_ms, 1, 600000);
  check_range("dead-after-ms", dead_after_ms, heartbeat_ms, 3600000);
  check_range("max-msg-kb", max_msg_kb, 1, 1 << 20);
  check_range("io-threads", io_threads, 1, 64);
  check_range("max-lead-mb", max_lead_mb, 0, 1 << 24);
  check_range("spill-mb", spill_mb, 0, 1 << 30);
  check_range("status-every-s", status_every_s, 0, 86400);
  check_range("metrics-port", metrics_port, 0, 65535);
  if (grace_s > 86400) dl_die_input("teacher: --family-grace-s must lie in [0, 86400], got %g", grace_s);
  cfg.lead_policy = parse_policy(policy);
  if (cfg.lead_policy == DL_LEAD_SPILL && (!spill_dir || spill_mb <= 0))
    dl_die_input("teacher: the spill policy needs --spill DIR and --spill-mb N (or teacher.spill_dir and spill_mb)");
  if (dl_codec_spec_parse(codec, &cfg.codecs, &err)) dl_die_input("teacher: --codec: %s", err.msg);
  if (allow && !curve_key) dl_die_input("teacher: --allow needs --curve-key");
  if (store_write && !store) dl_die_input("teacher: --store-write needs --store DIR");
  if (store_write && !synthetic && !recipe_path) dl_die_input("teacher: --store-write needs a model (--recipe R or --synthetic D,P)");
  syn.block_size = (uint32_t)block_size;
  syn.crops = (uint32_t)crops;

  dl_curve_key secret, *allowed = NULL;
  int nallow = 0;
  if (curve_key && dl_curve_read_key(curve_key, &secret, &err)) dl_die_input("teacher: %s", err.msg);
  if (allow && dl_curve_read_allow_list(allow, &allowed, &nallow, &err)) dl_die_input("teacher: %s", err.msg);
  if (allow && nallow == 0) dl_die_input("teacher: %s: the allow-list holds no key", allow);

  cfg.bind = bind;
  cfg.teacher_id = id;
  cfg.recipe_hash = parse_hash("recipe-hash", recipe);
  // With a recipe the stream check is always on: the hash and text of its
  // data and crops sections (--recipe-hash replaces the hash, 0 turns it off).
  char stream_text[DL_RECIPE_STREAM_TEXT_MAX];
  if (recipe_path && !recipe) {
    dl_recipe_stream_text(&rec, stream_text, sizeof stream_text);
    cfg.recipe_hash = dl_recipe_stream_hash(&rec);
    cfg.stream_text = stream_text;
  }
  cfg.weights_hash = parse_hash("weights-hash", weights);
  cfg.embed_dim = syn.dim;
  cfg.patch_tokens = syn.patches;
  dl_teacher_model model = {0};
  if (recipe_path) {
    if (dl_teacher_model_open(&rec, backend, &model, &err)) {
#ifdef DISTILL_HAVE_CUDA_BACKEND
      // The GPU failing at start (memory, driver) is a runtime failure, not bad input.
      if (backend && dl_teacher_cuda_start_failed()) {
        fprintf(stderr, "distill: teacher: %s\n", err.msg);
        return 1;
      }
#endif
      dl_die_input("teacher: %s", err.msg);
    }
    cfg.embed_dim = model.cls_dim;
    cfg.patch_dim = model.patch_dim;
    cfg.patch_tokens = model.patch_tokens;
    cfg.target_kind = model.target_kind;
    if (!weights) cfg.weights_hash = model.weights_hash;
    cfg.heads_hash = model.heads_hash;
  }
  cfg.zstd_level = zstd_level;
  cfg.cache_bytes = (size_t)cache_mb << 20;
  cfg.heartbeat_ms = heartbeat_ms;
  cfg.dead_after_ms = dead_after_ms;
  cfg.max_msg_bytes = (int64_t)max_msg_kb << 10;
  cfg.io_threads = io_threads;
  cfg.compute_block = synthetic ? dl_synthetic_compute : recipe_path ? dl_teacher_engine_compute : NULL;
  cfg.compute_user = recipe_path ? (void *)model.engine : (void *)&syn;
  cfg.job_queued = recipe_path ? dl_teacher_engine_announce : NULL;
  cfg.store_dir = store;
  cfg.store_write = store_write;
  dl_store_identity identity = {.stream_hash = cfg.recipe_hash, .weights_hash = cfg.weights_hash,
                                .zstd_level = zstd_level, .target_kind = cfg.target_kind};
  snprintf(identity.codec, sizeof identity.codec, "%s", codec);
  cfg.store_identity = store && (recipe_path || synthetic) ? &identity : NULL;
  cfg.max_lead_bytes = (size_t)max_lead_mb << 20;
  cfg.family_grace_ms = (int)(grace_s * 1000);
  cfg.spill_dir = spill_dir;
  cfg.spill_bytes = (size_t)spill_mb << 20;
  cfg.status_every_ms = status_every_s * 1000;
  status_sinks sinks = {0};
  if (metrics_port && !(sinks.http = dl_metrics_http_start(metrics_addr, metrics_port, &err)))
    dl_die_input("teacher: %s", err.msg);
  if (metrics_file && !(sinks.jsonl = fopen(metrics_file, "a")))
    dl_die_input("teacher: --metrics-file %s: cannot open for appending", metrics_file);
  cfg.publish = metrics_port || metrics_file ? publish_status : NULL;
  cfg.publish_user = &sinks;
  cfg.curve_secret = curve_key ? &secret : NULL;
  cfg.allow = allowed;
  cfg.nallow = nallow;
  cfg.quiet = quiet;

  dl_transport_tune_malloc();
  g_server = dl_teacher_server_create(&cfg, &err);
  if (!g_server) dl_die_input("teacher: %s", err.msg);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int rc = dl_teacher_server_run(g_server);
  dl_teacher_metrics m = dl_teacher_server_metrics(g_server);
  dl_teacher_metrics_print(&m, stdout);
  dl_teacher_sharing_print(&m, stdout);
  char advice[512];
  dl_teacher_server_sizing_advice(g_server, advice, sizeof advice);
  if (advice[0]) printf("sizing: %s\n", advice);
  fflush(stdout);
  dl_teacher_server_destroy(g_server);
  g_server = NULL;
  if (recipe_path) {
    dl_teacher_engine_stats es = dl_teacher_engine_stats_get(model.engine);
    printf("engine prepared=%llu forward_passes=%llu images=%llu failed=%llu device=%s precision=%s\n",
           (unsigned long long)es.prepared, (unsigned long long)es.forward_passes, (unsigned long long)es.images,
           (unsigned long long)es.failed, device, backend ? "bf16" : "f32");
    dl_teacher_model_close(&model);
  }
  free(allowed);
  dl_metrics_http_stop(sinks.http);
  if (sinks.jsonl) fclose(sinks.jsonl);
  return rc == 0 ? 0 : 1;
}
