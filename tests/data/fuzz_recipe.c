// libFuzzer target: any bytes as a recipe; parse errors are fine, crashes
// and leaks are not.
#include "recipe/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dl_recipe r;
  dl_err err;
  dl_recipe_parse("fuzz.yaml", data, size, &r, &err);
  return 0;
}
