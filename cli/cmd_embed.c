#include "cli/commands.h"
int cmd_embed(int argc, char **argv) { (void)argc; (void)argv; return 2; }
