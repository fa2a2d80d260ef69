// The eval section (docs/recipes.md): which held-out data each EMA export is
// evaluated on, how (DINO's k-NN, optionally the linear probe, at one
// resolution) and how often. The checks against the other sections (the
// crop size against the patch, the best metric against the evaluations)
// run once every section was read.
#include <string.h>

#include "eval/knn.h"
#include "recipe/recipe_util.h"

#define KEY(name) (strcmp(key, name) == 0)

void dl_recipe_eval_defaults(dl_recipe *r) {
  r->eval = (dl_recipe_eval){.size = 224, .knn_k = 20, .knn_temperature = DL_KNN_TEMPERATURE, .every_exports = 1,
                             .threads = 1};
}

int dl_recipe_parse_eval(const dl_recipe_ctx *c, const char *key, const yaml_node_t *v, dl_recipe *r) {
  dl_recipe_eval *e = &r->eval;
  e->present = true;
  if (KEY("train")) return dl_recipe_string(c, "eval.train", v, e->train, sizeof e->train);
  if (KEY("test")) return dl_recipe_string(c, "eval.test", v, e->test, sizeof e->test);
  if (KEY("limit_train")) return dl_recipe_int32(c, "eval.limit_train", v, 0, 1 << 30, &e->limit_train);
  if (KEY("limit_test")) return dl_recipe_int32(c, "eval.limit_test", v, 0, 1 << 30, &e->limit_test);
  if (KEY("size")) return dl_recipe_int32(c, "eval.size", v, 1, 4096, &e->size);
  if (KEY("resize")) return dl_recipe_int32(c, "eval.resize", v, 0, 8192, &e->resize);
  if (KEY("knn_k")) return dl_recipe_int32(c, "eval.knn_k", v, 1, 100, &e->knn_k);
  if (KEY("knn_temperature")) return dl_recipe_float(c, "eval.knn_temperature", v, 1e-4, 99, &e->knn_temperature);
  if (KEY("linear")) {
    bool b;
    if (dl_recipe_bool(c, "eval.linear", v, &b)) return -1;
    e->linear = b;
    return 0;
  }
  if (KEY("every_exports")) return dl_recipe_int(c, "eval.every_exports", v, 1, 1L << 40, &e->every_exports);
  if (KEY("every_steps")) return dl_recipe_int(c, "eval.every_steps", v, 1, 1L << 40, &e->every_steps);
  if (KEY("threads")) return dl_recipe_int32(c, "eval.threads", v, 1, 1024, &e->threads);
  return dl_recipe_fail(c, v, "unknown key '%s' in section eval (train, test, limit_train, limit_test, size, resize, "
                              "knn_k, knn_temperature, linear, every_exports, every_steps, threads)", key);
}

int dl_recipe_eval_finish(const dl_recipe_ctx *c, dl_recipe *r) {
  const dl_recipe_eval *e = &r->eval;
  if (!e->present) {
    if (r->checkpoint.best_metric == DL_EVAL_LINEAR_TOP1)
      return dl_fail(c->err, "%s: checkpoint.best_metric linear_top1 needs an eval section with linear: true", c->name);
    return 0;
  }
  if (!e->train[0] || !e->test[0])
    return dl_fail(c->err, "%s: eval needs train (the labelled set k-NN votes from) and test (the held-out set)",
                   c->name);
  if (r->model.patch > 0 && e->size % r->model.patch)
    return dl_fail(c->err, "%s: eval.size %d is not a multiple of model.patch %d", c->name, e->size, r->model.patch);
  if (e->resize && e->resize < e->size)
    return dl_fail(c->err, "%s: eval.resize %d is below eval.size %d", c->name, e->resize, e->size);
  if (e->limit_train > 0 && e->limit_train < e->knn_k)
    return dl_fail(c->err, "%s: eval.limit_train %d is below eval.knn_k %d", c->name, e->limit_train, e->knn_k);
  if (r->checkpoint.best_metric == DL_EVAL_LINEAR_TOP1 && !e->linear)
    return dl_fail(c->err, "%s: checkpoint.best_metric linear_top1 needs eval.linear: true", c->name);
  return 0;
}
