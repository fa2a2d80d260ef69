// A small, table-driven flag parser shared by every subcommand, so that all of
// them accept `--name value`, `--name=value` and `--help` the same way and
// reject unknown or malformed flags with exit status 2.
#ifndef DISTILL_CLI_FLAGS_H
#define DISTILL_CLI_FLAGS_H

#include <stdbool.h>

typedef enum {
  DL_FLAG_STRING,  // const char *
  DL_FLAG_INT,     // int
  DL_FLAG_DOUBLE,  // double
  DL_FLAG_BOOL,    // bool, takes no value
} dl_flag_kind;

typedef struct dl_flag {
  const char *name;  // without the leading "--"
  dl_flag_kind kind;
  void *dest;
  const char *metavar;  // shown in --help, e.g. "FILE"
  const char *help;
} dl_flag;

typedef struct dl_command_spec {
  const char *name;     // e.g. "embed"
  const char *usage;    // e.g. "--weights W --input X --out Y"
  const char *summary;  // one paragraph shown by --help
  const dl_flag *flags;
  int nflags;
} dl_command_spec;

// Parses argv (argv[0] is the subcommand name). Positional arguments are
// collected in order into positional[0..*npositional). Returns 0 to go on,
// 1 when --help was printed (the caller returns 0). Exits with status 2 on an
// unknown flag, a missing value or a value of the wrong type.
int dl_parse_flags(const dl_command_spec *spec, int argc, char **argv,
                   char **positional, int max_positional, int *npositional);

void dl_print_help(const dl_command_spec *spec);

// Ends the command with exit 2 naming the flag, when a required one is absent.
void dl_require_flag(const dl_command_spec *spec, const char *name, const void *value);

#endif
