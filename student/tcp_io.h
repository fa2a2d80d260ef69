// Plain TCP for the student group's own channel (student/group_tcp.h): a
// listening socket, connecting with retries until a deadline, and reads and
// writes that either move every byte or fail with a message, never block
// longer than their timeout, and never raise SIGPIPE. Deadlines are absolute
// times from dl_now_seconds().
#ifndef DISTILL_STUDENT_TCP_IO_H
#define DISTILL_STUDENT_TCP_IO_H

#include <stddef.h>

#include "common/err.h"

// Splits "HOST:PORT" ("[v6addr]:PORT" too); -1 with a message when malformed.
int dl_tcp_split_addr(const char *addr, char *host, size_t host_cap, int *port, dl_err *err);

// A socket listening on PORT on every address (IPv6 and IPv4 where possible).
int dl_tcp_listen(int port, dl_err *err);
// The next connection before the deadline; -1 with a message on timeout.
// The peer's address is written to peer ("ADDR:PORT").
int dl_tcp_accept(int listen_fd, double deadline, char *peer, size_t peer_cap, dl_err *err);
// One attempt to connect to any address HOST resolves to (each address tried
// for at most 2 s); -1 with the reason (no such name, refused, ...).
int dl_tcp_connect_once(const char *host, int port, dl_err *err);

// Keepalive probes and TCP_USER_TIMEOUT: a peer whose machine vanished
// (no FIN, no RST) is noticed within about timeout_s seconds.
void dl_tcp_tune(int fd, int timeout_s);

// Every byte, each wait for progress bounded by timeout_ms. -1 with a message
// naming `who` on a timeout, a closed connection or an error.
int dl_tcp_send_all(int fd, const void *buf, size_t n, int timeout_ms, const char *who, dl_err *err);
int dl_tcp_recv_all(int fd, void *buf, size_t n, int timeout_ms, const char *who, dl_err *err);

#endif
