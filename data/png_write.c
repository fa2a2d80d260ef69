#include "data/png_write.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "common/file_io.h"

int dl_png_write(const char *path, const dl_image *img, dl_err *err) {
  png_image pi;
  memset(&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = (png_uint_32)img->width;
  pi.height = (png_uint_32)img->height;
  pi.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&pi, NULL, &size, 0, img->rgb, 0, NULL))
    return dl_fail(err, "%s: cannot encode PNG: %s", path, pi.message);
  void *buf = dl_malloc(size);
  if (!png_image_write_to_memory(&pi, buf, &size, 0, img->rgb, 0, NULL)) {
    free(buf);
    return dl_fail(err, "%s: cannot encode PNG: %s", path, pi.message);
  }
  dl_chunk chunk = {buf, size};
  int rc = dl_write_file_atomic(path, &chunk, 1, err);
  free(buf);
  return rc;
}
