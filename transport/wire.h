// Multipart ZeroMQ messages: [routing id (ROUTER side only)] [envelope]
// [payload]. The payload frame is sent zero-copy: it points into a
// dl_encoded_block and holds one reference until ZeroMQ has sent it.
#ifndef DISTILL_TRANSPORT_WIRE_H
#define DISTILL_TRANSPORT_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "transport/encoded_block.h"

enum {
  DL_WIRE_SENT = 0,
  DL_WIRE_AGAIN = 1,        // the peer's queue is full: nothing was sent, retry later
  DL_WIRE_UNREACHABLE = 2,  // the peer is gone (ROUTER_MANDATORY)
  DL_WIRE_ERROR = -1,
};

// Sends without blocking. rid may be NULL (DEALER side). payload may be NULL.
int dl_wire_send(void *sock, const uint8_t *rid, size_t rid_len, const uint8_t *env,
                 size_t env_len, dl_encoded_block *payload);

// Packs and sends an envelope without payload.
int dl_wire_send_envelope(void *sock, const uint8_t *rid, size_t rid_len, const dl_envelope *e);

// One received message. Frames beyond DL_WIRE_MAX_FRAMES are counted, closed
// and make the message malformed.
#define DL_WIRE_MAX_FRAMES 4
typedef struct dl_wire_msg {
  int nframes;
  int overflow;  // frames dropped past the limit
  zmq_msg_t frames[DL_WIRE_MAX_FRAMES];
} dl_wire_msg;

// Receives one whole message without blocking. Returns 1 when one came, 0
// when none was waiting, -1 on a socket error.
int dl_wire_recv(void *sock, dl_wire_msg *m);
void dl_wire_msg_close(dl_wire_msg *m);
static inline const uint8_t *dl_wire_frame(dl_wire_msg *m, int i, size_t *n) {
  *n = zmq_msg_size(&m->frames[i]);
  return zmq_msg_data(&m->frames[i]);
}

#endif
