// service_grid_teacher: a synthetic teacher (transport/synthetic.h values)
// whose patch-token count follows the requested resolution, (res / 14)^2,
// as a model's does; `distill teacher --synthetic D,P` has a fixed P, which
// the high-resolution test cannot use. Serves until SIGTERM.
//   service_grid_teacher ENDPOINT DIM BLOCK_SIZE CROPS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/synthetic.h"
#include "transport/teacher_server.h"

static dl_teacher_server *g_server;
static void on_signal(int sig) {
  (void)sig;
  if (g_server) dl_teacher_server_stop(g_server);
}

static int compute(void *user, uint64_t block, uint32_t resolution, dl_target_block *out, dl_err *err) {
  dl_synthetic_spec spec = *(const dl_synthetic_spec *)user;
  spec.patches = (resolution / 14) * (resolution / 14);
  return dl_synthetic_compute(&spec, block, resolution, out, err);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: service_grid_teacher ENDPOINT DIM BLOCK_SIZE CROPS\n");
    return 2;
  }
  dl_synthetic_spec spec = {.dim = (uint32_t)atoi(argv[2]), .block_size = (uint32_t)atoi(argv[3]),
                            .crops = (uint32_t)atoi(argv[4])};
  dl_teacher_config cfg;
  dl_teacher_config_defaults(&cfg);
  cfg.bind = argv[1];
  cfg.embed_dim = spec.dim;
  cfg.compute_block = compute;
  cfg.compute_user = &spec;
  cfg.heartbeat_ms = 100;
  cfg.dead_after_ms = 1000;
  cfg.quiet = true;
  dl_err err;
  g_server = dl_teacher_server_create(&cfg, &err);
  if (!g_server) {
    fprintf(stderr, "service_grid_teacher: %s\n", err.msg);
    return 2;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  int rc = dl_teacher_server_run(g_server);
  dl_teacher_server_destroy(g_server);
  return rc ? 1 : 0;
}
