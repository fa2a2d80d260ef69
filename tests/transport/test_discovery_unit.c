// Unit checks of teacher discovery: dns:NAME:PORT parsing and its refusals,
// endpoints of IPv4 and IPv6 addresses, the real getaddrinfo path on
// localhost, a name that cannot exist, and the discovery thread picking up a
// changed answer from an injected resolver.
#include <stdio.h>
#include <string.h>

#include "common/timing.h"
#include "tests/harness.h"
#include "tests/transport/stream_helpers.h"
#include "transport/teacher_discovery.h"

// A resolver whose answer the test changes: ctx points to an address count.
static int counting_resolve(const char *name, char (*addrs)[DL_ADDR_MAX], int max, void *ctx, dl_err *err) {
  (void)name;
  (void)err;
  int n = *(volatile int *)ctx;
  if (n < 0) return dl_fail(err, "resolver down");
  for (int i = 0; i < n && i < max; i++) snprintf(addrs[i], DL_ADDR_MAX, "10.0.0.%d", i + 1);
  return n < max ? n : max;
}

int main(void) {
  char name[256];
  int port = 0;
  dl_err err;
  CHECK(dl_dns_parse("dns:teacher.ns.svc.cluster.local:5555", name, sizeof name, &port, &err) == 0 &&
            !strcmp(name, "teacher.ns.svc.cluster.local") && port == 5555,
        "dns:NAME:PORT parses (%s, %d)", name, port);
  const char *bad[] = {"dns:teacher", "dns::5555", "dns:teacher:0", "dns:teacher:65536", "dns:teacher:55x", "tcp://a:1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = dl_dns_parse(bad[i], name, sizeof name, &port, &err);
    CHECK(rc == -1, "%s is refused: %s", bad[i], rc ? err.msg : "accepted");
  }
  char ep[DL_ENDPOINT_MAX];
  dl_endpoint_of("10.1.2.3", 5555, ep, sizeof ep);
  CHECK(!strcmp(ep, "tcp://10.1.2.3:5555"), "IPv4 endpoint %s", ep);
  dl_endpoint_of("fd00::7", 5555, ep, sizeof ep);
  CHECK(!strcmp(ep, "tcp://[fd00::7]:5555"), "IPv6 endpoint %s", ep);

  char addrs[DL_MAX_DISCOVERED][DL_ADDR_MAX];
  int n = dl_resolve_getaddrinfo("localhost", addrs, DL_MAX_DISCOVERED, NULL, &err);
  bool loopback = false;
  for (int i = 0; i < n; i++) loopback |= !strcmp(addrs[i], "127.0.0.1") || !strcmp(addrs[i], "::1");
  CHECK(n >= 1 && loopback, "getaddrinfo: localhost has %d address(es), a loopback one among them (%s)", n,
        n > 0 ? addrs[0] : err.msg);
  bool unique = true;
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++) unique &= strcmp(addrs[i], addrs[j]) != 0;
  CHECK(unique, "getaddrinfo: each address once");
  // RFC 6761: .invalid never resolves. Without a DNS server the answer may
  // be a transient failure instead; either way, no address and no crash.
  n = dl_resolve_getaddrinfo("no-such-teacher.invalid", addrs, DL_MAX_DISCOVERED, NULL, &err);
  CHECK(n <= 0, "no-such-teacher.invalid gives no address (%d)", n);

  volatile int answer = 2;
  const char *specs[] = {"dns:teachers:6000"};
  char eps[DL_MAX_DISCOVERED][DL_ENDPOINT_MAX];
  uint64_t gen = 0;
  dl_discovery *d = dl_discovery_start(specs, 1, 20, counting_resolve, (void *)&answer, &err);
  CHECK(d && dl_discovery_poll(d, &gen, eps, &n) && n == 2 && !strcmp(eps[0], "tcp://10.0.0.1:6000"),
        "the first set is ready at start: %d endpoints", n);
  CHECK(!dl_discovery_poll(d, &gen, eps, &n), "an unchanged answer is no change");
  answer = -1;
  test_sleep(0.1);
  CHECK(!dl_discovery_poll(d, &gen, eps, &n) && dl_discovery_failures(d) > 0,
        "a failing resolver keeps the set (%llu failures)", (unsigned long long)dl_discovery_failures(d));
  answer = 3;
  double t0 = dl_now_seconds();
  bool changed = false;
  while (!changed && dl_now_seconds() - t0 < 2) {
    changed = dl_discovery_poll(d, &gen, eps, &n);
    test_sleep(0.005);
  }
  CHECK(changed && n == 3, "a third address is picked up in %.3f s", dl_now_seconds() - t0);
  answer = 0;
  t0 = dl_now_seconds();
  changed = false;
  while (!changed && dl_now_seconds() - t0 < 2) {
    changed = dl_discovery_poll(d, &gen, eps, &n);
    test_sleep(0.005);
  }
  CHECK(changed && n == 0, "a name with no address left empties the set");
  dl_discovery_stop(d);
  CHECK(dl_discovery_start(specs, 1, 0, counting_resolve, (void *)&answer, &err) == NULL,
        "an interval of 0 is refused: %s", err.msg);
  return dl_test_summary("transport_discovery_unit");
}
