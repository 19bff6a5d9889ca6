// PNG and JPEG decoding with the reference libraries (libpng's simplified API, libjpeg-turbo),
// both fuzzed continuously by OSS-Fuzz and meant for untrusted input, unlike stb_image (whose
// documentation says it is not). Private to src/: image.cpp turns the samples into grey.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace nanomlp::codecs {

// Interleaved 8-bit samples: 1 (grey), 3 (RGB) or 4 (RGBA) per pixel, row-major.
struct RawImage {
  std::size_t width = 0;
  std::size_t height = 0;
  int channels = 0;
  std::vector<std::uint8_t> samples;  // (height, width * channels)
};

// Throws DataError "SOURCE: image has zero size" or ImageTooLargeError "SOURCE: image too large
// (WxH, at most N pixels)" when the declared size is empty or over max_pixels.
void check_dimensions(const std::string& source, std::size_t w, std::size_t h,
                      std::size_t max_pixels);

// Each reads the declared size first and checks it (check_dimensions) before allocating, then
// decodes; a truncated or corrupt file, or any warning of the library about corrupt data, is a
// DataError naming source.
RawImage decode_png(std::span<const std::uint8_t> bytes, const std::string& source,
                    std::size_t max_pixels);
RawImage decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& source,
                     std::size_t max_pixels);

}  // namespace nanomlp::codecs
