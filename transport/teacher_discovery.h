// Teacher discovery: `dns:NAME:PORT` in a student's teacher list stands for
// every address NAME resolves to, each as tcp://ADDR:PORT. A background
// thread resolves the names again every interval, so the student client can
// add teachers that appeared (a scaled-up Deployment behind a headless
// Service) and drop those that are gone, without a restart. Resolving off
// the client's thread keeps a slow DNS server from delaying heartbeats.
//
//   dl_discovery *d = dl_discovery_start(specs, n, 10000, NULL, NULL, &err);
//   char eps[DL_MAX_TEACHERS][DL_ENDPOINT_MAX]; int n; uint64_t gen = 0;
//   if (dl_discovery_poll(d, &gen, eps, &n)) ... the set changed: n endpoints ...
//   dl_discovery_stop(d);
#ifndef DISTILL_TRANSPORT_TEACHER_DISCOVERY_H
#define DISTILL_TRANSPORT_TEACHER_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

#define DL_DNS_PREFIX "dns:"
#define DL_ENDPOINT_MAX 300
#define DL_ADDR_MAX 64       // a numeric IPv4 or IPv6 address
#define DL_MAX_DISCOVERED 16  // endpoints kept per resolution (the client's teacher limit)

// Resolves name to numeric addresses (IPv4 dotted, IPv6 without brackets).
// Returns the count (0: the name exists but has no address, or does not
// exist: no teachers now), or -1 on a transient failure (err says which):
// the caller then keeps the teachers it has.
typedef int (*dl_resolve_fn)(const char *name, char (*addrs)[DL_ADDR_MAX], int max, void *ctx, dl_err *err);

// The system resolver (getaddrinfo, TCP, IPv4 and IPv6), deduplicated.
int dl_resolve_getaddrinfo(const char *name, char (*addrs)[DL_ADDR_MAX], int max, void *ctx, dl_err *err);

// True when spec is a `dns:` source. dl_dns_parse checks NAME and PORT.
bool dl_is_dns_spec(const char *spec);
int dl_dns_parse(const char *spec, char *name, size_t name_size, int *port, dl_err *err);

// The ZeroMQ endpoint of an address and port: tcp://A:P, tcp://[A]:P for IPv6.
void dl_endpoint_of(const char *addr, int port, char *out, size_t size);

// Resolves every spec once with resolve and returns the union of endpoints,
// sorted and deduplicated (at most DL_MAX_DISCOVERED). -1 when every
// resolution failed transiently.
int dl_discover_once(const char *const *specs, int nspecs, dl_resolve_fn resolve, void *ctx,
                     char (*endpoints)[DL_ENDPOINT_MAX], int *n, dl_err *err);

typedef struct dl_discovery dl_discovery;

// Resolves once now (so the first set is ready when this returns), then every
// interval_ms on a thread. resolve NULL: dl_resolve_getaddrinfo. specs are
// copied. NULL with err on a malformed spec.
dl_discovery *dl_discovery_start(const char *const *specs, int nspecs, int interval_ms, dl_resolve_fn resolve,
                                 void *ctx, dl_err *err);
// When the set differs from the one the caller saw last (*generation), copies
// it out, updates *generation and returns true.
bool dl_discovery_poll(dl_discovery *d, uint64_t *generation, char (*endpoints)[DL_ENDPOINT_MAX], int *n);
// Resolutions that failed transiently (the set was kept), for the metrics.
uint64_t dl_discovery_failures(dl_discovery *d);
void dl_discovery_stop(dl_discovery *d);

#endif
