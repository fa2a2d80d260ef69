// Format sniffing and the public decode entry points; the codecs live in
// image_jpeg.c and image_png.c.
#include "data/image.h"

#include <stdlib.h>
#include <string.h>

#include "common/file_io.h"
#include "data/image_codecs.h"

void dl_image_alloc(dl_image *img, int width, int height) {
  img->width = width;
  img->height = height;
  img->rgb = dl_malloc((size_t)width * (size_t)height * 3);
}

void dl_image_free(dl_image *img) {
  free(img->rgb);
  img->rgb = NULL;
  img->width = img->height = 0;
}

int dl_image_check_dims(long width, long height, dl_err *err) {
  if (width <= 0 || height <= 0) return dl_fail(err, "image has no pixels (%ldx%ld)", width, height);
  if ((size_t)width > DL_IMAGE_MAX_PIXELS || (size_t)height > DL_IMAGE_MAX_PIXELS ||
      (size_t)width * (size_t)height > DL_IMAGE_MAX_PIXELS)
    return dl_fail(err, "image of %ldx%ld pixels exceeds the limit of %zu pixels", width, height,
                   DL_IMAGE_MAX_PIXELS);
  return 0;
}

int dl_image_decode(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err) {
  out->width = out->height = 0;
  out->rgb = NULL;
  if (n == 0) return dl_fail(err, "empty image file");
  if (n > DL_IMAGE_MAX_ENCODED_BYTES)
    return dl_fail(err, "encoded image of %zu bytes exceeds the limit of %zu", n,
                   DL_IMAGE_MAX_ENCODED_BYTES);
  static const uint8_t kPngMagic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (n >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff)
    return dl_decode_jpeg(bytes, n, out, err);
  if (n >= 8 && memcmp(bytes, kPngMagic, 8) == 0) return dl_decode_png(bytes, n, out, err);
  return dl_fail(err, "unknown image format (neither JPEG nor PNG)");
}

int dl_image_read_file(const char *path, dl_image *out, dl_err *err) {
  out->width = out->height = 0;
  out->rgb = NULL;
  dl_mapped_file f;
  if (dl_map_file(path, &f, err) != 0) return -1;
  int rc = dl_image_decode(f.data, f.size, out, err);
  dl_unmap_file(&f);
  if (rc != 0) return dl_fail_prefix(err, path);
  return 0;
}
