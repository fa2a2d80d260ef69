#include "student/metrics.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/timing.h"

int dl_student_log_open(dl_student_log *l, const char *out_dir, int rank, long total_steps, long first_step,
                        bool quiet, dl_err *err) {
  memset(l, 0, sizeof *l);
  char path[1200];
  if (rank == 0) snprintf(path, sizeof path, "%s/metrics.jsonl", out_dir);
  else snprintf(path, sizeof path, "%s/metrics-rank%d.jsonl", out_dir, rank);
  l->jsonl = fopen(path, "a");
  if (!l->jsonl) return dl_fail(err, "%s: cannot open for appending", path);
  l->tty = isatty(STDERR_FILENO);
  l->quiet = quiet;
  l->total_steps = total_steps;
  l->log_every = 10;
  l->t_start = dl_now_seconds();
  l->step_start = first_step;
  return 0;
}

static void format_eta(char *out, size_t cap, double s) {
  if (s < 0) s = 0;
  long t = (long)(s + 0.5);
  snprintf(out, cap, t >= 3600 ? "%ldh%02ldm" : "%ldm%02lds", t >= 3600 ? t / 3600 : t / 60,
           t >= 3600 ? (t / 60) % 60 : t % 60);
}

void dl_student_log_step(dl_student_log *l, long step, int resolution, const dl_step_report *r, double seconds,
                         int images, double wait_s, double held_s) {
  const double ips = seconds > 0 ? images / seconds : 0.0;
  fprintf(l->jsonl,
          "{\"step\":%ld,\"resolution\":%d,\"loss\":%.9g,\"dino\":%.9g,\"ibot\":%.9g,\"koleo\":%.9g,"
          "\"feat_cls\":%.9g,\"feat_cos\":%.9g,\"feat_l1\":%.9g,\"lr\":%.9g,\"wd\":%.9g,\"momentum\":%.9g,"
          "\"teacher_temp\":%.9g,\"grad_norm\":[%.6g,%.6g,%.6g],\"seconds\":%.4f,\"images_per_s\":%.2f,"
          "\"target_wait_s\":%.4f,\"target_held_s\":%.4f,\"total_steps\":%ld",
          step, resolution, r->total, r->dino, r->ibot, r->koleo, r->feat_cls, r->feat_cos, r->feat_l1, r->lr, r->wd,
          r->momentum, r->teacher_temp, r->grad_norm[0], r->grad_norm[1], r->grad_norm[2], seconds, ips, wait_s, held_s,
          l->total_steps);
  // Where the CPU trainer's step went (dl_step_phase); other trainers leave 0.
  double phases = 0.0;
  for (int p = 0; p < DL_STEP_PHASES; p++) phases += r->phase_s[p];
  if (phases > 0.0)
    for (int p = 0; p < DL_STEP_PHASES; p++)
      fprintf(l->jsonl, "%s\"%s\":%.4f%s", p ? "," : ",\"phase_s\":{", dl_step_phase_names[p], r->phase_s[p],
              p + 1 == DL_STEP_PHASES ? "}" : "");
  fputs("}\n", l->jsonl);
  fflush(l->jsonl);
  if (l->quiet) return;
  const long done = step + 1 - l->step_start;
  const double elapsed = dl_now_seconds() - l->t_start;
  char eta[32];
  format_eta(eta, sizeof eta, done > 0 ? elapsed / done * (double)(l->total_steps - step - 1) : 0.0);
  char terms[160];
  if (r->feat_cls != 0.0f || r->feat_cos != 0.0f)
    snprintf(terms, sizeof terms, "cls %.4f cos %.4f l1 %.4f", r->feat_cls, r->feat_cos, r->feat_l1);
  else
    snprintf(terms, sizeof terms, "dino %.4f ibot %.4f koleo %.4f", r->dino, r->ibot, r->koleo);
  if (l->tty) {
    fprintf(stderr, "\rstep %ld/%ld  loss %.4f (%s)  lr %.3g  %.1f img/s  ETA %s   ", step + 1, l->total_steps,
            r->total, terms, r->lr, ips, eta);
  } else if ((step + 1) % l->log_every == 0 || step + 1 == l->total_steps) {
    fprintf(stderr, "student step=%ld/%ld loss=%.4f %s lr=%.3g images_per_s=%.1f eta=%s\n", step + 1, l->total_steps,
            r->total, terms, r->lr, ips, eta);
  }
}

void dl_student_log_event(dl_student_log *l, const char *event, long step, const char *detail) {
  fprintf(l->jsonl, "{\"event\":\"%s\",\"step\":%ld}\n", event, step);
  fflush(l->jsonl);
  if (!l->quiet) fprintf(stderr, "%sstudent event=%s step=%ld %s\n", l->tty ? "\n" : "", event, step, detail);
}

void dl_student_log_event_value(dl_student_log *l, const char *event, long step, const char *key, double value,
                                const char *detail) {
  fprintf(l->jsonl, "{\"event\":\"%s\",\"step\":%ld,\"%s\":%.9g}\n", event, step, key, value);
  fflush(l->jsonl);
  if (!l->quiet) fprintf(stderr, "%sstudent event=%s step=%ld %s\n", l->tty ? "\n" : "", event, step, detail);
}

void dl_student_log_eval(dl_student_log *l, long step, const dl_export_eval *e) {
  char detail[256];
  if (e->state == DL_EXPORT_EVAL_DONE) {
    fprintf(l->jsonl, "{\"event\":\"eval\",\"step\":%ld,\"status\":\"done\",\"knn_top1\":%.2f,\"k\":%d,"
            "\"temperature\":%.6g,\"train_images\":%d,\"test_images\":%d,\"size\":%d,\"seconds\":%.2f",
            step, e->knn_top1, e->knn_k, e->knn_temperature, e->train_n, e->test_n, e->size, e->seconds);
    if (e->has_linear) fprintf(l->jsonl, ",\"linear_top1\":%.2f", e->linear_top1);
    fprintf(l->jsonl, "}\n");
    snprintf(detail, sizeof detail, "knn_top1=%.2f (k=%d, %d/%d images, %d px)%s in %.1f s", e->knn_top1, e->knn_k,
             e->train_n, e->test_n, e->size, e->has_linear ? " and the linear probe" : "", e->seconds);
  } else {
    char reason[sizeof e->failure];
    snprintf(reason, sizeof reason, "%s", e->failure);
    dl_export_clean_text(reason, ' ');
    fprintf(l->jsonl, "{\"event\":\"eval\",\"step\":%ld,\"status\":\"failed\",\"reason\":\"%s\"}\n", step, reason);
    snprintf(detail, sizeof detail, "failed: %s", reason);
  }
  fflush(l->jsonl);
  if (!l->quiet) fprintf(stderr, "%sstudent event=eval step=%ld %s\n", l->tty ? "\n" : "", step, detail);
}

void dl_student_log_close(dl_student_log *l) {
  if (l->jsonl) fclose(l->jsonl);
  if (l->tty && !l->quiet) fputc('\n', stderr);
  l->jsonl = NULL;
}
