// Acceptance (security): with CURVE on, a student whose key is not on the
// teacher's allow-list is refused, an allowed one is served, and the payload
// bytes on the wire differ from the plaintext (captured between the two);
// without CURVE the same capture does show the plaintext, so the check can fail.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "tests/transport/tcp_capture.h"

enum { kBlocks = 50 };

static char g_dir[] = "/tmp/distill-security-XXXXXX";

static dl_curve_key key(const char *name, const char *ext) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s.%s", g_dir, name, ext);
  dl_curve_key k;
  dl_err err;
  if (dl_curve_read_key(path, &k, &err)) {
    printf("%s\n", err.msg);
    exit(1);
  }
  return k;
}

// The first 64 bytes of block 0's payload as a plaintext f32 encoding has them.
static void plaintext_needle(uint8_t needle[64]) {
  dl_synthetic_spec spec = test_stream_spec();
  dl_target_block b;
  memset(&b, 0, sizeof b);
  dl_synthetic_compute(&spec, 0, 224, &b, NULL);
  memcpy(needle, b.tensors[0].data, 64);
  dl_target_block_free(&b);
}

// Serves kBlocks to one student through a capture; returns the captured bytes.
static int serve_captured(bool curve, uint8_t **cap, size_t *ncap, test_rank *rank) {
  dl_curve_key tsec = key("teacher", "key"), tpub = key("teacher", "pub");
  dl_curve_key ssec = key("student", "key"), spub = key("student", "pub");
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  if (curve) {
    cfg.curve_secret = &tsec;
    cfg.allow = &spub;
    cfg.nallow = 1;
  }
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return -1;
  const char *ep = dl_teacher_server_endpoint(t.server);
  tcp_capture *c = tcp_capture_start(atoi(strrchr(ep, ':') + 1));
  const char *cep = tcp_capture_endpoint(c);
  test_rank_init(rank, &cep, 1, "secure", 0, 1, kBlocks);
  if (curve) {
    rank->cfg.curve_secret = &ssec;
    rank->cfg.curve_public = &spub;
    rank->cfg.teacher_public = &tpub;
    rank->cfg.nteacher_keys = 1;
  }
  test_rank_start(rank);
  test_rank_join(rank);
  tcp_capture_stop(c, cap, ncap);
  test_teacher_stop(&t, NULL);
  return 0;
}

static void intruder_is_refused(void) {
  dl_curve_key tsec = key("teacher", "key"), tpub = key("teacher", "pub");
  dl_curve_key spub = key("student", "pub");
  dl_curve_key isec = key("intruder", "key"), ipub = key("intruder", "pub");
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  cfg.curve_secret = &tsec;
  cfg.allow = &spub;
  cfg.nallow = 1;
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return;
  const char *ep = dl_teacher_server_endpoint(t.server);
  test_rank r;
  test_rank_init(&r, &ep, 1, "intruder", 0, 1, kBlocks);
  r.cfg.curve_secret = &isec;
  r.cfg.curve_public = &ipub;
  r.cfg.teacher_public = &tpub;
  r.cfg.nteacher_keys = 1;
  r.timeout_s = 2;
  test_rank_start(&r);
  test_rank_join(&r);
  dl_teacher_metrics m;
  test_teacher_stop(&t, &m);
  CHECK(r.delivered == 0 && r.metrics.live_teachers == 0,
        "a student with a key off the allow-list got no WELCOME and no block (%llu blocks)",
        (unsigned long long)r.delivered);
  CHECK(m.auth_refused >= 1 && m.peers_welcomed == 0,
        "the teacher's ZAP handler refused it (%llu refusals, %llu welcomed)",
        (unsigned long long)m.auth_refused, (unsigned long long)m.peers_welcomed);
}

int main(void) {
  if (!mkdtemp(g_dir)) return 1;
  const char *names[] = {"teacher", "student", "intruder"};
  for (int i = 0; i < 3; i++) {
    char base[256];
    dl_err err;
    snprintf(base, sizeof base, "%s/%s", g_dir, names[i]);
    CHECK(dl_curve_keygen(base, &err) == 0, "keygen %s", names[i]);
  }
  uint8_t needle[64];
  plaintext_needle(needle);
  uint8_t *cap;
  size_t n;
  test_rank r;
  serve_captured(false, &cap, &n, &r);
  test_rank_check(&r);
  CHECK(memmem(cap, n, needle, sizeof needle) != NULL,
        "control, CURVE off: the plaintext payload is visible in the %zu captured bytes", n);
  free(cap);
  serve_captured(true, &cap, &n, &r);
  test_rank_check(&r);
  uint64_t payload = r.metrics.bytes_wire;
  CHECK(n > payload, "CURVE on: %zu bytes captured for %llu payload bytes", n,
        (unsigned long long)payload);
  CHECK(memmem(cap, n, needle, sizeof needle) == NULL,
        "CURVE on: the plaintext payload does not appear on the wire");
  free(cap);
  intruder_is_refused();
  for (int i = 0; i < 3; i++) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s.key", g_dir, names[i]);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s.pub", g_dir, names[i]);
    unlink(p);
  }
  rmdir(g_dir);
  return dl_test_summary("transport_security");
}
