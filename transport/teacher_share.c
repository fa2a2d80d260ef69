// Sharing one computation among families (docs/protocol.md, "Sharing"): a
// computed block stays until every family that needs it has taken it; the
// lead policy decides what happens when that would take more than the
// budget; every computation is counted as unique or again, with the reason.
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/timing.h"
#include "transport/teacher_server_impl.h"

void ts_share_init(dl_teacher_server *s) {
  s->nres = 0;
  s->nparked = 0;
  s->nspilled = 0;
}

void ts_share_free(dl_teacher_server *s) {
  for (int i = 0; i < s->nres; i++) {
    free(s->bits[i].computed);
    free(s->bits[i].evicted);
  }
  s->nres = 0;
  free(s->parked);
  free(s->spilled);
  s->parked = NULL;
  s->spilled = NULL;
}

// ---- per-resolution bitmaps

static res_bits *bits_for(dl_teacher_server *s, uint32_t res) {
  for (int i = 0; i < s->nres; i++)
    if (s->bits[i].resolution == res) return &s->bits[i];
  if (s->nres == TS_MAX_RESOLUTIONS) return NULL;
  res_bits *b = &s->bits[s->nres++];
  memset(b, 0, sizeof *b);
  b->resolution = res;
  return b;
}

// Blocks past this are computed and served but not tracked (counted unique):
// 2^27 blocks (4.3 G samples at 32 per block) cost 16 MiB per bitmap, and a
// request for an absurd block id must not make the teacher allocate more.
#define TS_TRACKED_BLOCKS (1ull << 27)

static bool tracked(uint64_t block) { return block < TS_TRACKED_BLOCKS; }

static void grow_bits(res_bits *b, uint64_t block) {
  const uint64_t need = block / 8 + 1;
  if (need <= b->nbytes) return;
  uint64_t n = b->nbytes ? b->nbytes : 4096;
  while (n < need) n *= 2;
  b->computed = realloc(b->computed, n);
  b->evicted = realloc(b->evicted, n);
  if (!b->computed || !b->evicted) dl_die_input("out of memory");
  memset(b->computed + b->nbytes, 0, n - b->nbytes);
  memset(b->evicted + b->nbytes, 0, n - b->nbytes);
  b->nbytes = n;
}

static bool bit_get(const uint8_t *v, uint64_t nbytes, uint64_t i) { return i / 8 < nbytes && (v[i / 8] >> (i % 8)) & 1; }
static void bit_set(uint8_t *v, uint64_t i, bool on) {
  if (on) v[i / 8] |= (uint8_t)(1u << (i % 8));
  else v[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static void mark_evicted(dl_teacher_server *s, const dl_encoded_block *b) {
  res_bits *rb = tracked(b->block) ? bits_for(s, b->resolution) : NULL;
  if (!rb) return;
  grow_bits(rb, b->block);
  bit_set(rb->evicted, b->block, true);
}

void ts_account_computed(dl_teacher_server *s, dl_encoded_block *b) {
  res_bits *rb = bits_for(s, b->resolution);
  if (rb && b->payload_bytes > rb->block_bytes) rb->block_bytes = b->payload_bytes;
  if (!tracked(b->block)) rb = NULL;
  if (rb) grow_bits(rb, b->block);
  if (rb && bit_get(rb->computed, rb->nbytes, b->block)) {
    s->m.computed_again++;
    if (bit_get(rb->evicted, rb->nbytes, b->block)) s->m.again_evicted++;
    else s->m.again_rewind++;
    bit_set(rb->evicted, b->block, false);
  } else {
    if (rb) bit_set(rb->computed, b->block, true);
    // Never computed here, yet it already reached a family: another teacher
    // (or this one before a restart) computed it.
    if (dl_families_received_by_any(&s->families, b->block, b->resolution)) {
      s->m.computed_again++;
      s->m.again_teacher_changed++;
    } else {
      s->m.computed_unique++;
    }
  }
  dl_block_cache_put(s->cache, b);
  const uint64_t bytes = dl_block_cache_bytes(s->cache);
  if (bytes > s->m.cache_bytes_peak) s->m.cache_bytes_peak = bytes;
}

// ---- pacing

// How far past a slower family's position a request may go, in blocks.
static uint64_t max_lead_blocks(dl_teacher_server *s, uint32_t res) {
  const res_bits *rb = bits_for(s, res);
  if (!rb || rb->block_bytes == 0) return UINT64_MAX;  // no block seen yet: nothing to size by
  uint64_t bytes = s->cfg.max_lead_bytes ? s->cfg.max_lead_bytes : dl_block_cache_budget(s->cache) / 2;
  if (s->cfg.lead_policy == DL_LEAD_SPILL && s->spill) bytes += dl_spill_budget(s->spill);
  const uint64_t blocks = bytes / rb->block_bytes;
  return blocks > 0 ? blocks : 1;
}

static const dl_family *holder_of(dl_teacher_server *s, int family, uint64_t block, uint32_t res) {
  if (family < 0 || s->cfg.lead_policy == DL_LEAD_FREE || dl_block_cache_budget(s->cache) == 0) return NULL;
  return dl_families_holder(&s->families, &s->families.v[family], block, res, max_lead_blocks(s, res));
}

static void send_hold(dl_teacher_server *s, peer *p, const uint64_t *blocks, size_t n, uint32_t res) {
  dl_envelope e;
  dl_envelope_init(&e);
  Distill__Hold h = DISTILL__HOLD__INIT;
  h.blocks = (uint64_t *)blocks;
  h.n_blocks = n;
  h.resolution = res;
  e.body_case = DISTILL__ENVELOPE__BODY_HOLD;
  e.hold = &h;
  ts_send_envelope(s, p, &e);
}

bool ts_is_parked(const dl_teacher_server *s, const peer *p, uint64_t block, uint32_t res) {
  for (int i = 0; i < s->nparked; i++) {
    const parked_req *q = &s->parked[i];
    if (q->block == block && q->resolution == res && q->rid_len == p->rid_len && !memcmp(q->rid, p->rid, p->rid_len))
      return true;
  }
  return false;
}

bool ts_park_if_held(dl_teacher_server *s, peer *p, uint64_t block, uint32_t res) {
  const dl_family *g = holder_of(s, p->family, block, res);
  if (!g) return false;
  s->parked = dl_grow(s->parked, s->nparked, &s->cap_parked, 64, sizeof *s->parked);
  parked_req *q = &s->parked[s->nparked++];
  memcpy(q->rid, p->rid, p->rid_len);
  q->rid_len = p->rid_len;
  q->block = block;
  q->resolution = res;
  q->family = p->family;
  s->m.held++;
  send_hold(s, p, &block, 1, res);
  return true;
}

void ts_forget_parked_of(dl_teacher_server *s, const peer *p) {
  int k = 0;
  for (int i = 0; i < s->nparked; i++)
    if (!(s->parked[i].rid_len == p->rid_len && !memcmp(s->parked[i].rid, p->rid, p->rid_len))) s->parked[k++] = s->parked[i];
  s->nparked = k;
}

// Requests whose holder caught up (or left) go on: served or queued.
static void release_parked(dl_teacher_server *s) {
  int k = 0, ngo = 0;
  parked_req *go = s->nparked ? dl_malloc((size_t)s->nparked * sizeof *go) : NULL;
  for (int i = 0; i < s->nparked; i++) {
    const parked_req *q = &s->parked[i];
    if (holder_of(s, q->family, q->block, q->resolution)) s->parked[k++] = *q;
    else go[ngo++] = *q;
  }
  s->nparked = k;
  for (int i = 0; i < ngo; i++) {
    peer *p = ts_find_peer(s, go[i].rid, go[i].rid_len);
    if (p) ts_serve_or_queue(s, p, go[i].block, go[i].resolution);
  }
  free(go);
}

// A family is paced while one of its ranks' trainers waits for a block that
// pacing held: from the moment it waits for a held block at its cursor until
// it stops waiting (the block's trip after its release included).
static void mark_paced_families(dl_teacher_server *s) {
  for (int i = 0; i < s->families.n; i++) {
    dl_family *f = &s->families.v[i];
    for (uint32_t r = 0; r < f->world; r++) f->paced_rank[r] = f->paced_rank[r] && f->waiting[r];
  }
  for (int i = 0; i < s->nparked; i++) {
    dl_family *f = &s->families.v[s->parked[i].family];
    const uint32_t r = (uint32_t)(s->parked[i].block % f->world);
    if (f->cursor[r] == s->parked[i].block && f->waiting[r]) f->paced_rank[r] = true;
  }
  for (int i = 0; i < s->families.n; i++) {
    dl_family *f = &s->families.v[i];
    f->paced_now = false;
    for (uint32_t r = 0; r < f->world; r++) f->paced_now = f->paced_now || f->paced_rank[r];
  }
}

void ts_share_resend_holds(dl_teacher_server *s) {
  uint64_t blocks[DL_REQUEST_MAX_BLOCKS];
  bool *sent = s->nparked ? dl_calloc((size_t)s->nparked, sizeof *sent) : NULL;
  for (int i = 0; i < s->nparked; i++) {
    if (sent[i]) continue;
    const parked_req *q = &s->parked[i];
    size_t n = 0;
    for (int j = i; j < s->nparked && n < DL_REQUEST_MAX_BLOCKS; j++) {
      const parked_req *r = &s->parked[j];
      if (!sent[j] && r->resolution == q->resolution && r->rid_len == q->rid_len && !memcmp(r->rid, q->rid, q->rid_len)) {
        blocks[n++] = r->block;
        sent[j] = true;
      }
    }
    peer *p = ts_find_peer(s, q->rid, q->rid_len);
    if (p) send_hold(s, p, blocks, n, q->resolution);
  }
  free(sent);
}

// ---- keeping, releasing, the budget

static bool still_needed(const dl_teacher_server *s, const dl_encoded_block *b) {
  return dl_families_need(&s->families, b->block, b->resolution);
}

static void drop_from_cache(dl_teacher_server *s, const dl_encoded_block *b) {
  if (still_needed(s, b)) {
    s->m.evicted++;
    mark_evicted(s, b);
  } else {
    s->m.released++;
  }
  dl_block_cache_remove(s->cache, b->block, b->resolution);
}

static void release_spilled(dl_teacher_server *s) {
  int k = 0;
  for (int i = 0; i < s->nspilled; i++) {
    const spilled_key *q = &s->spilled[i];
    if (dl_families_need(&s->families, q->block, q->resolution)) s->spilled[k++] = *q;
    else dl_spill_drop(s->spill, q->block, q->resolution);
  }
  s->nspilled = k;
}

// Moves the newest block (the furthest ahead) to the spill store; false when
// it has no room (pacing bounds the lead from here on).
static bool spill_newest(dl_teacher_server *s) {
  const dl_encoded_block *b = dl_block_cache_newest(s->cache);
  dl_err err;
  const int rc = b ? dl_spill_put(s->spill, b, &err) : 1;
  if (rc < 0 && !s->spill_failed_logged) {
    ts_log(s, "event=spill_failed block=%" PRIu64 " error=\"%s\" (logged once)", b->block, err.msg);
    s->spill_failed_logged = true;
  }
  if (rc != 0) return false;
  s->spilled = dl_grow(s->spilled, s->nspilled, &s->cap_spilled, 256, sizeof *s->spilled);
  s->spilled[s->nspilled++] = (spilled_key){b->block, b->resolution};
  s->m.spilled++;
  dl_block_cache_remove(s->cache, b->block, b->resolution);
  return true;
}

// Drops entries oldest first while over the budget, those for which
// droppable() holds.
static void drop_while_over(dl_teacher_server *s, bool (*droppable)(const dl_teacher_server *, const dl_encoded_block *)) {
  for (const dl_encoded_block *b = dl_block_cache_oldest(s->cache), *next; b && dl_block_cache_over_budget(s->cache);
       b = next) {
    next = dl_block_cache_newer(s->cache, b);
    if (droppable(s, b)) drop_from_cache(s, b);
  }
}

static bool taken_by_all(const dl_teacher_server *s, const dl_encoded_block *b) { return !still_needed(s, b); }
static bool kept_only_for_leavers(const dl_teacher_server *s, const dl_encoded_block *b) {
  return !dl_families_need_attached(&s->families, b->block, b->resolution);
}

// Released blocks (every family that needs them took them) stay while there
// is room, for a family that joins late or resumes behind; over the budget
// they go first, then what only families that left (BYE) keep, then the
// policy decides.
static void enforce_budget(dl_teacher_server *s) {
  drop_while_over(s, taken_by_all);
  drop_while_over(s, kept_only_for_leavers);
  switch (s->cfg.lead_policy) {
    case DL_LEAD_FREE:
      while (dl_block_cache_over_budget(s->cache)) drop_from_cache(s, dl_block_cache_oldest(s->cache));
      break;
    case DL_LEAD_SPILL:
      while (s->spill && dl_block_cache_over_budget(s->cache) && spill_newest(s)) {
      }
      break;
    case DL_LEAD_PACE: break;  // the lead bound keeps the bytes near the budget; nothing needed is dropped
  }
}

void ts_share_round(dl_teacher_server *s) {
  const double now = dl_now_seconds();
  dl_families_tick(&s->families, now);
  if (s->spill) release_spilled(s);
  release_parked(s);
  mark_paced_families(s);
  enforce_budget(s);
  const uint64_t bytes = dl_block_cache_bytes(s->cache);
  if (bytes > s->m.cache_bytes_peak) s->m.cache_bytes_peak = bytes;
}

dl_encoded_block *ts_spill_lookup(dl_teacher_server *s, uint64_t block, uint32_t res) {
  if (!s->spill || !dl_spill_has(s->spill, block, res)) return NULL;
  dl_encoded_block *b = NULL;
  dl_err err;
  const int rc = dl_spill_get(s->spill, block, res, &b, &err);
  if (rc < 0) ts_log(s, "event=spill_corrupt block=%" PRIu64 " error=\"%s\"", block, err.msg);
  if (rc <= 0) return NULL;
  s->m.spill_hits++;
  return b;
}
