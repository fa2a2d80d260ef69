// Writing RGB8 images as PNG (previews), atomically.
#ifndef DISTILL_DATA_PNG_WRITE_H
#define DISTILL_DATA_PNG_WRITE_H

#include "data/image.h"

int dl_png_write(const char *path, const dl_image *img, dl_err *err);

#endif
