// JPEG decoding with libjpeg-turbo. libjpeg reports fatal errors through a
// callback that must not return, hence setjmp/longjmp back into the decoder.
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>   // jpeglib.h needs size_t and FILE declared first
#include <stdlib.h>

#include <jpeglib.h>
#include <jerror.h>

#include "data/image_codecs.h"

typedef struct jpeg_error_ctx {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  int truncated;   // libjpeg only warns on a premature end; we refuse the file
} jpeg_error_ctx;

static void on_jpeg_error(j_common_ptr cinfo) {
  jpeg_error_ctx *ctx = (jpeg_error_ctx *)cinfo->err;
  cinfo->err->format_message(cinfo, ctx->message);
  longjmp(ctx->jump, 1);
}

static void on_jpeg_message(j_common_ptr cinfo, int level) {
  // Level -1 is a warning about corrupt data; a premature end of the stream
  // means a truncated file, which PIL refuses too, so we refuse it.
  if (level == -1 && cinfo->err->msg_code == JWRN_JPEG_EOF)
    ((jpeg_error_ctx *)cinfo->err)->truncated = 1;
}

// CMYK/YCCK JPEGs (Adobe, stored inverted) have no libjpeg RGB conversion.
static void cmyk_row_to_rgb(const uint8_t *cmyk, uint8_t *rgb, int width) {
  for (int x = 0; x < width; x++) {
    int k = cmyk[4 * x + 3];
    for (int c = 0; c < 3; c++) rgb[3 * x + c] = (uint8_t)((cmyk[4 * x + c] * k + 127) / 255);
  }
}

int dl_decode_jpeg(const uint8_t *bytes, size_t n, dl_image *out, dl_err *err) {
  struct jpeg_decompress_struct cinfo;
  jpeg_error_ctx ctx = {0};
  // volatile: modified between setjmp and a possible longjmp.
  uint8_t *volatile pixels = NULL;
  uint8_t *volatile cmyk_row = NULL;
  cinfo.err = jpeg_std_error(&ctx.mgr);
  ctx.mgr.error_exit = on_jpeg_error;
  ctx.mgr.emit_message = on_jpeg_message;
  if (setjmp(ctx.jump)) {
    jpeg_destroy_decompress(&cinfo);
    free(pixels);
    free(cmyk_row);
    return dl_fail(err, "corrupt JPEG: %s", ctx.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes, (unsigned long)n);
  jpeg_read_header(&cinfo, TRUE);
  if (dl_image_check_dims((long)cinfo.image_width, (long)cinfo.image_height, err) != 0) {
    jpeg_destroy_decompress(&cinfo);
    return dl_fail_prefix(err, "JPEG");
  }
  int is_cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  cinfo.out_color_space = is_cmyk ? JCS_CMYK : JCS_RGB;
  // The defaults (islow DCT, fancy upsampling) are what PIL uses, which keeps
  // the decoded pixels identical to the reference pipeline's.
  jpeg_start_decompress(&cinfo);
  int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
  pixels = dl_malloc((size_t)w * (size_t)h * 3);
  if (is_cmyk) cmyk_row = dl_malloc((size_t)w * 4);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t *row = pixels + (size_t)cinfo.output_scanline * (size_t)w * 3;
    JSAMPROW dst = is_cmyk ? cmyk_row : row;
    if (jpeg_read_scanlines(&cinfo, &dst, 1) != 1) break;
    if (is_cmyk) cmyk_row_to_rgb(cmyk_row, row, w);
    if (ctx.truncated) break;
  }
  int truncated = ctx.truncated || cinfo.output_scanline < cinfo.output_height;
  if (!truncated) jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  free(cmyk_row);
  if (truncated) {
    free(pixels);
    return dl_fail(err, "truncated JPEG");
  }
  out->width = w;
  out->height = h;
  out->rgb = pixels;
  return 0;
}
