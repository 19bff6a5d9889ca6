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

std::string size_str(std::size_t w, std::size_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
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

// ---- preprocessing ------------------------------------------------------------------------

constexpr double kInkFloor = 0.2;   // fraction of the ink range that counts as background
constexpr std::size_t kBox = 20;    // MNIST's size-normalisation box
constexpr std::size_t kField = 28;  // the output field
constexpr double kCentre = 14.0;    // MNIST's centroid, row/column index coordinates

struct Tap {
  std::size_t index;
  float weight;
};

// 1-D resampling weights mapping src_len samples onto dst_len: area averaging (the box filter,
// each output sample the mean of the source interval it covers) when shrinking, bilinear
// interpolation between sample centres when enlarging. Outside the source is background (0).
std::vector<std::vector<Tap>> resample_weights(std::size_t src_len, std::size_t dst_len) {
  std::vector<std::vector<Tap>> taps(dst_len);
  const double scale = static_cast<double>(dst_len) / static_cast<double>(src_len);
  for (std::size_t j = 0; j < dst_len; ++j) {
    if (scale < 1.0) {
      const double a = static_cast<double>(j) / scale;
      const double b = std::min(static_cast<double>(j + 1) / scale, static_cast<double>(src_len));
      for (auto i = static_cast<std::size_t>(a); static_cast<double>(i) < b && i < src_len; ++i) {
        const double overlap =
            std::min(b, static_cast<double>(i + 1)) - std::max(a, static_cast<double>(i));
        if (overlap > 0) taps[j].push_back({i, static_cast<float>(overlap * scale)});
      }
    } else {
      const double u = (static_cast<double>(j) + 0.5) / scale - 0.5;
      const double f = std::floor(u);
      const double t = u - f;
      const auto i0 = static_cast<long long>(f);
      const auto n = static_cast<long long>(src_len);
      if (i0 >= 0 && i0 < n) taps[j].push_back({static_cast<std::size_t>(i0), float(1 - t)});
      if (i0 + 1 >= 0 && i0 + 1 < n && t > 0) {
        taps[j].push_back({static_cast<std::size_t>(i0 + 1), float(t)});
      }
    }
  }
  return taps;
}

using InkTable = std::array<float, 256>;  // ink strength in [0, 1] of every grey level

// The background grey level, the side of it the ink is on and how far the ink reaches.
struct Polarity {
  int background = 0;
  bool invert = false;  // dark ink on a light border
  int contrast = 0;
};

// The part of the image the digit is cut from, in source pixels.
struct Crop {
  std::size_t x0 = 0;
  std::size_t y0 = 0;
  std::size_t width = 0;
  std::size_t height = 0;
};

// The crop resampled into the kBox box, in ink strengths.
struct Resampled {
  std::size_t width = 0;
  std::size_t height = 0;
  std::vector<float> values;  // (height, width)
};

// The resampled digit quantised to grey levels, with the sums its centroid is measured from.
struct Quantised {
  std::size_t width = 0;
  std::size_t height = 0;
  std::vector<std::uint8_t> pixels;  // (height, width)
  double mass = 0;
  double mx = 0;  // sum of column index times grey level
  double my = 0;  // sum of row index times grey level
};

// The median of the outer ring of pixels.
int border_median(const GreyImage& image) {
  const std::size_t w = image.width;
  const std::size_t h = image.height;
  std::vector<std::uint8_t> ring;
  for (std::size_t x = 0; x < w; ++x) {
    ring.push_back(image.at(x, 0));
    if (h > 1) ring.push_back(image.at(x, h - 1));
  }
  for (std::size_t y = 1; y + 1 < h; ++y) {
    ring.push_back(image.at(0, y));
    if (w > 1) ring.push_back(image.at(w - 1, y));
  }
  std::nth_element(ring.begin(), ring.begin() + ring.size() / 2, ring.end());
  return ring[ring.size() / 2];
}

Polarity find_polarity(const GreyImage& image) {
  const int background = border_median(image);
  const auto [lo, hi] = std::minmax_element(image.pixels.begin(), image.pixels.end());
  // The ink is on the side of the background where the image reaches furthest; dark ink on a
  // light border is inverted to MNIST's white on black.
  const bool invert = background - *lo > *hi - background;
  const int contrast = invert ? background - *lo : *hi - background;
  if (contrast < kMinInkContrast) {
    throw DataError("no ink found: the image is a single shade (contrast " +
                    std::to_string(contrast) + " of 255 grey levels between background and ink, " +
                    "at least " + std::to_string(kMinInkContrast) + " needed)");
  }
  return {background, invert, contrast};
}

// Background subtracted, rescaled by the strongest ink, soft threshold at kInkFloor.
InkTable ink_strengths(const Polarity& polarity) {
  const int background = polarity.background;
  const int contrast = polarity.contrast;
  InkTable ink{};
  for (int v = 0; v < 256; ++v) {
    const double d = polarity.invert ? background - v : v - background;
    const double s = std::clamp(d / contrast, 0.0, 1.0);
    ink[static_cast<std::size_t>(v)] =
        static_cast<float>(std::max(0.0, (s - kInkFloor) / (1 - kInkFloor)));
  }
  return ink;
}

// Bounding box of the ink pixels that have an ink 8-neighbour (no lone specks); of all ink
// pixels if none has one.
Crop ink_bounding_box(const GreyImage& image, const InkTable& ink) {
  const std::size_t w = image.width;
  const std::size_t h = image.height;
  auto is_ink = [&](std::size_t x, std::size_t y) { return ink[image.at(x, y)] > 0.0f; };
  std::size_t x0 = w, x1 = 0, y0 = h, y1 = 0;
  for (int pass = 0; pass < 2 && x0 > x1; ++pass) {
    for (std::size_t y = 0; y < h; ++y) {
      for (std::size_t x = 0; x < w; ++x) {
        if (!is_ink(x, y)) continue;
        bool keep = pass == 1;
        for (std::size_t ny = y > 0 ? y - 1 : 0; !keep && ny <= std::min(y + 1, h - 1); ++ny) {
          for (std::size_t nx = x > 0 ? x - 1 : 0; !keep && nx <= std::min(x + 1, w - 1); ++nx) {
            keep = (nx != x || ny != y) && is_ink(nx, ny);
          }
        }
        if (!keep) continue;
        x0 = std::min(x0, x);
        x1 = std::max(x1, x);
        y0 = std::min(y0, y);
        y1 = std::max(y1, y);
      }
    }
  }
  return {x0, y0, x1 - x0 + 1, y1 - y0 + 1};
}

// Longer side to kBox pixels, aspect ratio kept; separable resampling, rows then columns.
Resampled resample_into_box(const GreyImage& image, const InkTable& ink, const Crop& crop) {
  const std::size_t cw = crop.width;
  const std::size_t ch = crop.height;
  const double fit = static_cast<double>(kBox) / static_cast<double>(std::max(cw, ch));
  const auto tw = std::clamp<std::size_t>(
      static_cast<std::size_t>(std::lround(static_cast<double>(cw) * fit)), 1, kBox);
  const auto th = std::clamp<std::size_t>(
      static_cast<std::size_t>(std::lround(static_cast<double>(ch) * fit)), 1, kBox);
  const auto wx = resample_weights(cw, tw);
  const auto wy = resample_weights(ch, th);
  std::vector<float> rows(ch * tw, 0.0f);  // (ch, tw): every crop row resampled
  for (std::size_t y = 0; y < ch; ++y) {
    const std::uint8_t* src = image.pixels.data() + (crop.y0 + y) * image.width + crop.x0;
    for (std::size_t j = 0; j < tw; ++j) {
      float acc = 0.0f;
      for (const Tap& t : wx[j]) acc += t.weight * ink[src[t.index]];
      rows[y * tw + j] = acc;
    }
  }
  std::vector<float> box(th * tw, 0.0f);  // (th, tw)
  for (std::size_t i = 0; i < th; ++i) {
    for (const Tap& t : wy[i]) {
      for (std::size_t j = 0; j < tw; ++j) box[i * tw + j] += t.weight * rows[t.index * tw + j];
    }
  }
  return {tw, th, std::move(box)};
}

// Brightest pixel to 255, as in MNIST; quantised before the centroid is measured so that the
// whole-pixel shift of centre_in_field puts the centroid of the returned pixels where it is
// meant to be.
Quantised quantise(const Resampled& box) {
  const std::size_t tw = box.width;
  const std::size_t th = box.height;
  const float peak = *std::max_element(box.values.begin(), box.values.end());
  if (!(peak > 0.0f)) throw DataError("no ink found: nothing left after scaling");
  std::vector<std::uint8_t> q(th * tw);  // (th, tw)
  double mass = 0, mx = 0, my = 0;
  for (std::size_t i = 0; i < th; ++i) {
    for (std::size_t j = 0; j < tw; ++j) {
      const long v = std::lround(255.0f * box.values[i * tw + j] / peak);
      q[i * tw + j] = static_cast<std::uint8_t>(std::clamp(v, 0L, 255L));
      mass += q[i * tw + j];
      mx += static_cast<double>(j) * q[i * tw + j];
      my += static_cast<double>(i) * q[i * tw + j];
    }
  }
  return {tw, th, std::move(q), mass, mx, my};
}

// Whole-pixel shift putting the centroid at (14, 14), kept inside the field.
MnistImage centre_in_field(const Quantised& digit) {
  auto offset = [&](double centroid, std::size_t extent) {
    const long o = std::lround(kCentre - centroid);
    return static_cast<std::size_t>(std::clamp(o, 0L, static_cast<long>(kField - extent)));
  };
  const std::size_t tw = digit.width;
  const std::size_t th = digit.height;
  const std::size_t ox = offset(digit.mx / digit.mass, tw);
  const std::size_t oy = offset(digit.my / digit.mass, th);
  MnistImage out{};
  for (std::size_t i = 0; i < th; ++i) {
    for (std::size_t j = 0; j < tw; ++j) out[(oy + i) * kField + ox + j] = digit.pixels[i * tw + j];
  }
  return out;
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

MnistImage preprocess_mnist(const GreyImage& image) {
  const std::size_t w = image.width;
  const std::size_t h = image.height;
  if (w == 0 || h == 0)
    throw DataError("no ink found: the image is empty (" + size_str(w, h) + ")");
  if (image.pixels.size() != w * h) {
    throw DataError("invalid image: " + std::to_string(image.pixels.size()) + " pixels for " +
                    size_str(w, h));
  }
  const InkTable ink = ink_strengths(find_polarity(image));
  const Crop crop = ink_bounding_box(image, ink);
  return centre_in_field(quantise(resample_into_box(image, ink, crop)));
}

std::vector<Prediction> predict(Network<float>& net, const std::vector<MnistImage>& images) {
  const Architecture& arch = net.architecture();
  if (arch.input_dim != kImagePixels) {
    throw UsageError("the model takes " + std::to_string(arch.input_dim) +
                     " inputs per image, expected " + std::to_string(kImagePixels) +
                     " (28x28 pixels)");
  }
  const std::size_t K = arch.num_classes;
  const float scale = arch.input_scale();
  const float shift = arch.input_shift();
  std::vector<Prediction> out;
  out.reserve(images.size());
  constexpr std::size_t kBatch = 256;
  Matrix x;
  Matrix p;
  for (std::size_t start = 0; start < images.size(); start += kBatch) {
    const std::size_t B = std::min(kBatch, images.size() - start);
    x.resize(B, kImagePixels);
    for (std::size_t i = 0; i < B; ++i) {
      kernels::u8_to_float(images[start + i].data(), x.row(i), kImagePixels, scale, shift);
    }
    // Batch-invariant, so that an image gets the same probabilities alone (serve) as in a
    // batch (predict on many files).
    const Matrix& z = net.infer(x);  // (B, K)
    p.resize(B, K);
    kernels::softmax_rows<float>(z.data(), p.data(), B, K);
    for (std::size_t i = 0; i < B; ++i) {
      Prediction pred;
      pred.probabilities.assign(p.row(i), p.row(i) + K);
      pred.cls =
          static_cast<int>(std::max_element(pred.probabilities.begin(), pred.probabilities.end()) -
                           pred.probabilities.begin());
      out.push_back(std::move(pred));
    }
  }
  return out;
}

std::vector<int> top_classes(const Prediction& prediction, std::size_t k) {
  const auto& p = prediction.probabilities;
  std::vector<int> idx(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) {
    return p[static_cast<std::size_t>(a)] > p[static_cast<std::size_t>(b)];
  });
  idx.resize(std::min(k, idx.size()));
  return idx;
}

void write_pgm(const std::string& path, const GreyImage& image) {
  // Atomically (temp file + rename), like every other output: a full disk leaves no half file.
  std::string bytes =
      "P5\n" + std::to_string(image.width) + " " + std::to_string(image.height) + "\n255\n";
  bytes.append(image.pixels.begin(), image.pixels.end());
  write_file_atomic(path, bytes);
}

GreyImage to_grey_image(const MnistImage& image) {
  return GreyImage{kImageCols, kImageRows, {image.begin(), image.end()}};
}

}  // namespace nanomlp
