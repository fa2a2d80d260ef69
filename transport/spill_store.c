#include "transport/spill_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport/store_record.h"

#define SPILL_PREFIX "spill-"
#define SPILL_SUFFIX ".dlsp"
enum { SPILL_PATH_MAX = 4096, SPILL_NAME_MAX = 64 };

typedef struct spill_entry {
  uint64_t block;
  uint32_t resolution;
  uint64_t bytes;  // the record, as counted against the budget
} spill_entry;

struct dl_spill_store {
  char *dir;
  bool created_dir;
  uint64_t budget, bytes;
  spill_entry *entries;  // sorted by (block, resolution)
  size_t n, cap;
  dl_spill_counters counters;
};

// ---- file names

static void spill_path(const dl_spill_store *s, uint64_t block, uint32_t res, char *out,
                       size_t n) {
  snprintf(out, n, "%s/" SPILL_PREFIX "%016llx-%u" SPILL_SUFFIX, s->dir, (unsigned long long)block,
           res);
}

static bool is_spill_file(const char *name) {
  size_t len = strlen(name), pre = strlen(SPILL_PREFIX), suf = strlen(SPILL_SUFFIX);
  return len > pre + suf && strncmp(name, SPILL_PREFIX, pre) == 0 &&
         strcmp(name + len - suf, SPILL_SUFFIX) == 0;
}

// Spill files outlive a killed teacher; the next one in the same directory
// cannot trust or use them, and they count against nobody's budget.
static int remove_old_spill_files(const char *dir, dl_err *err) {
  DIR *d = opendir(dir);
  if (!d) return dl_fail(err, "%s: cannot list the spill directory: %s", dir, strerror(errno));
  int rc = 0;
  for (struct dirent *e; rc == 0 && (e = readdir(d));)
    if (is_spill_file(e->d_name) && unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT)
      rc = dl_fail(err, "%s/%s: cannot remove an old spill file: %s", dir, e->d_name,
                   strerror(errno));
  closedir(d);
  return rc;
}

// Creates dir, or checks that what is there is a directory.
static int make_spill_dir(const char *dir, bool *created, dl_err *err) {
  *created = mkdir(dir, 0755) == 0;
  if (*created) return 0;
  if (errno != EEXIST)
    return dl_fail(err, "%s: cannot create the spill directory: %s", dir, strerror(errno));
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return dl_fail(err, "%s: exists and is not a directory", dir);
  return 0;
}

// ---- the in-memory index

static int cmp_key(const spill_entry *e, uint64_t block, uint32_t res) {
  if (e->block != block) return e->block < block ? -1 : 1;
  return e->resolution < res ? -1 : e->resolution > res;
}

// The first position whose entry is not below (block, res).
static size_t lower_bound(const dl_spill_store *s, uint64_t block, uint32_t res) {
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cmp_key(&s->entries[mid], block, res) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static spill_entry *find(const dl_spill_store *s, uint64_t block, uint32_t res) {
  size_t i = lower_bound(s, block, res);
  return i < s->n && cmp_key(&s->entries[i], block, res) == 0 ? &s->entries[i] : NULL;
}

static void insert_entry(dl_spill_store *s, spill_entry e) {
  if (s->n == s->cap) {
    s->cap = s->cap ? 2 * s->cap : 64;
    s->entries = realloc(s->entries, s->cap * sizeof *s->entries);
    if (!s->entries) dl_die_input("out of memory");
  }
  size_t i = lower_bound(s, e.block, e.resolution);
  memmove(&s->entries[i + 1], &s->entries[i], (s->n - i) * sizeof *s->entries);
  s->entries[i] = e;
  s->n++;
  s->bytes += e.bytes;
}

static void remove_entry(dl_spill_store *s, spill_entry *e) {
  s->bytes -= e->bytes;
  size_t i = (size_t)(e - s->entries);
  memmove(&s->entries[i], &s->entries[i + 1], (s->n - i - 1) * sizeof *s->entries);
  s->n--;
}

// ---- file I/O

static int pwrite_all(int fd, const void *data, size_t n, off_t at) {
  const uint8_t *p = data;
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
    at += w;
  }
  return 0;
}

// The bytes read: n, fewer when the file ends first, or -1 (errno set).
static ssize_t pread_all(int fd, void *data, size_t n) {
  uint8_t *p = data;
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(fd, p + got, n - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (ssize_t)got;
}

static int write_record_file(const char *path, const dl_store_record *rec, dl_err *err) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return dl_fail(err, "%s: cannot create: %s", path, strerror(errno));
  off_t env_at = DL_STORE_RECORD_HEADER, pay_at = env_at + (off_t)rec->envelope_bytes;
  int rc = pwrite_all(fd, rec->header, DL_STORE_RECORD_HEADER, 0) ||
           pwrite_all(fd, rec->envelope, rec->envelope_bytes, env_at) ||
           pwrite_all(fd, rec->payload, rec->payload_bytes, pay_at);
  int e = errno;
  if (close(fd) != 0 && !rc) {
    rc = 1;
    e = errno;
  }
  if (!rc) return 0;
  unlink(path);
  return dl_fail(err, "%s: write failed: %s", path, strerror(e));
}

// The whole file, which must be exactly `bytes` long, into a fresh buffer.
static uint8_t *read_record_file(const char *path, uint64_t bytes, dl_err *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    dl_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  uint8_t *buf = NULL;
  if (fstat(fd, &st) != 0) {
    dl_fail(err, "%s: cannot stat: %s", path, strerror(errno));
  } else if ((uint64_t)st.st_size != bytes) {
    dl_fail(err, "%s: %lld bytes on disk, %llu written", path, (long long)st.st_size,
            (unsigned long long)bytes);
  } else {
    buf = dl_malloc(bytes ? (size_t)bytes : 1);
    ssize_t got = pread_all(fd, buf, (size_t)bytes);
    if (got != (ssize_t)bytes) {
      dl_fail(err, "%s: read failed: %s", path, got < 0 ? strerror(errno) : "file shrank");
      free(buf);
      buf = NULL;
    }
  }
  close(fd);
  return buf;
}

// ---- the store

dl_spill_store *dl_spill_open(const char *dir, uint64_t budget_bytes, dl_err *err) {
  if (!dir || !*dir) {
    dl_fail(err, "the spill store needs a directory");
    return NULL;
  }
  if (strlen(dir) + SPILL_NAME_MAX >= SPILL_PATH_MAX) {
    dl_fail(err, "%.64s...: spill directory path too long", dir);
    return NULL;
  }
  if (budget_bytes == 0) {
    dl_fail(err, "%s: a spill store needs a budget above 0 bytes", dir);
    return NULL;
  }
  bool created;
  if (make_spill_dir(dir, &created, err) || remove_old_spill_files(dir, err)) return NULL;
  dl_spill_store *s = dl_calloc(1, sizeof *s);
  s->dir = strdup(dir);
  s->created_dir = created;
  s->budget = budget_bytes;
  return s;
}

// 0 when rec fits under the budget; 1 when drops would make room; -1 when
// nothing ever would.
static int check_room(dl_spill_store *s, uint64_t block, uint64_t bytes, dl_err *err) {
  if (bytes > s->budget)
    return dl_fail(err, "%s: block %llu needs %llu bytes, more than the whole spill budget of %llu",
                   s->dir, (unsigned long long)block, (unsigned long long)bytes,
                   (unsigned long long)s->budget);
  if (s->bytes + bytes <= s->budget) return 0;
  dl_fail(err, "%s: spill store full: %llu of %llu bytes held, block %llu needs %llu", s->dir,
          (unsigned long long)s->bytes, (unsigned long long)s->budget, (unsigned long long)block,
          (unsigned long long)bytes);
  return 1;
}

int dl_spill_put(dl_spill_store *s, const dl_encoded_block *b, dl_err *err) {
  if (find(s, b->block, b->resolution)) return 0;
  dl_store_record rec;
  dl_store_record_prepare(b, &rec);
  uint64_t bytes = dl_store_record_bytes(&rec);
  int rc = check_room(s, b->block, bytes, err);
  if (rc == 0) {
    char path[SPILL_PATH_MAX];
    spill_path(s, b->block, b->resolution, path, sizeof path);
    rc = write_record_file(path, &rec, err);
  }
  dl_store_record_release(&rec);
  if (rc == 1) s->counters.full++;
  if (rc != 0) return rc;
  insert_entry(s, (spill_entry){b->block, b->resolution, bytes});
  s->counters.puts++;
  return 0;
}

int dl_spill_get(dl_spill_store *s, uint64_t block, uint32_t resolution, dl_encoded_block **out,
                 dl_err *err) {
  *out = NULL;
  const spill_entry *e = find(s, block, resolution);
  if (!e) return 0;
  char path[SPILL_PATH_MAX];
  spill_path(s, block, resolution, path, sizeof path);
  uint8_t *buf = read_record_file(path, e->bytes, err);
  if (!buf) return -1;
  int rc = dl_store_record_load(buf, e->bytes, 0, e->bytes, block, resolution, out, err);
  free(buf);
  if (rc) return dl_fail_prefix(err, path);
  s->counters.gets++;
  return 1;
}

void dl_spill_drop(dl_spill_store *s, uint64_t block, uint32_t resolution) {
  spill_entry *e = find(s, block, resolution);
  if (!e) return;
  char path[SPILL_PATH_MAX];
  spill_path(s, block, resolution, path, sizeof path);
  unlink(path);  // a file already gone frees nothing more; its bytes are freed below
  remove_entry(s, e);
  s->counters.drops++;
}

bool dl_spill_has(const dl_spill_store *s, uint64_t block, uint32_t resolution) {
  return find(s, block, resolution) != NULL;
}

uint64_t dl_spill_bytes(const dl_spill_store *s) { return s->bytes; }

uint64_t dl_spill_budget(const dl_spill_store *s) { return s->budget; }

dl_spill_counters dl_spill_stats(const dl_spill_store *s) {
  dl_spill_counters c = s->counters;
  c.blocks = s->n;
  return c;
}

void dl_spill_close(dl_spill_store *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) {
    char path[SPILL_PATH_MAX];
    spill_path(s, s->entries[i].block, s->entries[i].resolution, path, sizeof path);
    unlink(path);
  }
  if (s->created_dir) rmdir(s->dir);  // only when empty: other files stay
  free(s->entries);
  free(s->dir);
  free(s);
}
