// Zero-copy lifetimes: a payload frame points into the teacher's encoded
// block (for f32, the very arena the targets were computed into), so the block
// must outlive every frame that ZeroMQ still holds, whatever the cache does.
// 1. Over inproc (ZeroMQ hands the buffer itself to the receiver): blocks sent
//    to three peers are evicted from a one-block cache and dropped by the
//    sender before any peer reads; fresh blocks are then allocated (reusing
//    freed memory, were any freed early). Every payload must still verify by
//    checksum and by value; under ASan an early free is a use-after-free.
// 2. Over loopback TCP: a teacher whose cache holds two blocks, policy free,
//    serving three groups at different speeds, so entries are evicted while
//    their frames wait in the send queues. Every block arrives verified.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "transport/block_cache.h"
#include "transport/wire.h"

enum { kPeers = 3, kQueued = 8 };

// 1 MiB blocks in the benchmark's shape: 4 samples x 64 tokens x 1024 floats.
static const dl_synthetic_spec kBig = {.dim = 1024, .patches = 63, .crops = 1, .block_size = 4};

static dl_encoded_block *compute_block(uint64_t id, const dl_codec_spec *codecs) {
  dl_target_block b = {0};
  dl_err err;
  dl_synthetic_compute((void *)&kBig, id, 224, &b, &err);
  dl_encoded_block *e = dl_encode_block_take(&b, codecs, 0, &err);
  dl_target_block_free(&b);
  return e;
}

// Receives one message on peer and checks it as a student does (checksum,
// decoding, every value). 1 when it verified.
static int receive_and_verify(void *peer, uint64_t want, float tolerance, char *why, size_t why_len) {
  zmq_pollitem_t it = {peer, 0, ZMQ_POLLIN, 0};
  zmq_poll(&it, 1, 2000);
  dl_wire_msg m;
  if (dl_wire_recv(peer, &m) != 1 || m.nframes != 2) {
    snprintf(why, why_len, "no BLOCK message for block %llu", (unsigned long long)want);
    if (m.nframes) dl_wire_msg_close(&m);
    return 0;
  }
  size_t n, len;
  const uint8_t *env = dl_wire_frame(&m, 0, &n);
  const uint8_t *payload = dl_wire_frame(&m, 1, &len);
  dl_envelope *e = NULL;
  dl_err err = {{0}};
  dl_target_block b = {0};
  int ok = dl_envelope_decode(env, n, &e, &err) == 0 && e->body_case == DISTILL__ENVELOPE__BODY_BLOCK &&
           dl_decode_block_msg_borrowing(e->block, payload, len, &b, &err) >= 0 &&
           dl_synthetic_verify(&kBig, &b, want, 224, tolerance, 1, &err) == 0;
  if (!ok) snprintf(why, why_len, "%s", err.msg);
  dl_target_block_free(&b);
  if (e) dl_envelope_free(e);
  dl_wire_msg_close(&m);
  return ok;
}

static void evicted_while_queued(const char *codec_text, float tolerance) {
  dl_codec_spec codecs;
  dl_err err;
  dl_codec_spec_parse(codec_text, &codecs, &err);
  void *ctx = zmq_ctx_new();
  void *router = zmq_socket(ctx, ZMQ_ROUTER);
  int one = 1;
  zmq_setsockopt(router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  zmq_bind(router, "inproc://zero-copy");
  void *peers[kPeers];
  uint8_t rid[kPeers][2];
  for (int i = 0; i < kPeers; i++) {
    peers[i] = zmq_socket(ctx, ZMQ_DEALER);
    rid[i][0] = 'p', rid[i][1] = (uint8_t)('0' + i);
    zmq_setsockopt(peers[i], ZMQ_ROUTING_ID, rid[i], 2);
    zmq_connect(peers[i], "inproc://zero-copy");
  }
  dl_block_cache *cache = dl_block_cache_create(1);  // holds less than one block
  int sent = 0, evicted = 0;
  for (uint64_t id = 0; id < kQueued; id++) {
    dl_encoded_block *e = compute_block(id, &codecs);
    dl_block_cache_put(cache, e);
    size_t n;
    uint8_t *env = dl_encoded_block_pack_envelope(e, &n);
    for (int i = 0; i < kPeers; i++) sent += dl_wire_send(router, rid[i], 2, env, n, e) == DL_WIRE_SENT;
    free(env);
    dl_encoded_block_unref(e);  // the sender lets go at once
    // Over budget: the cache drops its oldest entries while their frames wait.
    while (dl_block_cache_over_budget(cache) && dl_block_cache_count(cache) > 0) {
      const dl_encoded_block *old = dl_block_cache_oldest(cache);
      evicted += dl_block_cache_remove(cache, old->block, old->resolution);
    }
  }
  // Fresh blocks of the same size take the memory any early free gave back.
  dl_encoded_block *fresh[kQueued];
  for (int i = 0; i < kQueued; i++) fresh[i] = compute_block(1000 + (uint64_t)i, &codecs);
  int verified = 0;
  char why[600] = "";
  for (uint64_t id = 0; id < kQueued; id++)
    for (int i = 0; i < kPeers; i++) verified += receive_and_verify(peers[i], id, tolerance, why, sizeof why);
  CHECK(sent == kPeers * kQueued && evicted == kQueued,
        "%s: %d blocks sent zero-copy to %d peers each, all %d evicted from the cache and dropped by "
        "the sender before any peer read", codec_text, kQueued, kPeers, evicted);
  CHECK(verified == kPeers * kQueued, "%s: %d of %d payloads verified (checksum and every value) after "
        "eviction and reuse of freed memory%s%s", codec_text, verified, kPeers * kQueued, *why ? ": " : "", why);
  for (int i = 0; i < kQueued; i++) dl_encoded_block_unref(fresh[i]);
  dl_block_cache_destroy(cache);
  for (int i = 0; i < kPeers; i++) zmq_close(peers[i]);
  zmq_close(router);
  zmq_ctx_term(ctx);
}

// Three groups over TCP against a cache of two blocks (free policy): the
// fast group's blocks are evicted while the slow groups' frames for them may
// still be queued.
static void evicted_under_load(const char *codec_text, float tolerance) {
  enum { kBlocks = 120 };
  dl_teacher_config cfg;
  dl_synthetic_spec spec;
  test_teacher_config(&cfg, &spec);
  spec = kBig;
  cfg.cache_bytes = 2u << 20;
  cfg.lead_policy = DL_LEAD_FREE;
  dl_err err;
  dl_codec_spec_parse(codec_text, &cfg.codecs, &err);
  test_teacher t;
  if (test_teacher_start(&t, &cfg)) {
    CHECK(0, "teacher started");
    return;
  }
  const char *endpoint = dl_teacher_server_endpoint(t.server);
  const char *groups[kPeers] = {"fast", "middle", "slow"};
  test_rank ranks[kPeers];
  for (int i = 0; i < kPeers; i++) {
    test_rank_init(&ranks[i], &endpoint, 1, groups[i], 0, 1, kBlocks);
    ranks[i].spec = kBig;
    ranks[i].tolerance = tolerance;
    ranks[i].cfg.window = 16;
    ranks[i].seconds_per_block = 0.001 * i;
    test_rank_start(&ranks[i]);
  }
  uint64_t failures = 0;
  for (int i = 0; i < kPeers; i++) {
    test_rank_join(&ranks[i]);
    failures += ranks[i].metrics.checksum_failures;
  }
  dl_teacher_metrics m;
  test_teacher_stop(&t, &m);
  printf("-- %s: evicted %llu, released %llu, computed %llu, cache peak %llu bytes\n", codec_text,
         (unsigned long long)m.evicted, (unsigned long long)m.released, (unsigned long long)m.computed,
         (unsigned long long)m.cache_bytes_peak);
  for (int i = 0; i < kPeers; i++) test_rank_check(&ranks[i]);
  CHECK(m.evicted + m.released > 0 && m.computed >= kBlocks,
        "%s: the 2 MiB cache dropped entries under load (%llu evicted, %llu released; %llu computed "
        "for %d distinct blocks)", codec_text, (unsigned long long)m.evicted, (unsigned long long)m.released,
        (unsigned long long)m.computed, kBlocks);
  CHECK(failures == 0, "%s: no payload failed its checksum at the students (%llu)", codec_text,
        (unsigned long long)failures);
}

int main(void) {
  evicted_while_queued("f32", 0.0f);   // the payload is the compute arena itself
  evicted_while_queued("f16", 1e-3f);  // an encoded buffer
  evicted_under_load("f32", 0.0f);
  evicted_under_load("bf16", 1.0f / 128);
  return dl_test_summary("transport_zero_copy");
}
