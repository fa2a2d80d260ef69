// tcp_ceiling: what the kernel's loopback TCP alone can carry on this
// machine, in the shape of `bench/run transport` (one sender, one stream per
// student group, 1 MiB blocks, every block sent to every receiver) but with
// no ZeroMQ, protobuf, codec, checksum or verification. bench/transport.sh
// runs it beside the transport, so the transport's figure can be read as a
// fraction of what the machine allows at that moment.
//
//   tcp_ceiling [--receivers N] [--blocks N] [--block-bytes N] [--sockbuf N]
//
// The sender is one thread with non-blocking sockets and poll(), like the
// teacher's single ZeroMQ I/O thread; each receiver is its own process that
// reads into one buffer and drops the bytes. --sockbuf sets SO_SNDBUF and
// SO_RCVBUF (0: the kernel's autotuning). Prints one line ending gbps=X
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
} options;

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage_error(const char *what) {
  fprintf(stderr, "tcp_ceiling: %s\n"
                  "usage: tcp_ceiling [--receivers N] [--blocks N] [--block-bytes N] [--sockbuf N]\n",
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
  options o = {3, 2000, 1 << 20, 0};
  for (int i = 1; i < argc; i += 2) {  // every flag takes a value
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(f, "--receivers")) o.receivers = (int)parse_long(f, v, 1, MAX_RECEIVERS);
    else if (!strcmp(f, "--blocks")) o.blocks = parse_long(f, v, 1, 1L << 30);
    else if (!strcmp(f, "--block-bytes")) o.block_bytes = parse_long(f, v, 1, 1L << 30);
    else if (!strcmp(f, "--sockbuf")) o.sockbuf = (int)parse_long(f, v, 0, 1L << 30);
    else usage_error("unknown flag");
  }
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
  char *buf = malloc((size_t)o->block_bytes);
  long long want = (long long)o->blocks * o->block_bytes, got = 0;
  while (buf && got < want) {
    ssize_t n = read(fd, buf, (size_t)o->block_bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  _exit(got == want ? 0 : 1);
}

// Sends every block to every receiver; returns 0 when all bytes went out.
static int run_sender(const int *fds, const options *o) {
  char *block = malloc((size_t)o->block_bytes);
  if (!block) return -1;
  memset(block, 0x5a, (size_t)o->block_bytes);
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
      ssize_t n = write(fds[r], block + off, (size_t)(o->block_bytes - off));
      if (n > 0) sent[r] += n;
      else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
    }
  }
  free(block);
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
  double start = now_seconds();
  int failed = run_sender(fds, &o) != 0;
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
  printf("tcp_ceiling receivers=%d block_bytes=%ld sockbuf=%d bytes=%.0f seconds=%.3f gbps=%.2f\n",
         o.receivers, o.block_bytes, o.sockbuf, bytes, seconds, bytes / seconds / 1e9);
  return 0;
}
