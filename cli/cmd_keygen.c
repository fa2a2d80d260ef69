// `distill keygen NAME`: a CURVE key pair for the transport, NAME.key (secret,
// readable by its owner only) and NAME.pub (public), both z85 text.
#include <stdio.h>

#include "cli/commands.h"
#include "cli/flags.h"
#include "common/err.h"
#include "transport/curve.h"

int cmd_keygen(int argc, char **argv) {
  const dl_command_spec spec = {
      "keygen", "NAME",
      "Writes a CURVE key pair for the transport: NAME.key (secret) and NAME.pub\n"
      "(public). Give teachers' .pub files to students (--teacher-key) and\n"
      "students' .pub lines to a teacher's --allow list.",
      NULL, 0};
  char *pos[1];
  int npos;
  if (dl_parse_flags(&spec, argc, argv, pos, 1, &npos)) return 0;
  if (npos != 1) dl_die_input("keygen: expects one NAME (see distill keygen --help)");
  dl_err err;
  if (dl_curve_keygen(pos[0], &err)) dl_die_input("keygen: %s", err.msg);
  printf("wrote %s.key and %s.pub\n", pos[0], pos[0]);
  return 0;
}
