#include "cli/flags.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void dl_print_help(const dl_command_spec *spec) {
  printf("usage: distill %s %s\n\n%s\n\noptions:\n", spec->name, spec->usage, spec->summary);
  for (int i = 0; i < spec->nflags; i++) {
    const dl_flag *f = &spec->flags[i];
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", f->name, f->metavar ? " " : "",
             f->metavar ? f->metavar : "");
    printf("  %-26s %s\n", left, f->help);
  }
  printf("  %-26s %s\n", "--help", "show this help");
}

static const dl_flag *find_flag(const dl_command_spec *spec, const char *name, size_t len) {
  for (int i = 0; i < spec->nflags; i++)
    if (strlen(spec->flags[i].name) == len && strncmp(spec->flags[i].name, name, len) == 0)
      return &spec->flags[i];
  return NULL;
}

static void set_value(const dl_command_spec *spec, const dl_flag *f, const char *value) {
  char *end = NULL;
  errno = 0;
  switch (f->kind) {
    case DL_FLAG_STRING:
      *(const char **)f->dest = value;
      return;
    case DL_FLAG_INT: {
      long v = strtol(value, &end, 10);
      if (errno || end == value || *end || v < -2147483647L || v > 2147483647L)
        dl_die_input("%s: --%s expects an integer, got '%s'", spec->name, f->name, value);
      *(int *)f->dest = (int)v;
      return;
    }
    case DL_FLAG_DOUBLE: {
      double v = strtod(value, &end);
      if (errno || end == value || *end)
        dl_die_input("%s: --%s expects a number, got '%s'", spec->name, f->name, value);
      *(double *)f->dest = v;
      return;
    }
    case DL_FLAG_BOOL:
      *(bool *)f->dest = true;
      return;
  }
}

int dl_parse_flags(const dl_command_spec *spec, int argc, char **argv,
                   char **positional, int max_positional, int *npositional) {
  *npositional = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      dl_print_help(spec);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      if (*npositional >= max_positional)
        dl_die_input("%s: unexpected argument '%s' (see distill %s --help)", spec->name, a,
                     spec->name);
      positional[(*npositional)++] = argv[i];
      continue;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const dl_flag *f = find_flag(spec, name, len);
    if (!f) dl_die_input("%s: unknown flag '%s' (see distill %s --help)", spec->name, a, spec->name);
    if (f->kind == DL_FLAG_BOOL) {
      if (eq) dl_die_input("%s: --%s takes no value", spec->name, f->name);
      set_value(spec, f, "");
      continue;
    }
    const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!value) dl_die_input("%s: --%s needs a value", spec->name, f->name);
    set_value(spec, f, value);
  }
  return 0;
}

void dl_require_flag(const dl_command_spec *spec, const char *name, const void *value) {
  if (!value) dl_die_input("%s: --%s is required (see distill %s --help)", spec->name, name, spec->name);
}
