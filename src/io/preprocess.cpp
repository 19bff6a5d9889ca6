#include "nanomlp/io/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp {
namespace {

std::string size_str(std::size_t w, std::size_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

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

GreyImage to_grey_image(const MnistImage& image) {
  return GreyImage{kImageCols, kImageRows, {image.begin(), image.end()}};
}

}  // namespace nanomlp
