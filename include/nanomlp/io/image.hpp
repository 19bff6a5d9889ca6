// Images in: decoding image files (PNG through libpng, JPEG through libjpeg-turbo, BMP and GIF
// through Debian's stb_image; PGM/PPM in both the ASCII and the binary form through nanomlp's own
// reader) into a GreyImage, which preprocess.hpp (MNIST's own preprocessing, batched prediction)
// turns into predictions. Used by `nanomlp predict` and `nanomlp serve`.
//
// No global state: the decoding functions are pure and may run on several threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/preprocess.hpp"

namespace nanomlp {

// Images larger than this are refused before decoding (64 Mpixel: any camera photo fits).
inline constexpr std::size_t kMaxImagePixels = std::size_t{1} << 26;

// An image whose declared size is over the caller's limit (serve answers it with 413).
class ImageTooLargeError : public DataError {
 public:
  using DataError::DataError;
};

// Decodes an image held in memory: PNG, JPEG, BMP, GIF (first frame), PGM (P2 ASCII or P5
// binary) or PPM (P3, P6), 8 or 16 bits per sample. Colour becomes luminance
// 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as MNIST-era tools did); a transparent pixel is
// composited onto white paper. `source` names the data in error messages (a file name).
// Throws DataError "SOURCE: reason" for empty, unknown, truncated, corrupt or oversized data.
// The declared size is checked against max_pixels before anything is decoded (a caller that
// takes untrusted uploads, serve, passes its own lower cap): over it, ImageTooLargeError.
// PNG is decoded by libpng, JPEG by libjpeg-turbo (any corrupt-data warning is an error), BMP
// and GIF by stb_image (an uncompressed BMP must hold its whole raster), PGM/PPM by nanomlp.
GreyImage decode_grey_image(std::span<const std::uint8_t> bytes, const std::string& source,
                            std::size_t max_pixels = kMaxImagePixels);

// Reads and decodes an image file (see decode_grey_image). Throws DataError "PATH: reason"
// for a missing or unreadable file, an empty file, or anything decode_grey_image refuses.
GreyImage load_grey_image(const std::string& path);

// Writes a binary PGM (P5, maxval 255); the preprocessed image of --save-preprocessed.
// Throws IoError naming the path if it cannot be written.
void write_pgm(const std::string& path, const GreyImage& image);

}  // namespace nanomlp
