#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>

#include "common/err.h"

typedef struct loader_slot {
  int64_t seq;   // which delivery this slot holds (-1: empty)
  dl_block block;
} loader_slot;

struct dl_loader {
  const dl_sample_stream *stream;
  int64_t first, stride, count;
  int global_size, depth, nthreads;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t changed;
  loader_slot *slots;        // delivery k lives in slot k % depth
  int64_t next_claim;        // next delivery a worker will build
  int64_t next_deliver;      // next delivery the consumer takes
  int64_t skipped;
  int stopping;
};

static void *loader_worker(void *arg) {
  dl_loader *ld = arg;
  pthread_mutex_lock(&ld->mu);
  for (;;) {
    // Build only inside the window, so memory stays bounded by depth blocks.
    while (!ld->stopping && (ld->next_claim >= ld->next_deliver + ld->depth ||
                             (ld->count >= 0 && ld->next_claim >= ld->count)))
      pthread_cond_wait(&ld->changed, &ld->mu);
    if (ld->stopping) break;
    int64_t seq = ld->next_claim++;
    pthread_mutex_unlock(&ld->mu);
    dl_block b;
    dl_sample_stream_block(ld->stream, ld->first + seq * ld->stride, ld->global_size, &b);
    pthread_mutex_lock(&ld->mu);
    loader_slot *s = &ld->slots[seq % ld->depth];
    s->block = b;
    s->seq = seq;
    pthread_cond_broadcast(&ld->changed);
  }
  pthread_mutex_unlock(&ld->mu);
  return NULL;
}

dl_loader *dl_loader_start(const dl_sample_stream *st, int64_t first, int64_t stride, int64_t count,
                           int global_size, int threads, int depth) {
  DL_ASSERT(threads >= 1 && depth >= 1 && stride >= 1 && first >= 0);
  dl_loader *ld = dl_calloc(1, sizeof *ld);
  ld->stream = st;
  ld->first = first, ld->stride = stride, ld->count = count;
  ld->global_size = global_size, ld->depth = depth, ld->nthreads = threads;
  ld->slots = dl_calloc((size_t)depth, sizeof(loader_slot));
  for (int i = 0; i < depth; i++) ld->slots[i].seq = -1;
  pthread_mutex_init(&ld->mu, NULL);
  pthread_cond_init(&ld->changed, NULL);
  ld->threads = dl_malloc(sizeof(pthread_t) * threads);
  for (int i = 0; i < threads; i++)
    if (pthread_create(&ld->threads[i], NULL, loader_worker, ld) != 0) dl_die_input("cannot start loader thread");
  return ld;
}

int dl_loader_next(dl_loader *ld, dl_block *out) {
  pthread_mutex_lock(&ld->mu);
  if (ld->count >= 0 && ld->next_deliver >= ld->count) {
    pthread_mutex_unlock(&ld->mu);
    return 0;
  }
  loader_slot *s = &ld->slots[ld->next_deliver % ld->depth];
  while (s->seq != ld->next_deliver) pthread_cond_wait(&ld->changed, &ld->mu);
  *out = s->block;
  s->seq = -1;
  ld->skipped += out->skipped;
  ld->next_deliver++;
  pthread_cond_broadcast(&ld->changed);
  pthread_mutex_unlock(&ld->mu);
  return 1;
}

int64_t dl_loader_skipped(const dl_loader *ld) { return ld->skipped; }

void dl_loader_stop(dl_loader *ld) {
  pthread_mutex_lock(&ld->mu);
  ld->stopping = 1;
  pthread_cond_broadcast(&ld->changed);
  pthread_mutex_unlock(&ld->mu);
  for (int i = 0; i < ld->nthreads; i++) pthread_join(ld->threads[i], NULL);
  for (int i = 0; i < ld->depth; i++)
    if (ld->slots[i].seq >= 0) dl_block_free(&ld->slots[i].block);
  pthread_mutex_destroy(&ld->mu);
  pthread_cond_destroy(&ld->changed);
  free(ld->threads);
  free(ld->slots);
  free(ld);
}
