// libFuzzer target: any bytes through the image decoders (JPEG, PNG) and,
// when they decode, through one augmented crop; must never crash or leak.
#include <stdlib.h>

#include "data/augment.h"
#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  dl_image img;
  dl_err err;
  if (dl_image_decode(data, size, &img, &err) != 0) return 0;
  if ((size_t)img.width * img.height <= 1 << 20) {
    dl_crop_spec spec = {2, 16, 0.32, 1.0, 1, 8, 0.05, 0.32};
    float out[3 * 16 * 16];
    dl_augment_crop(&img, &spec, size, 1, 16, out, NULL);
  }
  dl_image_free(&img);
  return 0;
}
