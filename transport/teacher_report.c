// What the teacher tells its operator: the metrics line at exit, the sharing
// summary, a status line every status_every_ms (with the sizing advice), and
// the same as Prometheus text and a JSON line for the publish callback.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/timing.h"
#include "transport/teacher_server_impl.h"

dl_teacher_metrics dl_teacher_server_metrics(const dl_teacher_server *s) {
  dl_teacher_metrics m = s->m;
  m.live_peers = (uint64_t)s->npeers;
  m.auth_refused = s->zap ? dl_zap_refused(s->zap) : 0;
  m.cache_bytes = dl_block_cache_bytes(s->cache);
  m.families = (uint64_t)s->families.n;
  return m;
}

int dl_teacher_server_families(const dl_teacher_server *s, dl_family_report *out, int max) {
  for (int i = 0; i < s->families.n && i < max; i++) {
    const dl_family *f = &s->families.v[i];
    dl_family_report *r = &out[i];
    snprintf(r->name, sizeof r->name, "%s", f->name);
    r->state = dl_family_state_name(f->state);
    r->world = f->world;
    r->position = dl_family_position(f);
    r->lead = dl_families_lead(&s->families, f);
    r->served = f->served;
    r->paced_seconds = f->paced_seconds;
    r->rate = dl_family_rate(f);
  }
  return s->families.n;
}

void dl_teacher_metrics_print(const dl_teacher_metrics *m, void *file) {
  fprintf(file,
          "teacher_metrics requests=%" PRIu64 " blocks_requested=%" PRIu64 " blocks_served=%" PRIu64
          " computed=%" PRIu64 " computed_unique=%" PRIu64 " computed_again=%" PRIu64 " again_evicted=%" PRIu64
          " again_rewind=%" PRIu64 " again_teacher_changed=%" PRIu64 " cache_hits=%" PRIu64
          " cache_hit_rate=%.3f coalesced=%" PRIu64 " released=%" PRIu64 " evicted=%" PRIu64 " held=%" PRIu64
          " spilled=%" PRIu64 " spill_hits=%" PRIu64 " cache_bytes_peak=%" PRIu64 " families=%" PRIu64
          " store_hits=%" PRIu64 " store_written=%" PRIu64 " resent=%" PRIu64 " unavailable=%" PRIu64
          " bytes_raw=%" PRIu64 " bytes_wire=%" PRIu64 " bad_messages=%" PRIu64 " rejected=%" PRIu64
          " peers_welcomed=%" PRIu64 " peers_lost=%" PRIu64 " peers_silent=%" PRIu64 " live_peers=%" PRIu64
          " auth_refused=%" PRIu64 "\n",
          m->requests, m->blocks_requested, m->blocks_served, m->computed, m->computed_unique, m->computed_again,
          m->again_evicted, m->again_rewind, m->again_teacher_changed, m->cache_hits,
          m->blocks_requested ? (double)m->cache_hits / (double)m->blocks_requested : 0.0, m->coalesced, m->released,
          m->evicted, m->held, m->spilled, m->spill_hits, m->cache_bytes_peak, m->families, m->store_hits,
          m->store_written, m->resent, m->unavailable, m->bytes_raw, m->bytes_wire, m->bad_messages, m->rejected,
          m->peers_welcomed, m->peers_lost, m->peers_silent, m->live_peers, m->auth_refused);
}

void dl_teacher_sharing_print(const dl_teacher_metrics *m, void *file) {
  fprintf(file,
          "computed %" PRIu64 " unique blocks for %" PRIu64 " families (%" PRIu64 " served); computed again: %" PRIu64
          " (evicted %" PRIu64 ", rewind %" PRIu64 ", teacher changed %" PRIu64 ")\n",
          m->computed_unique, m->families, m->blocks_served, m->computed_again, m->again_evicted, m->again_rewind,
          m->again_teacher_changed);
}

// "vitl14 is 3.6x slower than vits14: give it 3.6x the ranks, or it paces
// vits14", for the slowest family against the fastest (speeds measured
// while attached and not paced), when they differ by a quarter or more.
// Empty when there is nothing to say.
void dl_teacher_server_sizing_advice(const dl_teacher_server *s, char *buf, size_t n) {
  const dl_family *fast = NULL, *slow = NULL;
  buf[0] = '\0';
  for (int i = 0; i < s->families.n; i++) {
    const dl_family *f = &s->families.v[i];
    if (f->state == DL_FAMILY_DETACHED || dl_family_rate(f) <= 0) continue;
    if (!fast || dl_family_rate(f) > dl_family_rate(fast)) fast = f;
    if (!slow || dl_family_rate(f) < dl_family_rate(slow)) slow = f;
  }
  if (!fast || fast == slow) return;
  const double ratio = dl_family_rate(fast) / dl_family_rate(slow);
  if (ratio < 1.25) return;
  snprintf(buf, n, "%s is %.1fx slower than %s: give it %.1fx the ranks, or it paces %s", slow->name, ratio,
           fast->name, ratio, fast->name);
}

static void log_status(dl_teacher_server *s, const dl_teacher_metrics *m) {
  char fams[2048];
  size_t len = 0;
  fams[0] = '\0';
  for (int i = 0; i < s->families.n && len < sizeof fams; i++) {
    const dl_family *f = &s->families.v[i];
    len += (size_t)snprintf(fams + len, sizeof fams - len, " %s:%s,pos=%" PRIu64 ",lead=%" PRIu64 ",paced_s=%.1f,rate=%.2f",
                            f->name, dl_family_state_name(f->state), dl_family_position(f),
                            dl_families_lead(&s->families, f), f->paced_seconds, dl_family_rate(f));
  }
  ts_log(s,
         "event=status computed=%" PRIu64 " unique=%" PRIu64 " again=%" PRIu64 " served=%" PRIu64 " cache_mb=%.1f held=%d"
         " families=%d%s",
         m->computed, m->computed_unique, m->computed_again, m->blocks_served, (double)m->cache_bytes / (1 << 20),
         s->nparked, s->families.n, fams);
  char advice[512];
  dl_teacher_server_sizing_advice(s, advice, sizeof advice);
  if (advice[0]) ts_log(s, "event=sizing advice=\"%s\"", advice);
}

typedef struct text_buf {
  char *p;
  size_t len, cap;
} text_buf;

static void put(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void put(text_buf *t, const char *fmt, ...) {
  if (t->len >= t->cap) return;
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
  va_end(ap);
  if (n > 0) t->len += (size_t)n;
}

static void prometheus_text(const dl_teacher_server *s, const dl_teacher_metrics *m, text_buf *t) {
  const char *id = s->teacher_id;
  const struct { const char *name, *type, *label; uint64_t v; } rows[] = {
      {"distill_teacher_blocks_computed_total", "counter", NULL, m->computed},
      {"distill_teacher_blocks_unique_total", "counter", NULL, m->computed_unique},
      {"distill_teacher_blocks_computed_again_total", "counter", "evicted", m->again_evicted},
      {"distill_teacher_blocks_computed_again_total", "counter", "rewind", m->again_rewind},
      {"distill_teacher_blocks_computed_again_total", "counter", "teacher_changed", m->again_teacher_changed},
      {"distill_teacher_blocks_served_total", "counter", NULL, m->blocks_served},
      {"distill_teacher_requests_held_total", "counter", NULL, m->held},
      {"distill_teacher_blocks_spilled_total", "counter", NULL, m->spilled},
      {"distill_teacher_cache_bytes", "gauge", NULL, m->cache_bytes},
      {"distill_teacher_live_peers", "gauge", NULL, m->live_peers},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    if (i == 0 || strcmp(rows[i].name, rows[i - 1].name) != 0) put(t, "# TYPE %s %s\n", rows[i].name, rows[i].type);
    if (rows[i].label) put(t, "%s{teacher=\"%s\",reason=\"%s\"} %" PRIu64 "\n", rows[i].name, id, rows[i].label, rows[i].v);
    else put(t, "%s{teacher=\"%s\"} %" PRIu64 "\n", rows[i].name, id, rows[i].v);
  }
  const char *fam_rows[][2] = {{"distill_teacher_family_position_blocks", "gauge"},
                               {"distill_teacher_family_lead_blocks", "gauge"},
                               {"distill_teacher_family_paced_seconds_total", "counter"},
                               {"distill_teacher_family_blocks_per_second", "gauge"},
                               {"distill_teacher_family_blocks_served_total", "counter"},
                               {"distill_teacher_family_attached", "gauge"}};
  for (size_t k = 0; k < sizeof fam_rows / sizeof fam_rows[0]; k++) {
    put(t, "# TYPE %s %s\n", fam_rows[k][0], fam_rows[k][1]);
    for (int i = 0; i < s->families.n; i++) {
      const dl_family *f = &s->families.v[i];
      const double v[] = {(double)dl_family_position(f), (double)dl_families_lead(&s->families, f), f->paced_seconds,
                          dl_family_rate(f), (double)f->served, f->state == DL_FAMILY_ATTACHED ? 1.0 : 0.0};
      put(t, "%s{teacher=\"%s\",family=\"%s\"} %.9g\n", fam_rows[k][0], id, f->name, v[k]);
    }
  }
}

static void json_line(const dl_teacher_server *s, const dl_teacher_metrics *m, text_buf *t) {
  put(t,
      "{\"event\":\"teacher_status\",\"seconds\":%.3f,\"computed\":%" PRIu64 ",\"computed_unique\":%" PRIu64
      ",\"computed_again\":%" PRIu64 ",\"again_evicted\":%" PRIu64 ",\"again_rewind\":%" PRIu64
      ",\"again_teacher_changed\":%" PRIu64 ",\"served\":%" PRIu64 ",\"held\":%" PRIu64 ",\"cache_bytes\":%" PRIu64
      ",\"families\":[",
      dl_now_seconds() - s->started_at, m->computed, m->computed_unique, m->computed_again, m->again_evicted,
      m->again_rewind, m->again_teacher_changed, m->blocks_served, m->held, m->cache_bytes);
  for (int i = 0; i < s->families.n; i++) {
    const dl_family *f = &s->families.v[i];
    put(t,
        "%s{\"name\":\"%s\",\"state\":\"%s\",\"world\":%u,\"position\":%" PRIu64 ",\"lead\":%" PRIu64
        ",\"paced_seconds\":%.3f,\"blocks_per_second\":%.3f,\"served\":%" PRIu64 "}",
        i ? "," : "", f->name, dl_family_state_name(f->state), f->world, dl_family_position(f),
        dl_families_lead(&s->families, f), f->paced_seconds, dl_family_rate(f), f->served);
  }
  put(t, "]}");
}

void ts_report_round(dl_teacher_server *s) {
  if (s->cfg.status_every_ms <= 0) return;
  const double now = dl_now_seconds();
  if (now < s->next_status) return;
  const bool first = s->next_status == 0;
  s->next_status = now + s->cfg.status_every_ms / 1000.0;
  if (first) return;  // nothing to say at start
  const dl_teacher_metrics m = dl_teacher_server_metrics(s);
  log_status(s, &m);
  if (!s->cfg.publish) return;
  char prom[16384], json[8192];
  text_buf tp = {prom, 0, sizeof prom}, tj = {json, 0, sizeof json};
  prom[0] = json[0] = '\0';
  prometheus_text(s, &m, &tp);
  json_line(s, &m, &tj);
  s->cfg.publish(s->cfg.publish_user, prom, json);
}
