// PNG decoding with libpng, from memory. Every PNG colour type is expanded to
// 8-bit RGB: palette and low bit depths expanded, 16-bit reduced to its high
// byte, gray replicated, alpha dropped.
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "data/image_codecs.h"

typedef struct png_mem_reader {
  const uint8_t *data;
  size_t size, pos;
  char message[256];
} png_mem_reader;

static void on_png_read(png_structp png, png_bytep dst, png_size_t len) {
  png_mem_reader *r = png_get_io_ptr(png);
  if (len > r->size - r->pos) png_error(png, "unexpected end of file (truncated PNG)");
  memcpy(dst, r->data + r->pos, len);
  r->pos += len;
}

static void on_png_error(png_structp png, png_const_charp msg) {
  png_mem_reader *r = png_get_error_ptr(png);
  snprintf(r->message, sizeof r->message, "%s", msg);
  png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;   // benign (e.g. an unknown ancillary chunk); errors still fail
}

int dl_decode_png(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err) {
  png_mem_reader reader = {.data = bytes, .size = n};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &reader, on_png_error, on_png_warning);
  if (!png) return dl_fail(err, "PNG: cannot create decoder");
  png_infop info = png_create_info_struct(png);
  uint8_t *volatile pixels = NULL;
  png_bytep *volatile rows = NULL;
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, NULL);
    free(pixels);
    free(rows);
    return dl_fail(err, "corrupt PNG: %s", reader.message);
  }
  png_set_read_fn(png, &reader, on_png_read);
  // libpng's own limits match ours, so it refuses a bomb before inflating.
  png_set_user_limits(png, 1u << 20, 1u << 20);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if (dl_image_check_dims((long)w, (long)h, err) != 0) {
    png_destroy_read_struct(&png, &info, NULL);
    return dl_fail_prefix(err, "PNG");
  }
  int color = png_get_color_type(png, info);
  png_set_expand(png);   // palette -> RGB, gray < 8 bit -> 8 bit, tRNS -> alpha
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_rowbytes(png, info) != (size_t)w * 3) {
    png_error(png, "unsupported pixel layout");
  }
  pixels = dl_malloc((size_t)w * h * 3);
  rows = dl_malloc(sizeof(png_bytep) * h);
  for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  free(rows);
  out->width = (int)w;
  out->height = (int)h;
  out->rgb = pixels;
  return 0;
}
