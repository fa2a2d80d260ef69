// The `distill` binary: a table of subcommands, one file each in cli/.
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "model/cpu/cpu_features.h"

typedef struct subcommand {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} subcommand;

static const subcommand kSubcommands[] = {
    {"embed", cmd_embed, "features of images or tensors with a DINOv2 backbone"},
    {"inspect", cmd_inspect, "what a weights or checkpoint file holds"},
    {"preview", cmd_preview, "a PNG of a recipe's samples and their augmented crops"},
    {"keygen", cmd_keygen, "a CURVE key pair for the transport (NAME.key, NAME.pub)"},
    {"teacher", cmd_teacher, "serve teacher targets to students over ZeroMQ"},
    {"student", cmd_student, "train one rank of a student group on the teachers' targets"},
    {"pretrain", cmd_pretrain, "train a small teacher from scratch with DINOv2 self-distillation"},
    {"knn", cmd_knn, "k-NN accuracy of a backbone's CLS features (DINO evaluation)"},
    {"linear", cmd_linear, "linear-probe accuracy on a backbone's frozen CLS features"},
    {"pca", cmd_pca, "a PNG of the first principal components of patch features (DINOv2 fig. 1)"},
};
enum { kNumSubcommands = sizeof kSubcommands / sizeof kSubcommands[0] };

static void print_usage(FILE *out) {
  fprintf(out, "usage: distill COMMAND [options]   (distill COMMAND --help for details)\n"
               "       distill --version   (and the CPU kernel level)\n\ncommands:\n");
  for (int i = 0; i < kNumSubcommands; i++)
    fprintf(out, "  %-10s %s\n", kSubcommands[i].name, kSubcommands[i].summary);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    print_usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    // The CPU line names the kernel level chosen at start and what it was
    // chosen from (DISTILL_CPU_KERNELS overrides it: docs/operations.md).
    char cpu[256];
    dl_cpu_describe(cpu, sizeof cpu);
    printf("distill\ncpu: %s\n", cpu);
    return 0;
  }
  for (int i = 0; i < kNumSubcommands; i++)
    if (strcmp(argv[1], kSubcommands[i].name) == 0) return kSubcommands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "distill: unknown command '%s'\n", argv[1]);
  print_usage(stderr);
  return 2;
}
