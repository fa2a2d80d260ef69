// One exported EMA backbone of a student family, as the catalogue knows it
// (student/export_catalog.h): what it is (step, phase, resolution, images
// seen, architecture, recipe), its bytes (file, sha256, size) and its
// evaluation. Each export has a record file beside it,
// `student-ema-STEP.record` (one `key value` line per field, written
// atomically), so that checkpoints/index.json can always be rebuilt from the
// folder: the index is a rendering of the records.
#ifndef DISTILL_STUDENT_EXPORT_RECORD_H
#define DISTILL_STUDENT_EXPORT_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

typedef enum {
  DL_EXPORT_EVAL_NONE = 0,  // not chosen by the eval period (or no eval section)
  DL_EXPORT_EVAL_PENDING,   // chosen, not evaluated yet (or being evaluated)
  DL_EXPORT_EVAL_DONE,
  DL_EXPORT_EVAL_FAILED,    // the evaluation failed twice (the reason says why)
} dl_export_eval_state;

typedef struct dl_export_eval {
  dl_export_eval_state state;
  int attempts;              // evaluations started (a killed one counts)
  double knn_top1;           // percent
  int knn_k;
  double knn_temperature;
  bool has_linear;
  double linear_top1;        // percent
  int train_n, test_n, size; // the sets' sizes and the crop, as the evaluation reported them
  double seconds;            // wall time of the evaluation process(es)
  char failure[160];
} dl_export_eval;

typedef struct dl_export_record {
  long step;
  char file[96];           // student-ema-STEP.safetensors, in the checkpoint folder
  char sha256[65];
  uint64_t size;
  bool hires;              // phase: the high-resolution phase (else the main one)
  int resolution;          // global crop size the export was trained at
  long images_seen;        // step x train.batch
  char architecture[160];  // "patch=14 dim=384 depth=12 heads=6 ffn=mlp ffn_hidden=1536 registers=0"
  char recipe_xxh64[17];   // of the recipe text the run was started with
  bool final;              // the run's last export (train.steps + hires.steps)
  dl_export_eval eval;
} dl_export_record;

// The record file's path for an export file name in dir.
void dl_export_record_path(char *out, size_t cap, const char *dir, long step);
int dl_export_record_write(const char *dir, const dl_export_record *r, dl_err *err);
// Reads and checks a record (every field present, values in range); -1 with
// a message naming the file and the fault.
int dl_export_record_read(const char *path, dl_export_record *r, dl_err *err);
// The record as one JSON object on one line (no newline), as index.json
// holds it.
void dl_export_record_json(FILE *f, const dl_export_record *r);
// "main" or "hires".
const char *dl_export_phase_name(const dl_export_record *r);
// Text from elsewhere (another process's failure, a family name) made safe
// for JSON and the record's line format: every byte outside printable ASCII,
// and '"' and '\\', replaced by `with`.
void dl_export_clean_text(char *s, char with);

#endif
