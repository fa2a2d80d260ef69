// folder:DIR and list:FILE datasets.
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset_impl.h"

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// Sorted entry names of `dir` (without . and ..); NULL with err on failure.
static char **sorted_entries(const char *dir, int *n, dl_err *err) {
  DIR *d = opendir(dir);
  if (!d) {
    dl_fail(err, "folder '%s': %s", dir, strerror(errno));
    return NULL;
  }
  int cap = 64;
  char **names = dl_malloc(sizeof(char *) * cap);
  *n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;   // ., .. and hidden files
    if (*n == cap) {
      cap *= 2;
      char **grown = realloc(names, sizeof(char *) * cap);
      if (!grown) dl_die_input("out of memory listing %s", dir);
      names = grown;
    }
    names[(*n)++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, (size_t)*n, sizeof(char *), compare_names);
  return names;
}

static void free_names(char **names, int n) {
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
}

static int is_dir(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Adds the image files directly in `dir` with `label`.
static int add_images(dl_file_list *list, const char *dir, int label, dl_err *err) {
  int n;
  char **names = sorted_entries(dir, &n, err);
  if (!names) return -1;
  char path[PATH_MAX];
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (dl_has_image_extension(names[i]) && !is_dir(path)) dl_file_list_add(list, path, label);
  }
  free_names(names, n);
  return 0;
}

int dl_open_folder(const char *dir, dl_dataset **out, dl_err *err) {
  if (!is_dir(dir)) return dl_fail(err, "folder '%s': not a directory", dir);
  int n;
  char **names = sorted_entries(dir, &n, err);
  if (!names) return -1;
  dl_file_list list = {0};
  int classes = 0, rc = 0;
  char path[PATH_MAX];
  for (int i = 0; i < n && rc == 0; i++) {
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (is_dir(path)) rc = add_images(&list, path, classes++, err);
  }
  free_names(names, n);
  if (rc == 0 && classes == 0) rc = add_images(&list, dir, DL_LABEL_NONE, err);
  if (rc != 0) {
    dl_file_list_free(&list);
    return -1;
  }
  *out = dl_dataset_from_file_list(&list, classes);
  return 0;
}

int dl_open_list(const char *file, dl_dataset **out, dl_err *err) {
  FILE *f = fopen(file, "r");
  if (!f) return dl_fail(err, "list '%s': %s", file, strerror(errno));
  char base[PATH_MAX];
  snprintf(base, sizeof base, "%s", file);
  char *slash = strrchr(base, '/');
  if (slash) slash[1] = '\0';
  else base[0] = '\0';
  dl_file_list list = {0};
  char line[PATH_MAX + 64], path[2 * PATH_MAX];
  int lineno = 0, max_label = -1;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *s = line;
    while (isspace((unsigned char)*s)) s++;
    if (*s == '\0' || *s == '#') continue;
    char *end = s;
    while (*end && !isspace((unsigned char)*end)) end++;
    char *rest = *end ? end + 1 : end;
    *end = '\0';
    int label = DL_LABEL_NONE;
    while (isspace((unsigned char)*rest)) rest++;
    if (*rest) {
      char *stop;
      long v = strtol(rest, &stop, 10);
      while (isspace((unsigned char)*stop)) stop++;
      if (*stop || v < 0 || v > 1000000000) {
        fclose(f);
        dl_file_list_free(&list);
        return dl_fail(err, "%s:%d: expected 'PATH [LABEL]' with a non-negative integer label", file, lineno);
      }
      label = (int)v;
      if (label > max_label) max_label = label;
    }
    snprintf(path, sizeof path, "%s%s", s[0] == '/' ? "" : base, s);
    dl_file_list_add(&list, path, label);
  }
  fclose(f);
  *out = dl_dataset_from_file_list(&list, max_label + 1);
  return 0;
}
