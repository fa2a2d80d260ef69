#include "student/checkpoint_share.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file_io.h"

#define PIECE ((size_t)16 << 20)  // bytes per broadcast: the receivers' buffer

// The header every rank receives first: the file's size, 0 for a fresh
// start, -1 when rank 0 could not resume.
static int send_size(dl_group *g, int64_t size, dl_err *err) { return dl_group_broadcast(g, &size, sizeof size, err); }

int dl_checkpoint_send(dl_group *g, const char *path, int failed, dl_err *err) {
  if (failed || !path) return send_size(g, failed ? -1 : 0, err);
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) {
    send_size(g, -1, err);
    return -1;
  }
  int rc = send_size(g, (int64_t)f.size, err);
  for (size_t off = 0; rc == 0 && off < f.size; off += PIECE) {
    const size_t n = f.size - off < PIECE ? f.size - off : PIECE;
    rc = dl_group_broadcast(g, (void *)(f.data + off), n, err);
  }
  dl_unmap_file(&f);
  return rc;
}

int dl_checkpoint_receive(dl_group *g, const char *dest, int *got, dl_err *err) {
  int64_t size = 0;
  *got = 0;
  if (dl_group_broadcast(g, &size, sizeof size, err)) return -1;  // rank 0's value lands in size
  if (size < 0) return dl_fail(err, "rank 0 could not resume (its log says why); this rank stops too");
  if (size == 0) return 0;
  FILE *f = fopen(dest, "wb");
  if (!f) return dl_fail(err, "%s: cannot write rank 0's checkpoint here: %s", dest, strerror(errno));
  char *buf = dl_malloc(PIECE);
  int rc = 0;
  for (int64_t off = 0; rc == 0 && off < size; off += (int64_t)PIECE) {
    const size_t n = (size_t)(size - off) < PIECE ? (size_t)(size - off) : PIECE;
    rc = dl_group_broadcast(g, buf, n, err);
    if (rc == 0 && fwrite(buf, 1, n, f) != n) rc = dl_fail(err, "%s: write failed: %s", dest, strerror(errno));
  }
  if (fclose(f) != 0 && rc == 0) rc = dl_fail(err, "%s: write failed: %s", dest, strerror(errno));
  free(buf);
  *got = rc == 0;
  return rc;
}
