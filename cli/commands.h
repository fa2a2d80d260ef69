// Every subcommand of the `distill` binary: argc/argv as given after
// `distill`, so argv[0] is the subcommand name. Returns the exit status.
#ifndef DISTILL_CLI_COMMANDS_H
#define DISTILL_CLI_COMMANDS_H

int cmd_embed(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_preview(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_teacher(int argc, char **argv);
int cmd_student(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_knn(int argc, char **argv);
int cmd_linear(int argc, char **argv);
int cmd_pca(int argc, char **argv);

// Why `distill` (built without the CUDA backend) refuses `--device cuda`.
#define DL_NO_CUDA_BACKEND \
  "this binary has no CUDA backend (use distill-gpu, which a build with -DDISTILL_CUDA=ON makes beside distill)"

#endif
