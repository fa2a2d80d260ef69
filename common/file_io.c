#include "common/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int dl_map_file(const char *path, dl_mapped_file *out, dl_err *err) {
  out->data = NULL;
  out->size = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return dl_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return dl_fail(err, "%s: not a regular file", path);
  }
  if (st.st_size > 0) {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      return dl_fail(err, "%s: cannot map: %s", path, strerror(errno));
    }
    out->data = p;
    out->size = (size_t)st.st_size;
  }
  close(fd);
  return 0;
}

void dl_unmap_file(dl_mapped_file *f) {
  if (f->data) munmap((void *)f->data, f->size);
  f->data = NULL;
  f->size = 0;
}

static int write_all(int fd, const void *data, size_t n) {
  const uint8_t *p = data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void fsync_parent_dir(const char *path) {
  char *copy = strdup(path);
  if (!copy) return;
  int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  free(copy);
}

int dl_write_file_atomic(const char *path, const dl_chunk *chunks, int n, dl_err *err) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
    return dl_fail(err, "%s: path too long", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return dl_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
  for (int i = 0; i < n; i++) {
    if (write_all(fd, chunks[i].data, chunks[i].size) != 0) {
      int e = errno;
      close(fd);
      unlink(tmp);
      return dl_fail(err, "%s: write failed: %s", tmp, strerror(e));
    }
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp);
    return dl_fail(err, "%s: cannot flush to disk: %s", tmp, strerror(errno));
  }
  if (rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return dl_fail(err, "%s: cannot rename into place: %s", path, strerror(e));
  }
  fsync_parent_dir(path);
  return 0;
}
