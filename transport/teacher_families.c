#include "transport/teacher_families.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

void dl_families_init(dl_families *fs, double grace_s) {
  memset(fs, 0, sizeof *fs);
  fs->grace_s = grace_s;
}

void dl_families_free(dl_families *fs) {
  for (int i = 0; i < fs->n; i++) {
    free(fs->v[i].cursor);
    free(fs->v[i].received);
    free(fs->v[i].known);
    free(fs->v[i].waiting);
    free(fs->v[i].paced_rank);
  }
  free(fs->v);
  memset(fs, 0, sizeof *fs);
}

dl_family *dl_families_find(dl_families *fs, const char *name) {
  for (int i = 0; i < fs->n; i++)
    if (strcmp(fs->v[i].name, name) == 0) return &fs->v[i];
  return NULL;
}

static void set_world(dl_family *f, uint32_t world) {
  free(f->cursor);
  free(f->received);
  free(f->known);
  free(f->waiting);
  free(f->paced_rank);
  f->world = world;
  f->waiting = dl_calloc(world, sizeof *f->waiting);
  f->paced_rank = dl_calloc(world, sizeof *f->paced_rank);
  f->cursor = dl_calloc(world, sizeof *f->cursor);
  f->received = dl_calloc(world, sizeof *f->received);
  f->known = dl_calloc(world, sizeof *f->known);
  f->have_position = false;
}

static dl_family *add_family(dl_families *fs, const char *name) {
  fs->v = dl_grow(fs->v, fs->n, &fs->cap, 8, sizeof *fs->v);
  dl_family *f = &fs->v[fs->n++];
  memset(f, 0, sizeof *f);
  snprintf(f->name, sizeof f->name, "%s", name);
  return f;
}

dl_family *dl_families_hello(dl_families *fs, const char *name, uint32_t world, const dl_plan_phase *plan,
                             int nplan, uint32_t rank, uint64_t cursor, bool new_peer) {
  dl_family *f = dl_families_find(fs, name);
  if (!f) f = add_family(fs, name);
  if (f->world != world) set_world(f, world);
  f->nplan = nplan < DL_PLAN_MAX_PHASES ? nplan : DL_PLAN_MAX_PHASES;
  memcpy(f->plan, plan, (size_t)f->nplan * sizeof *plan);
  if (new_peer) f->live_peers++;
  f->state = DL_FAMILY_ATTACHED;
  // A HELLO's cursor may go back: the family resumed from a checkpoint.
  f->cursor[rank] = cursor;
  if (f->received[rank] < cursor) f->received[rank] = cursor;
  f->known[rank] = true;
  return f;
}

void dl_families_cursor(dl_family *f, uint32_t rank, uint64_t cursor, uint64_t received, bool waiting) {
  if (rank >= f->world) return;
  f->cursor[rank] = cursor;
  f->waiting[rank] = waiting;
  // What reached a rank stays reached (a resume does not undo a computation).
  if (received < cursor) received = cursor;
  if (received > f->received[rank]) f->received[rank] = received;
  f->known[rank] = true;
}

void dl_families_peer_gone(dl_family *f, bool bye, double now) {
  if (f->live_peers > 0) f->live_peers--;
  if (f->live_peers > 0) return;
  f->gone_at = now;
  f->gone_by_bye = bye;
}

uint64_t dl_family_position(const dl_family *f) {
  uint64_t pos = UINT64_MAX;
  for (uint32_t r = 0; r < f->world; r++)
    if (f->known[r] && f->cursor[r] < pos) pos = f->cursor[r];
  return pos == UINT64_MAX ? 0 : pos;
}

static uint64_t plan_end(const dl_family *f) { return f->nplan ? f->plan[f->nplan - 1].end_block : 0; }

static bool all_past_end(const dl_family *f) {
  if (f->nplan == 0) return false;
  for (uint32_t r = 0; r < f->world; r++)
    if (!f->known[r] || f->cursor[r] < plan_end(f)) return false;
  return true;
}

static dl_family_state state_now(const dl_families *fs, const dl_family *f, double now) {
  if (all_past_end(f)) return DL_FAMILY_FINISHED;
  if (f->live_peers > 0) return DL_FAMILY_ATTACHED;
  if (now - f->gone_at > fs->grace_s) return DL_FAMILY_DETACHED;
  return f->gone_by_bye ? DL_FAMILY_LEFT : DL_FAMILY_ATTACHED;
}

void dl_families_tick(dl_families *fs, double now) {
  const double dt = fs->last_tick > 0 ? now - fs->last_tick : 0;
  fs->last_tick = now;
  for (int i = 0; i < fs->n; i++) {
    dl_family *f = &fs->v[i];
    f->state = state_now(fs, f, now);
    const uint64_t pos = dl_family_position(f);
    const bool measuring = f->state == DL_FAMILY_ATTACHED && f->live_peers > 0;
    // Its own speed: every block its position moved, over the time it was
    // not waiting for a held block (a paced family moves only in between).
    if (measuring && f->paced_now) f->paced_seconds += dt;
    else if (measuring) f->unpaced_seconds += dt;
    if (measuring && f->have_position && pos > f->last_position) f->advanced += pos - f->last_position;
    f->last_position = pos;
    f->have_position = true;
  }
}

bool dl_family_plans(const dl_family *f, uint64_t block, uint32_t resolution) {
  for (int i = 0; i < f->nplan; i++)
    if (block >= f->plan[i].first_block && block < f->plan[i].end_block) return f->plan[i].resolution == resolution;
  return false;
}

bool dl_family_taken(const dl_family *f, uint64_t block) {
  const uint32_t r = (uint32_t)(block % f->world);
  return f->known[r] && f->cursor[r] > block;
}

bool dl_family_holds_others(const dl_family *f) { return f->state == DL_FAMILY_ATTACHED; }
bool dl_family_keeps_blocks(const dl_family *f) { return f->state == DL_FAMILY_ATTACHED || f->state == DL_FAMILY_LEFT; }

double dl_family_rate(const dl_family *f) {
  return f->unpaced_seconds > 0.5 ? (double)f->advanced / f->unpaced_seconds : 0.0;
}

const char *dl_family_state_name(dl_family_state s) {
  static const char *names[] = {"attached", "left", "detached", "finished"};
  return names[s];
}

// Some family in the given states plans (block, resolution) and has not taken it.
static bool needed_by(const dl_families *fs, uint64_t block, uint32_t resolution, bool (*in)(const dl_family *)) {
  for (int i = 0; i < fs->n; i++) {
    const dl_family *f = &fs->v[i];
    if (in(f) && dl_family_plans(f, block, resolution) && !dl_family_taken(f, block)) return true;
  }
  return false;
}

bool dl_families_need(const dl_families *fs, uint64_t block, uint32_t resolution) {
  return needed_by(fs, block, resolution, dl_family_keeps_blocks);
}

bool dl_families_need_attached(const dl_families *fs, uint64_t block, uint32_t resolution) {
  return needed_by(fs, block, resolution, dl_family_holds_others);
}

bool dl_families_received_by_any(const dl_families *fs, uint64_t block, uint32_t resolution) {
  for (int i = 0; i < fs->n; i++) {
    const dl_family *f = &fs->v[i];
    const uint32_t r = (uint32_t)(block % f->world);
    if (dl_family_plans(f, block, resolution) && f->known[r] && f->received[r] > block) return true;
  }
  return false;
}

const dl_family *dl_families_holder(const dl_families *fs, const dl_family *f, uint64_t block, uint32_t resolution,
                                    uint64_t max_lead) {
  const uint64_t mine = dl_family_position(f);
  for (int i = 0; i < fs->n; i++) {
    const dl_family *g = &fs->v[i];
    if (g == f || !dl_family_holds_others(g) || !dl_family_plans(g, block, resolution) || dl_family_taken(g, block))
      continue;
    // Only a family behind f holds it back, so the slowest family is never
    // held and everybody always makes progress.
    const uint64_t pos = dl_family_position(g);
    if (pos < mine && block > pos + max_lead) return g;
  }
  return NULL;
}

uint64_t dl_families_lead(const dl_families *fs, const dl_family *f) {
  const uint64_t mine = dl_family_position(f);
  uint64_t slowest = mine;
  for (int i = 0; i < fs->n; i++) {
    const dl_family *g = &fs->v[i];
    if (dl_family_holds_others(g) && g->nplan && dl_family_position(g) < slowest) slowest = dl_family_position(g);
  }
  return mine - slowest;
}
