#include "image_codecs.hpp"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/image.hpp"

namespace nanomlp::codecs {
namespace {

[[noreturn]] void fail(const std::string& source, const std::string& reason) {
  throw DataError(source + ": " + reason);
}

std::string size_str(std::size_t w, std::size_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

// Whether a w x h image is non-empty and within max_pixels (no overflow: h is divided).
bool fits(std::size_t w, std::size_t h, std::size_t max_pixels) {
  return w > 0 && h > 0 && w <= max_pixels && h <= max_pixels / w;
}

// ---- libjpeg's error manager: its errors and corrupt-data warnings jump back to the decoder.

struct JpegErrors {
  jpeg_error_mgr mgr;  // first, so that cinfo->err points at the whole struct
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_on_error(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrors*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}

// Level -1 is a warning about corrupt data ("premature end of data segment"): libjpeg would go
// on and fill the rest of the image with grey; refuse the file instead. Levels >= 0 are traces.
void jpeg_on_message(j_common_ptr cinfo, int level) {
  if (level < 0) jpeg_on_error(cinfo);
}

// The decoding proper, between setjmp and the library's longjmp: only trivially destructible
// locals here (a longjmp skips destructors), the samples go to the caller's out. Returns an
// empty string, or the library's message.
std::string jpeg_decode_into(const std::uint8_t* data, std::size_t size, std::size_t max_pixels,
                             RawImage& out, bool& too_large) {
  jpeg_decompress_struct cinfo{};
  JpegErrors errors{};
  cinfo.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = jpeg_on_error;
  errors.mgr.emit_message = jpeg_on_message;
  if (setjmp(errors.jump) != 0) {
    jpeg_destroy_decompress(&cinfo);
    return errors.message;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(&cinfo, TRUE);
  const std::size_t w = cinfo.image_width, h = cinfo.image_height;
  if (!fits(w, h, max_pixels)) {
    too_large = true;
    out.width = w;
    out.height = h;
    jpeg_destroy_decompress(&cinfo);
    return "";
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  out.width = cinfo.output_width;
  out.height = cinfo.output_height;
  out.channels = cinfo.output_components;
  out.samples.resize(out.width * out.height * static_cast<std::size_t>(out.channels));
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = out.samples.data() + std::size_t{cinfo.output_scanline} * out.width *
                                            static_cast<std::size_t>(out.channels);
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return "";
}

}  // namespace

void check_dimensions(const std::string& source, std::size_t w, std::size_t h,
                      std::size_t max_pixels) {
  if (w == 0 || h == 0) fail(source, "image has zero size (" + size_str(w, h) + ")");
  if (!fits(w, h, max_pixels)) {
    throw ImageTooLargeError(source + ": image too large (" + size_str(w, h) + ", at most " +
                             std::to_string(max_pixels) + " pixels)");
  }
}

RawImage decode_png(std::span<const std::uint8_t> bytes, const std::string& source,
                    std::size_t max_pixels) {
  // The size from the IHDR chunk, before libpng reads on (a header alone that claims
  // 20000x20000 pixels is "too large", not "truncated"). The standard puts IHDR first and
  // libpng refuses a file where it is not, so this is the only check needed.
  if (bytes.size() >= 24 && std::equal(bytes.begin() + 12, bytes.begin() + 16, "IHDR")) {
    const auto be32 = [&](std::size_t at) {
      return std::size_t{bytes[at]} << 24 | std::size_t{bytes[at + 1]} << 16 |
             std::size_t{bytes[at + 2]} << 8 | std::size_t{bytes[at + 3]};
    };
    check_dimensions(source, be32(16), be32(20), max_pixels);
  }
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()) == 0) {
    const std::string why = image.message;
    png_image_free(&image);
    fail(source, "cannot decode PNG (" + why + ")");
  }
  image.format = PNG_FORMAT_RGBA;  // 16-bit, palette and grey all become 8-bit RGBA
  RawImage out;
  out.width = image.width;
  out.height = image.height;
  out.channels = 4;
  out.samples.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, out.samples.data(), 0, nullptr) == 0) {
    const std::string why = image.message;
    png_image_free(&image);
    fail(source, "cannot decode PNG, truncated or corrupt (" + why + ")");
  }
  return out;
}

RawImage decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& source,
                     std::size_t max_pixels) {
  RawImage out;
  bool too_large = false;
  const std::string why = jpeg_decode_into(bytes.data(), bytes.size(), max_pixels, out, too_large);
  if (!why.empty()) fail(source, "cannot decode JPEG, truncated or corrupt (" + why + ")");
  if (too_large) check_dimensions(source, out.width, out.height, max_pixels);  // throws
  return out;
}

}  // namespace nanomlp::codecs
