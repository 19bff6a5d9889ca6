#include "nanomlp/io/image.hpp"

#include <stb/stb_image.h>  // declarations only: Debian's libstb.so holds the implementation

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string_view>

#include "image_codecs.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp {
namespace {

// Files larger than this are refused before reading (a 64 Mpixel 16-bit PPM is 384 MiB).
constexpr std::size_t kMaxFileBytes = std::size_t{512} << 20;

[[noreturn]] void fail(const std::string& source, const std::string& reason) {
  throw DataError(source + ": " + reason);
}

// ITU-R BT.601 luminance, rounded.
std::uint8_t luminance(unsigned r, unsigned g, unsigned b) {
  return static_cast<std::uint8_t>((299 * r + 587 * g + 114 * b + 500) / 1000);
}

// v over white paper with coverage alpha (both 0..255).
std::uint8_t over_white(unsigned v, unsigned alpha) {
  return static_cast<std::uint8_t>((v * alpha + 255 * (255 - alpha) + 127) / 255);
}

// Interleaved 8-bit samples with `channels` per pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
// to grey.
GreyImage to_grey(const std::uint8_t* samples, std::size_t w, std::size_t h, int channels) {
  GreyImage img;
  img.width = w;
  img.height = h;
  img.pixels.resize(w * h);
  for (std::size_t i = 0; i < w * h; ++i) {
    const std::uint8_t* s = samples + i * static_cast<std::size_t>(channels);
    switch (channels) {
      case 1:
        img.pixels[i] = s[0];
        break;
      case 2:
        img.pixels[i] = over_white(s[0], s[1]);
        break;
      case 3:
        img.pixels[i] = luminance(s[0], s[1], s[2]);
        break;
      default:
        img.pixels[i] = over_white(luminance(s[0], s[1], s[2]), s[3]);
        break;
    }
  }
  return img;
}

// ---- PGM / PPM (netpbm) -------------------------------------------------------------------
// Our own reader rather than stb_image's, which reads only the binary forms and (v2.27) ignores
// a maxval under 255 and does not notice a truncated raster.

class PnmReader {
 public:
  PnmReader(std::span<const std::uint8_t> bytes, const std::string& source, std::size_t max_pixels)
      : b_(bytes), source_(source), max_pixels_(max_pixels) {}

  GreyImage read() {
    const char kind = static_cast<char>(b_[1]);
    const bool ascii = kind == '2' || kind == '3';
    const int channels = (kind == '2' || kind == '5') ? 1 : 3;
    pos_ = 2;
    const std::size_t w = header_int("width");
    const std::size_t h = header_int("height");
    const std::size_t maxval = header_int("maxval");
    codecs::check_dimensions(source_, w, h, max_pixels_);
    if (maxval == 0 || maxval > 65535) {
      fail(source_, "PNM maxval " + std::to_string(maxval) + " out of range (expected 1..65535)");
    }
    const std::size_t n = w * h * static_cast<std::size_t>(channels);
    std::vector<std::uint8_t> samples;  // (h, w * channels), sized once the file can fill it
    auto scale = [&](std::size_t v) {
      if (v > maxval) {
        fail(source_,
             "PNM sample " + std::to_string(v) + " exceeds maxval " + std::to_string(maxval));
      }
      return static_cast<std::uint8_t>((v * 255 + maxval / 2) / maxval);
    };
    // Every ASCII sample takes a digit and a separator: a 19-byte header that declares
    // 8192x8192 pixels is refused before 200 MB are allocated for them.
    if (ascii && (b_.size() - pos_ + 1) / 2 < n) {
      fail(source_, "truncated PNM: " + std::to_string(n) + " samples need at least " +
                        std::to_string(2 * n - 1) + " bytes, the file has " +
                        std::to_string(b_.size() - pos_) + " after its header");
    }
    if (ascii) {
      samples.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        skip_space_and_comments();
        if (pos_ >= b_.size()) {
          fail(source_, "truncated PNM: expected " + std::to_string(n) + " samples, found " +
                            std::to_string(i));
        }
        samples[i] = scale(read_int("sample"));
      }
    } else {
      // Exactly one whitespace character separates maxval from the raster.
      if (pos_ >= b_.size() || !is_space(b_[pos_])) fail(source_, "malformed PNM header");
      ++pos_;
      const std::size_t bytes_per_sample = maxval > 255 ? 2 : 1;
      const std::size_t need = n * bytes_per_sample;
      const std::size_t have = b_.size() - pos_;
      if (have < need) {
        fail(source_, "truncated PNM: expected " + std::to_string(need) +
                          " bytes of pixel data, found " + std::to_string(have));
      }
      const std::uint8_t* p = b_.data() + pos_;
      samples.resize(n);
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t v =
            bytes_per_sample == 2 ? (std::size_t{p[2 * i]} << 8) | p[2 * i + 1] : std::size_t{p[i]};
        samples[i] = scale(v);
      }
    }
    return to_grey(samples.data(), w, h, channels);
  }

 private:
  static bool is_space(std::uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  }

  void skip_space_and_comments() {
    while (pos_ < b_.size()) {
      if (is_space(b_[pos_])) {
        ++pos_;
      } else if (b_[pos_] == '#') {
        while (pos_ < b_.size() && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
      } else {
        break;
      }
    }
  }

  std::size_t read_int(const char* what) {
    const std::size_t start = pos_;
    std::size_t v = 0;
    while (pos_ < b_.size() && b_[pos_] >= '0' && b_[pos_] <= '9') {
      v = v * 10 + (b_[pos_] - '0');
      if (v > (std::size_t{1} << 32)) fail(source_, std::string("PNM ") + what + " too large");
      ++pos_;
    }
    if (pos_ == start) {
      fail(source_, std::string("malformed PNM: expected the ") + what + " as a decimal number");
    }
    return v;
  }

  std::size_t header_int(const char* what) {
    skip_space_and_comments();
    if (pos_ >= b_.size()) fail(source_, std::string("truncated PNM header: no ") + what);
    return read_int(what);
  }

  std::span<const std::uint8_t> b_;
  const std::string& source_;
  std::size_t max_pixels_;
  std::size_t pos_ = 0;
};

// ---- BMP and GIF through stb_image --------------------------------------------------------
// PNG and JPEG go to libpng and libjpeg-turbo (image_codecs.cpp). stb_image keeps the two
// formats without a well-kept Debian decoder of their own; the header size is checked first.

std::uint32_t le32(std::span<const std::uint8_t> b, std::size_t at) {
  return std::uint32_t{b[at]} | std::uint32_t{b[at + 1]} << 8 | std::uint32_t{b[at + 2]} << 16 |
         std::uint32_t{b[at + 3]} << 24;
}

// A BMP that stb_image reads as uncompressed (Windows header of 40+ bytes, any compression code
// but RLE, which it refuses: BI_RGB, BI_BITFIELDS and codes it does not know) must hold its whole
// raster: stb_image would decode a truncated one as a blank image, and a 284-byte file that
// declares 8000x8000 pixels would cost a second and 279 MB before failing.
void check_bmp_raster(std::span<const std::uint8_t> b, const std::string& source) {
  if (b.size() < 34 || le32(b, 14) < 40) return;  // OS/2 headers: left to stb
  const std::uint32_t compression = le32(b, 30);
  if (compression == 1 || compression == 2) return;  // RLE8, RLE4: refused by stb
  const std::uint64_t offset = le32(b, 10);
  const std::uint64_t w = le32(b, 18);
  const auto h_signed = static_cast<std::int32_t>(le32(b, 22));
  const std::uint64_t h = h_signed < 0 ? -static_cast<std::int64_t>(h_signed) : h_signed;
  const std::uint64_t bpp = std::uint64_t{b[28]} | std::uint64_t{b[29]} << 8;
  const std::uint64_t row = (w * bpp + 31) / 32 * 4;
  const std::uint64_t need = offset + row * h;
  if (w <= (std::uint64_t{1} << 31) && need > b.size()) {
    fail(source, "truncated BMP: its header declares " + std::to_string(w) + "x" +
                     std::to_string(h) + " pixels in " + std::to_string(need) +
                     " bytes, the file has " + std::to_string(b.size()));
  }
}

GreyImage decode_with_stb(std::span<const std::uint8_t> bytes, const std::string& source,
                          std::size_t max_pixels) {
  if (bytes.size() > static_cast<std::size_t>(INT_MAX)) fail(source, "file too large");
  const int len = static_cast<int>(bytes.size());
  int w = 0;
  int h = 0;
  int channels = 0;
  auto reason = [] {
    const char* r = stbi_failure_reason();
    return std::string(r != nullptr && *r != '\0' ? r : "corrupt data");
  };
  // Header first: refuse absurd dimensions before stb allocates for them.
  if (stbi_info_from_memory(bytes.data(), len, &w, &h, &channels) == 0) {
    fail(source, "cannot decode image (" + reason() + ")");
  }
  if (w <= 0 || h <= 0) fail(source, "image has zero size");
  codecs::check_dimensions(source, static_cast<std::size_t>(w), static_cast<std::size_t>(h),
                           max_pixels);
  if (bytes[0] == 'B') check_bmp_raster(bytes, source);
  std::unique_ptr<stbi_uc, void (*)(void*)> data(
      stbi_load_from_memory(bytes.data(), len, &w, &h, &channels, 0), stbi_image_free);
  if (!data) fail(source, "cannot decode image, truncated or corrupt (" + reason() + ")");
  if (channels < 1 || channels > 4) fail(source, "unsupported channel count");
  return to_grey(data.get(), static_cast<std::size_t>(w), static_cast<std::size_t>(h), channels);
}

GreyImage to_grey(const codecs::RawImage& raw) {
  return to_grey(raw.samples.data(), raw.width, raw.height, raw.channels);
}

bool starts_with(std::span<const std::uint8_t> b, std::string_view magic) {
  return b.size() >= magic.size() &&
         std::equal(magic.begin(), magic.end(), b.begin(),
                    [](char m, std::uint8_t c) { return static_cast<std::uint8_t>(m) == c; });
}

}  // namespace

GreyImage decode_grey_image(std::span<const std::uint8_t> bytes, const std::string& source,
                            std::size_t max_pixels) {
  if (bytes.empty()) fail(source, "empty file (0 bytes), not an image");
  if (bytes.size() >= 2 && bytes[0] == 'P' &&
      (bytes[1] == '2' || bytes[1] == '3' || bytes[1] == '5' || bytes[1] == '6')) {
    return PnmReader(bytes, source, max_pixels).read();
  }
  if (bytes.size() >= 2 && bytes[0] == 'P' && (bytes[1] == '1' || bytes[1] == '4')) {
    fail(source, "PBM bitmaps (P1, P4) are not supported; use PGM (P2, P5), PNG or JPEG");
  }
  if (starts_with(bytes, "\x89PNG")) return to_grey(codecs::decode_png(bytes, source, max_pixels));
  if (starts_with(bytes, "\xFF\xD8\xFF")) {
    return to_grey(codecs::decode_jpeg(bytes, source, max_pixels));
  }
  if (starts_with(bytes, "GIF8") || starts_with(bytes, "BM")) {
    return decode_with_stb(bytes, source, max_pixels);
  }
  fail(source, "not an image (expected PNG, JPEG, PGM/PPM, BMP or GIF)");
}

GreyImage load_grey_image(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (fs::is_directory(status)) fail(path, "is a folder, not an image");
  // A device never ends (predict /dev/zero read 512 MiB before refusing); a regular file says
  // its size up front. Pipes are read up to the limit.
  if (fs::is_character_file(status) || fs::is_block_file(status)) {
    fail(path, "is a device, not an image file");
  }
  if (fs::is_regular_file(status)) {
    const std::uintmax_t size = fs::file_size(path, ec);
    if (!ec && size > kMaxFileBytes) {
      fail(path, "file too large (" + std::to_string(size >> 20) + " MiB, at most " +
                     std::to_string(kMaxFileBytes >> 20) + " MiB)");
    }
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) fail(path, std::string("cannot open: ") + std::strerror(errno));
  std::vector<std::uint8_t> bytes;
  std::uint8_t buf[1 << 16];
  while (true) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, file.get());
    bytes.insert(bytes.end(), buf, buf + n);
    if (bytes.size() > kMaxFileBytes) {
      fail(path, "file too large (over " + std::to_string(kMaxFileBytes >> 20) + " MiB)");
    }
    if (n < sizeof buf) break;
  }
  if (std::ferror(file.get())) fail(path, std::string("cannot read: ") + std::strerror(errno));
  return decode_grey_image(bytes, path);
}

void write_pgm(const std::string& path, const GreyImage& image) {
  // Atomically (temp file + rename), like every other output: a full disk leaves no half file.
  std::string bytes =
      "P5\n" + std::to_string(image.width) + " " + std::to_string(image.height) + "\n255\n";
  bytes.append(image.pixels.begin(), image.pixels.end());
  write_file_atomic(path, bytes);
}

}  // namespace nanomlp
