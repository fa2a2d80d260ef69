// A plain TCP forwarder on 127.0.0.1 that records every byte the server side
// sends, so a test can look at what actually crossed the wire.
#ifndef DISTILL_TESTS_TRANSPORT_TCP_CAPTURE_H
#define DISTILL_TESTS_TRANSPORT_TCP_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tcp_capture tcp_capture;

// Forwards connections on a fresh local port to 127.0.0.1:server_port.
tcp_capture *tcp_capture_start(int server_port);
// "tcp://127.0.0.1:PORT" for clients.
const char *tcp_capture_endpoint(const tcp_capture *c);
// Stops; *bytes (malloc'd) and *n get the server-to-client stream.
void tcp_capture_stop(tcp_capture *c, uint8_t **bytes, size_t *n);

#endif
