#include "model/cuda/rendezvous.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

// File: magic, session length, blob length (little-endian u32s), session, blob.
static const char MAGIC[4] = {'D', 'L', 'R', 'V'};
#define HEADER 12

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int dl_rendezvous_publish(const char *path, const char *session, const void *blob, size_t n, dl_err *err) {
  const size_t slen = strlen(session);
  if (slen > DL_RENDEZVOUS_SESSION_MAX) return dl_fail(err, "rendezvous: session tag longer than %d bytes",
                                                       DL_RENDEZVOUS_SESSION_MAX);
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    return dl_fail(err, "rendezvous: path too long: %s", path);
  unsigned char header[HEADER];
  memcpy(header, MAGIC, 4);
  put_u32(header + 4, (uint32_t)slen);
  put_u32(header + 8, (uint32_t)n);
  FILE *f = fopen(tmp, "wb");
  if (!f) return dl_fail(err, "rendezvous: cannot create %s: %s", tmp, strerror(errno));
  int ok = fwrite(header, 1, HEADER, f) == HEADER && fwrite(session, 1, slen, f) == slen &&
           fwrite(blob, 1, n, f) == n && fflush(f) == 0 && fsync(fileno(f)) == 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    return dl_fail(err, "rendezvous: cannot write %s: %s", path, strerror(e));
  }
  return 0;
}

// 1: the file holds this session's blob; 0: not (yet); the reason in `why`.
static int try_read(const char *path, const char *session, void *blob, size_t n, char *why, size_t why_n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, why_n, "no file");
    return 0;
  }
  unsigned char header[HEADER];
  char tag[DL_RENDEZVOUS_SESSION_MAX];
  int found = 0;
  if (fread(header, 1, HEADER, f) != HEADER || memcmp(header, MAGIC, 4) != 0) {
    snprintf(why, why_n, "not a rendezvous file");
  } else {
    const uint32_t slen = get_u32(header + 4), blen = get_u32(header + 8);
    if (slen > DL_RENDEZVOUS_SESSION_MAX || fread(tag, 1, slen, f) != slen) {
      snprintf(why, why_n, "damaged session tag");
    } else if (slen != strlen(session) || memcmp(tag, session, slen) != 0) {
      snprintf(why, why_n, "another session's file");
    } else if (blen != n || fread(blob, 1, n, f) != n) {
      snprintf(why, why_n, "blob of %u bytes, expected %zu", blen, n);
    } else {
      found = 1;
    }
  }
  fclose(f);
  return found;
}

int dl_rendezvous_wait(const char *path, const char *session, void *blob, size_t n, double timeout_s, dl_err *err) {
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  char why[128];
  for (;;) {
    if (try_read(path, session, blob, n, why, sizeof why)) return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const double waited = (double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec);
    if (waited >= timeout_s)
      return dl_fail(err, "rendezvous: %s: nothing for session '%s' after %.1f s (%s)", path, session, waited, why);
    const struct timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
}

int dl_nccl_timeout_parse(const char *text, double *seconds, dl_err *err) {
  if (!text || !*text) {
    *seconds = DL_NCCL_TIMEOUT_DEFAULT_S;
    return 0;
  }
  char *end;
  const double v = strtod(text, &end);
  if (end == text || *end || !(v > 0.0) || v > 1e7)
    return dl_fail(err, "DISTILL_NCCL_TIMEOUT_S='%s' is not a number of seconds in (0, 1e7]", text);
  *seconds = v;
  return 0;
}
