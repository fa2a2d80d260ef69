#include "transport/wire.h"

#include <errno.h>
#include <stdlib.h>

static void release_payload(void *data, void *hint) {
  (void)data;
  dl_encoded_block_unref(hint);
}

static int classify(int e) {
  if (e == EAGAIN) return DL_WIRE_AGAIN;
  if (e == EHOSTUNREACH) return DL_WIRE_UNREACHABLE;
  return DL_WIRE_ERROR;
}

int dl_wire_send(void *sock, const uint8_t *rid, size_t rid_len, const uint8_t *env,
                 size_t env_len, dl_encoded_block *payload) {
  int more = payload ? ZMQ_SNDMORE : 0;
  // With ROUTER_MANDATORY a full or vanished peer is reported on the first
  // frame, before anything is queued, so a failed send leaves no partial message.
  if (rid && zmq_send(sock, rid, rid_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) return classify(errno);
  if (zmq_send(sock, env, env_len, ZMQ_DONTWAIT | more) < 0) return classify(errno);
  if (!payload) return DL_WIRE_SENT;
  zmq_msg_t msg;
  dl_encoded_block_ref(payload);
  if (zmq_msg_init_data(&msg, payload->payload, payload->payload_bytes, release_payload, payload)) {
    dl_encoded_block_unref(payload);
    return DL_WIRE_ERROR;
  }
  if (zmq_msg_send(&msg, sock, ZMQ_DONTWAIT) < 0) {
    int e = errno;
    zmq_msg_close(&msg);  // drops the reference through release_payload
    return classify(e);
  }
  return DL_WIRE_SENT;
}

int dl_wire_send_envelope(void *sock, const uint8_t *rid, size_t rid_len, const dl_envelope *e) {
  size_t n;
  uint8_t *buf = dl_envelope_pack(e, &n);
  int rc = dl_wire_send(sock, rid, rid_len, buf, n, NULL);
  free(buf);
  return rc;
}

int dl_wire_recv(void *sock, dl_wire_msg *m) {
  m->nframes = 0;
  m->overflow = 0;
  zmq_msg_t spill;  // frames past the limit land here and are dropped
  for (;;) {
    int keep = m->nframes < DL_WIRE_MAX_FRAMES;
    zmq_msg_t *f = keep ? &m->frames[m->nframes] : &spill;
    zmq_msg_init(f);
    // Only the first frame may be absent: the rest of a message arrives with it.
    int flags = m->nframes == 0 ? ZMQ_DONTWAIT : 0;
    if (zmq_msg_recv(f, sock, flags) < 0) {
      int e = errno;
      zmq_msg_close(f);
      if (m->nframes == 0 && e == EAGAIN) return 0;
      dl_wire_msg_close(m);
      return -1;
    }
    int more = zmq_msg_more(f);
    if (keep) {
      m->nframes++;
    } else {
      m->overflow++;
      zmq_msg_close(f);
    }
    if (!more) return 1;
  }
}

void dl_wire_msg_close(dl_wire_msg *m) {
  for (int i = 0; i < m->nframes; i++) zmq_msg_close(&m->frames[i]);
  m->nframes = 0;
}
