#include "transport/curve.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "common/file_io.h"

int dl_curve_keygen(const char *name, dl_err *err) {
  char pub[DL_Z85_KEY_LEN + 1], sec[DL_Z85_KEY_LEN + 1];
  if (zmq_curve_keypair(pub, sec) != 0)
    return dl_fail(err, "keygen: this libzmq has no CURVE support (%s)", zmq_strerror(zmq_errno()));
  char path[4096];
  char line[DL_Z85_KEY_LEN + 2];
  snprintf(path, sizeof path, "%s.key", name);
  snprintf(line, sizeof line, "%s\n", sec);
  dl_chunk c = {line, DL_Z85_KEY_LEN + 1};
  mode_t old_mask = umask(077);  // the secret is never readable by others, not even briefly
  int rc = dl_write_file_atomic(path, &c, 1, err);
  umask(old_mask);
  if (rc) return -1;
  snprintf(path, sizeof path, "%s.pub", name);
  snprintf(line, sizeof line, "%s\n", pub);
  return dl_write_file_atomic(path, &c, 1, err);
}

static int valid_z85(const char *s, size_t n) {
  if (n != DL_Z85_KEY_LEN) return 0;
  uint8_t bin[32];
  char tmp[DL_Z85_KEY_LEN + 1];
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  return zmq_z85_decode(bin, tmp) != NULL;
}

int dl_curve_read_key(const char *path, dl_curve_key *out, dl_err *err) {
  dl_mapped_file f;
  if (dl_map_file(path, &f, err)) return -1;
  size_t b = 0, e = f.size;
  while (b < e && isspace(f.data[b])) b++;
  while (e > b && isspace(f.data[e - 1])) e--;
  int ok = valid_z85((const char *)f.data + b, e - b);
  if (ok) {
    memcpy(out->z85, f.data + b, DL_Z85_KEY_LEN);
    out->z85[DL_Z85_KEY_LEN] = '\0';
  }
  dl_unmap_file(&f);
  return ok ? 0 : dl_fail(err, "%s: not a z85 CURVE key (40 characters)", path);
}

int dl_curve_public_of(const dl_curve_key *secret, dl_curve_key *pub, dl_err *err) {
  if (zmq_curve_public(pub->z85, secret->z85) != 0)
    return dl_fail(err, "cannot derive the public key (%s)", zmq_strerror(zmq_errno()));
  return 0;
}

int dl_curve_read_allow_list(const char *path, dl_curve_key **keys, int *n, dl_err *err) {
  FILE *f = fopen(path, "r");
  if (!f) return dl_fail(err, "%s: cannot open the allow-list", path);
  *keys = NULL;
  *n = 0;
  char line[256];
  int lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *s = line;
    while (isspace((unsigned char)*s)) s++;
    // '#' is a z85 digit (a random key holds one about 4 times in 10), but
    // never a key's first (84 * 85^4 overflows a 32-bit group): only a token
    // starting with '#' opens a comment.
    size_t len = strcspn(s, " \t\r\n");
    if (len == 0 || s[0] == '#') continue;
    if (!valid_z85(s, len)) {
      fclose(f);
      free(*keys);
      *keys = NULL;
      return dl_fail(err, "%s:%d: not a z85 public key", path, lineno);
    }
    *keys = realloc(*keys, (size_t)(*n + 1) * sizeof **keys);
    if (!*keys) dl_die_input("out of memory");
    memcpy((*keys)[*n].z85, s, DL_Z85_KEY_LEN);
    (*keys)[*n].z85[DL_Z85_KEY_LEN] = '\0';
    (*n)++;
  }
  fclose(f);
  return 0;
}

struct dl_zap_handler {
  void *rep;
  pthread_t thread;
  atomic_bool stop;
  atomic_uint_fast64_t refused, admitted;
  int n;
  uint8_t (*keys)[32];
};

static int key_allowed(const dl_zap_handler *z, const uint8_t *key, size_t len) {
  if (len != 32) return 0;
  for (int i = 0; i < z->n; i++)
    if (memcmp(z->keys[i], key, 32) == 0) return 1;
  return 0;
}

// One ZAP request: version, request id, domain, address, routing id,
// mechanism, credentials (for CURVE: the client's 32-byte public key).
static void answer_one(dl_zap_handler *z) {
  zmq_msg_t f[8];
  int nf = 0, more = 1;
  while (more && nf < 8) {
    zmq_msg_init(&f[nf]);
    if (zmq_msg_recv(&f[nf], z->rep, 0) < 0) {
      zmq_msg_close(&f[nf]);
      break;
    }
    more = zmq_msg_more(&f[nf]);
    nf++;
  }
  int ok = nf >= 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
           key_allowed(z, zmq_msg_data(&f[6]), zmq_msg_size(&f[6]));
  if (ok) atomic_fetch_add(&z->admitted, 1); else atomic_fetch_add(&z->refused, 1);
  const char *status = ok ? "200" : "400";
  const char *text = ok ? "OK" : "public key not on the allow-list";
  zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
  if (nf >= 2) zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
  else zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
  zmq_send(z->rep, status, 3, ZMQ_SNDMORE);
  zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
  zmq_send(z->rep, "", 0, ZMQ_SNDMORE);  // user id
  zmq_send(z->rep, "", 0, 0);            // metadata
  for (int i = 0; i < nf; i++) zmq_msg_close(&f[i]);
}

static void *zap_main(void *arg) {
  dl_zap_handler *z = arg;
  while (!atomic_load(&z->stop)) {
    zmq_pollitem_t it = {z->rep, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&it, 1, 100) > 0 && (it.revents & ZMQ_POLLIN)) answer_one(z);
  }
  return NULL;
}

dl_zap_handler *dl_zap_start(void *ctx, const dl_curve_key *allowed, int n, dl_err *err) {
  dl_zap_handler *z = dl_calloc(1, sizeof *z);
  z->n = n;
  z->keys = dl_calloc(n > 0 ? (size_t)n : 1, 32);
  for (int i = 0; i < n; i++) zmq_z85_decode(z->keys[i], allowed[i].z85);
  z->rep = zmq_socket(ctx, ZMQ_REP);
  int linger = 0;
  zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger);
  if (!z->rep || zmq_bind(z->rep, "inproc://zeromq.zap.01") != 0) {
    dl_fail(err, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
    if (z->rep) zmq_close(z->rep);
    free(z->keys);
    free(z);
    return NULL;
  }
  // The thread owns the socket from here on (pthread_create is a full barrier).
  pthread_create(&z->thread, NULL, zap_main, z);
  return z;
}

void dl_zap_stop(dl_zap_handler *z) {
  if (!z) return;
  atomic_store(&z->stop, true);
  pthread_join(z->thread, NULL);
  zmq_close(z->rep);
  free(z->keys);
  free(z);
}

uint64_t dl_zap_refused(const dl_zap_handler *z) { return atomic_load(&((dl_zap_handler *)z)->refused); }
uint64_t dl_zap_admitted(const dl_zap_handler *z) { return atomic_load(&((dl_zap_handler *)z)->admitted); }
