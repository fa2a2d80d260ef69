// tcp_ceiling: what the kernel's loopback TCP alone can carry on this
// machine, in the shape of `bench/run transport` (one sender, one stream per
// student group, 1 MiB blocks, every block sent to every receiver) but with
// no ZeroMQ, protobuf, codec, checksum or verification. bench/transport.sh
// runs it beside the transport, so the transport's figure can be read as a
// fraction of what the machine allows at that moment.
//
//   tcp_ceiling [--receivers N] [--blocks N] [--block-bytes N] [--sockbuf N]
//               [--send-buffers N] [--recv-buffers N]
//
// The sender is one thread with non-blocking sockets and poll(), like the
// teacher's single ZeroMQ I/O thread; each receiver is its own process that
// reads into one buffer and drops the bytes. --sockbuf sets SO_SNDBUF and
// SO_RCVBUF (0: the kernel's autotuning). By default the sender sends one
// buffer over and over and each receiver reads into one buffer, both always in
// cache; --send-buffers and --recv-buffers cycle through that many distinct
// blocks instead, in the transport's shape (a teacher sends from a cache of
// many blocks, a student receives each block into its own buffer while a
// window of them is in flight). Prints one line ending gbps=X
// (payload 10^9 bytes per second). Exit status 2 on bad flags, 1 on failure.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_RECEIVERS 16

typedef struct options {
  int receivers;
  long blocks;
  long block_bytes;
  int sockbuf;
  long send_buffers, recv_buffers;  // distinct blocks cycled through (1: one, always hot)
} options;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage_error(const char *what) {
  fprintf(stderr, "tcp_ceiling: %s\n"
                  "usage: tcp_ceiling [--receivers N] [--blocks N] [--block-bytes N] [--sockbuf N]"
                  " [--send-buffers N] [--recv-buffers N]\n",
          what);
  exit(2);
}

static long parse_long(const char *flag, const char *s, long lo, long hi) {
  char *end;
  errno = 0;
  long v = s ? strtol(s, &end, 10) : 0;
  if (!s || errno || *end || v < lo || v > hi) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s wants an integer in [%ld, %ld]", flag, lo, hi);
    usage_error(msg);
  }
  return v;
}

static options parse_options(int argc, char **argv) {
  options o = {3, 2000, 1 << 20, 0, 1, 1};
  for (int i = 1; i < argc; i += 2) {  // every flag takes a value
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(f, "--receivers")) o.receivers = (int)parse_long(f, v, 1, MAX_RECEIVERS);
    else if (!strcmp(f, "--blocks")) o.blocks = parse_long(f, v, 1, 1L << 30);
    else if (!strcmp(f, "--block-bytes")) o.block_bytes = parse_long(f, v, 1, 1L << 30);
    else if (!strcmp(f, "--sockbuf")) o.sockbuf = (int)parse_long(f, v, 0, 1L << 30);
    else if (!strcmp(f, "--send-buffers")) o.send_buffers = parse_long(f, v, 1, 4096);
    else if (!strcmp(f, "--recv-buffers")) o.recv_buffers = parse_long(f, v, 1, 4096);
    else usage_error("unknown flag");
  }
  if (o.block_bytes * o.send_buffers > (4L << 30) || o.block_bytes * o.recv_buffers > (4L << 30))
    usage_error("--block-bytes times --send-buffers or --recv-buffers is over 4 GiB");
  return o;
}

static void set_buffers(int fd, int bytes) {
  if (bytes == 0) return;  // keep the kernel's autotuning
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

// A receiver process: reads until it has every byte; exit status 0 on success.
static void run_receiver(const struct sockaddr_in *addr, const options *o) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  set_buffers(fd, o->sockbuf);
  if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0) _exit(1);
  char *bufs = malloc((size_t)(o->block_bytes * o->recv_buffers));
  long long want = (long long)o->blocks * o->block_bytes, got = 0;
  while (bufs && got < want) {
    long long k = got / o->block_bytes, off = got % o->block_bytes;  // block k lands in buffer k mod N
    char *buf = bufs + (k % o->recv_buffers) * o->block_bytes;
    ssize_t n = read(fd, buf + off, (size_t)(o->block_bytes - off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  _exit(got == want ? 0 : 1);
}

// Sends every block (cycling through o->send_buffers of them) to every
// receiver; returns 0 when all bytes went out.
static int run_sender(const int *fds, const char *blocks, const options *o) {
  long long want = (long long)o->blocks * o->block_bytes, sent[MAX_RECEIVERS] = {0};
  for (;;) {
    struct pollfd p[MAX_RECEIVERS];
    int who[MAX_RECEIVERS], np = 0;
    for (int r = 0; r < o->receivers; r++)
      if (sent[r] < want) {
        p[np] = (struct pollfd){.fd = fds[r], .events = POLLOUT};
        who[np++] = r;
      }
    if (np == 0) break;
    if (poll(p, (nfds_t)np, 10000) <= 0) return -1;
    for (int i = 0; i < np; i++) {
      if (p[i].revents & (POLLERR | POLLHUP)) return -1;
      if (!(p[i].revents & POLLOUT)) continue;
      int r = who[i];
      long off = (long)(sent[r] % o->block_bytes);
      const char *block = blocks + (sent[r] / o->block_bytes % o->send_buffers) * o->block_bytes;
      ssize_t n = write(fds[r], block + off, (size_t)(o->block_bytes - off));
      if (n > 0) sent[r] += n;
      else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    }
  }
  return 0;
}

int main(int argc, char **argv) {
  options o = parse_options(argc, argv);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
      listen(listener, MAX_RECEIVERS) != 0 ||
      getsockname(listener, (struct sockaddr *)&addr, &len) != 0) {
    perror("tcp_ceiling: loopback listener");
    return 1;
  }
  for (int r = 0; r < o.receivers; r++)
    if (fork() == 0) run_receiver(&addr, &o);
  int fds[MAX_RECEIVERS];
  for (int r = 0; r < o.receivers; r++) {
    fds[r] = accept(listener, NULL, NULL);
    if (fds[r] < 0) {
      perror("tcp_ceiling: accept");
      return 1;
    }
    set_buffers(fds[r], o.sockbuf);
    fcntl(fds[r], F_SETFL, O_NONBLOCK);
  }
  size_t all = (size_t)(o.block_bytes * o.send_buffers);  // filled before the clock starts
  char *blocks = malloc(all);
  if (!blocks) {
    fprintf(stderr, "tcp_ceiling: no memory for %zu bytes of blocks\n", all);
    return 1;
  }
  memset(blocks, 0x5a, all);
  double start = now_seconds();
  int failed = run_sender(fds, blocks, &o) != 0;
  free(blocks);
  for (int r = 0; r < o.receivers; r++) close(fds[r]);
  for (int r = 0; r < o.receivers; r++) {
    int status;
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  double seconds = now_seconds() - start;
  if (failed) {
    fprintf(stderr, "tcp_ceiling: a transfer failed\n");
    return 1;
  }
  double bytes = (double)o.receivers * (double)o.blocks * (double)o.block_bytes;
  printf("tcp_ceiling receivers=%d block_bytes=%ld sockbuf=%d send_buffers=%ld recv_buffers=%ld bytes=%.0f "
         "seconds=%.3f gbps=%.2f\n", o.receivers, o.block_bytes, o.sockbuf, o.send_buffers, o.recv_buffers,
         bytes, seconds, bytes / seconds / 1e9);
  return 0;
}
