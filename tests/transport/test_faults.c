// Acceptance (faults): through a relay that corrupts, truncates, delays,
// reorders and duplicates messages, corrupt blocks are caught by the checksum
// and asked again, duplicates are ignored, and the stream still arrives
// exactly once; peers that send garbage, oversized or malformed messages are
// dropped while the teacher keeps serving a well-behaved student; recipe,
// protocol and weights mismatches end in a clear error, never in training.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "tests/harness.h"
#include "tests/transport/fault_relay.h"
#include "tests/transport/stream_helpers.h"
#include "transport/envelope.h"
#include "transport/wire.h"

static void through_faulty_relay(void) {
  enum { kBlocks = 1000 };
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return;
  fault_relay *relay = fault_relay_start(dl_teacher_server_endpoint(t.server), 0.12, 0x5eed);
  const char *ep = fault_relay_endpoint(relay);
  test_rank rank;
  test_rank_init(&rank, &ep, 1, "faulty", 0, 1, kBlocks);
  rank.cfg.request_timeout_ms = 250;
  test_rank_start(&rank);
  test_rank_join(&rank);
  fault_counts f = fault_relay_stop(relay);
  dl_teacher_metrics tm;
  test_teacher_stop(&t, &tm);
  printf("relay: down %llu up %llu; corrupted payload %llu, envelope %llu, truncated %llu, "
         "payload frame dropped %llu, delayed %llu, reordered %llu, duplicated %llu; "
         "up: corrupted %llu, duplicated %llu\n",
         (unsigned long long)f.forwarded_down, (unsigned long long)f.forwarded_up,
         (unsigned long long)f.corrupted_payload, (unsigned long long)f.corrupted_envelope,
         (unsigned long long)f.truncated, (unsigned long long)f.dropped_payload_frame,
         (unsigned long long)f.delayed, (unsigned long long)f.reordered,
         (unsigned long long)f.duplicated, (unsigned long long)f.corrupted_up,
         (unsigned long long)f.duplicated_up);
  dl_student_metrics_print(&rank.metrics, "faulty", 0, stdout);
  dl_teacher_metrics_print(&tm, stdout);
  CHECK(f.corrupted_payload > 0 && f.corrupted_envelope > 0 && f.truncated > 0 && f.delayed > 0 &&
            f.reordered > 0 && f.duplicated > 0 && f.corrupted_up > 0,
        "the relay made every kind of fault at least once");
  test_rank_check(&rank);
  const dl_student_metrics *m = &rank.metrics;
  // A damaged copy of a block the student already holds is ignored as a
  // duplicate before its checksum is even computed; every other one fails it.
  CHECK(m->checksum_failures > 0 &&
            m->checksum_failures + m->duplicates >= f.corrupted_payload + f.truncated,
        "corrupted or truncated payloads were caught (%llu by checksum, %llu ignored as duplicates; %llu made)",
        (unsigned long long)m->checksum_failures, (unsigned long long)m->duplicates,
        (unsigned long long)(f.corrupted_payload + f.truncated));
  CHECK(m->duplicates > 0, "duplicates were seen and ignored (%llu)", (unsigned long long)m->duplicates);
  CHECK(m->rerequested > 0, "lost and corrupt blocks were asked again (%llu)",
        (unsigned long long)m->rerequested);
  CHECK(tm.bad_messages > 0, "the teacher dropped corrupted requests (%llu)",
        (unsigned long long)tm.bad_messages);
}

static void send_raw_tcp_garbage(const char *endpoint) {
  const char *colon = strrchr(endpoint, ':');
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 131 + 7);
    // MSG_NOSIGNAL: the teacher may hang up mid-way, which must not kill the test.
    for (int i = 0; i < 4; i++)
      if (send(fd, junk, sizeof junk, MSG_NOSIGNAL) < 0) break;
  }
  close(fd);
}

static void *dealer(void *ctx, const char *endpoint) {
  void *d = zmq_socket(ctx, ZMQ_DEALER);
  int zero = 0;
  zmq_setsockopt(d, ZMQ_LINGER, &zero, sizeof zero);
  zmq_connect(d, endpoint);
  return d;
}

static void send_hello(void *d, uint32_t version, uint64_t recipe) {
  dl_envelope e;
  dl_envelope_init(&e);
  e.version = version;
  Distill__Hello h = DISTILL__HELLO__INIT;
  h.protocol_version = version;
  h.group = "attacker";
  h.world = 1;
  h.recipe_hash = recipe;
  e.body_case = DISTILL__ENVELOPE__BODY_HELLO;
  e.hello = &h;
  size_t n;
  uint8_t *buf = dl_envelope_pack(&e, &n);
  zmq_send(d, buf, n, 0);
  free(buf);
}

// Waits for one envelope on d and returns its REJECT code, or -1.
static int reject_code(void *d) {
  zmq_pollitem_t it = {d, 0, ZMQ_POLLIN, 0};
  if (zmq_poll(&it, 1, 3000) <= 0) return -1;
  dl_wire_msg m;
  if (dl_wire_recv(d, &m) <= 0) return -1;
  size_t n;
  const uint8_t *data = dl_wire_frame(&m, 0, &n);
  dl_envelope *e;
  int code = -1;
  if (dl_envelope_decode(data, n, &e, NULL) == 0) {
    if (e->body_case == DISTILL__ENVELOPE__BODY_REJECT) code = e->reject->code;
    dl_envelope_free(e);
  }
  dl_wire_msg_close(&m);
  return code;
}

static void garbage_peers(void) {
  enum { kBlocks = 2000 };
  const uint64_t recipe = 0x1234abcd;
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  cfg.recipe_hash = recipe;
  cfg.weights_hash = 0xfeed;
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) return;
  const char *ep = dl_teacher_server_endpoint(t.server);
  test_rank good;
  test_rank_init(&good, &ep, 1, "good", 0, 1, kBlocks);
  good.cfg.recipe_hash = recipe;
  good.seconds_per_block = 0.0005;  // keep it running while the attacks happen
  test_rank_start(&good);

  void *ctx = zmq_ctx_new();
  for (int i = 0; i < 3; i++) send_raw_tcp_garbage(ep);
  void *junk = dealer(ctx, ep);
  uint8_t bytes[512];
  for (int i = 0; i < 20; i++) {
    for (size_t j = 0; j < sizeof bytes; j++) bytes[j] = (uint8_t)((j * 7 + (size_t)i * 13) ^ 0xA5);
    zmq_send(junk, bytes, 64 + (size_t)i * 20, 0);  // not an envelope
  }
  void *big = dealer(ctx, ep);
  size_t huge = 2u << 20;  // over the teacher's 1 MiB message limit
  uint8_t *hbuf = calloc(1, huge);
  zmq_send(big, hbuf, huge, 0);
  free(hbuf);
  void *malformed = dealer(ctx, ep);
  send_hello(malformed, DL_PROTOCOL_VERSION, recipe);
  zmq_send(malformed, "a", 1, ZMQ_SNDMORE);  // five frames: students never send that
  for (int i = 0; i < 3; i++) zmq_send(malformed, "b", 1, ZMQ_SNDMORE);
  zmq_send(malformed, "c", 1, 0);
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Request req = DISTILL__REQUEST__INIT;  // zero blocks: invalid
  e.body_case = DISTILL__ENVELOPE__BODY_REQUEST;
  e.request = &req;
  size_t n;
  uint8_t *buf = dl_envelope_pack(&e, &n);
  zmq_send(malformed, buf, n, 0);
  free(buf);
  void *old = dealer(ctx, ep);
  send_hello(old, 99, recipe);
  int old_code = reject_code(old);
  void *other = dealer(ctx, ep);
  send_hello(other, DL_PROTOCOL_VERSION, recipe + 1);
  int other_code = reject_code(other);
  // A peer that says HELLO and then nothing while staying connected:
  // forgotten after dead_after (a closed one is noticed sooner, on a send).
  void *mute = dealer(ctx, ep);
  send_hello(mute, DL_PROTOCOL_VERSION, recipe);
  test_sleep(0.2);  // let the queued messages go out before the sockets close
  void *socks[] = {junk, big, malformed, old, other};
  for (int i = 0; i < 5; i++) zmq_close(socks[i]);

  // Full students with the wrong recipe or expecting other weights.
  test_rank wrong_recipe, wrong_weights;
  test_rank_init(&wrong_recipe, &ep, 1, "wrong-recipe", 0, 1, 10);
  wrong_recipe.cfg.recipe_hash = recipe ^ 1;
  test_rank_init(&wrong_weights, &ep, 1, "wrong-weights", 0, 1, 10);
  wrong_weights.cfg.recipe_hash = recipe;
  wrong_weights.cfg.weights_hash = 0xbeef;
  wrong_recipe.timeout_s = wrong_weights.timeout_s = 10;
  test_rank_start(&wrong_recipe);
  test_rank_start(&wrong_weights);
  test_rank_join(&wrong_recipe);
  test_rank_join(&wrong_weights);

  test_rank_join(&good);
  test_sleep(0.6);  // past dead_after, in case the good student was quick
  dl_teacher_metrics tm;
  test_teacher_stop(&t, &tm);
  zmq_close(mute);
  zmq_ctx_term(ctx);
  dl_teacher_metrics_print(&tm, stdout);
  test_rank_check(&good);
  CHECK(tm.bad_messages >= 22, "teacher dropped %llu bad messages (20 garbage, 1 five-frame, 1 empty request)",
        (unsigned long long)tm.bad_messages);
  CHECK(tm.peers_silent >= 1 && tm.live_peers == 0,
        "a peer that went silent was forgotten (%llu silent, %llu still live)",
        (unsigned long long)tm.peers_silent, (unsigned long long)tm.live_peers);
  CHECK(old_code == DISTILL__REJECT__CODE__PROTOCOL, "a HELLO of protocol 99 got REJECT PROTOCOL (%d)", old_code);
  CHECK(other_code == DISTILL__REJECT__CODE__RECIPE, "a HELLO with another recipe got REJECT RECIPE (%d)", other_code);
  CHECK(wrong_recipe.fatal && strstr(wrong_recipe.error, "sample stream differs") && wrong_recipe.delivered == 0,
        "a student with another recipe stops with: %s", wrong_recipe.error);
  CHECK(wrong_weights.fatal && strstr(wrong_weights.error, "serves weights") && wrong_weights.delivered == 0,
        "a student expecting other weights stops with: %s", wrong_weights.error);
}

int main(void) {
  through_faulty_relay();
  garbage_peers();
  return dl_test_summary("transport_faults");
}
