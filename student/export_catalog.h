// The catalogue of a family's exported EMA backbones (docs/operations.md,
// "Exports, evaluations and retention"): one record per export
// (student/export_record.h), checkpoints/index.json rendered from them
// (written atomically after every change; rebuilt from the folder at start
// when it is missing, corrupt or stale), retention by policy and the
// `student-ema-best.safetensors` / `student-ema-latest.safetensors` links.
//
// Retention keeps an export when any of these holds: it is among the last
// checkpoint.keep; it is among the best checkpoint.keep_best by
// checkpoint.best_metric (evaluated exports only); it is the run's final
// export; its evaluation is still pending. Training checkpoints (ckpt-*,
// the state a run resumes from) are kept for the last checkpoint.keep only
// (student/checkpoint.c).
#ifndef DISTILL_STUDENT_EXPORT_CATALOG_H
#define DISTILL_STUDENT_EXPORT_CATALOG_H

#include "recipe/recipe.h"
#include "student/export_record.h"

typedef struct dl_export_catalog {
  char dir[1100];            // the checkpoint folder
  char family[128];
  const dl_recipe *recipe;
  long total_steps;
  dl_export_record *recs;    // by step, ascending
  int n, cap;
  // The eval period's state: exports since the last one chosen for
  // evaluation (eval.every_exports; at open, counted from the records), and
  // the step of the last one chosen in this run (eval.every_steps; 0: none),
  // which retention may have removed from the records since.
  int since_scheduled;
  long last_scheduled;
  char rebuilt[160];         // what dl_export_catalog_open found ("" when index.json was current)
} dl_export_catalog;

// Reads the records in dir, makes one for each export that has none (or a
// bad one: from the export's metadata and bytes) and removes records whose
// export is gone, then writes index.json, saying in c->rebuilt what it
// replaced. -1 with a message when the folder cannot be read or written.
int dl_export_catalog_open(dl_export_catalog *c, const char *dir, const char *family, const dl_recipe *recipe,
                           long total_steps, dl_err *err);
void dl_export_catalog_close(dl_export_catalog *c);

// The export of `step` was just written: hash it, record it (chosen for
// evaluation by the eval period; the final export always is), retain, write
// the index.
int dl_export_catalog_add(dl_export_catalog *c, long step, dl_err *err);
// The oldest export awaiting evaluation (NULL: none).
dl_export_record *dl_export_catalog_next_pending(dl_export_catalog *c);
int dl_export_catalog_pending_count(const dl_export_catalog *c);
// The evaluation of `step` ended with `result` (DONE or FAILED; a first
// failure leaves it pending for one more attempt): record, retain, index.
int dl_export_catalog_set_eval(dl_export_catalog *c, long step, const dl_export_eval *result, dl_err *err);
// Marks an evaluation as started (attempts + 1, recorded).
int dl_export_catalog_started(dl_export_catalog *c, long step, dl_err *err);
// The export the best link names (NULL: none evaluated).
const dl_export_record *dl_export_catalog_best(const dl_export_catalog *c);
// The metric of a record (negative when it has none).
double dl_export_metric(const dl_export_record *r, int metric);

#endif
