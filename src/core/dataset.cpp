#include "nanomlp/core/dataset.hpp"

#include <cmath>
#include <cstdint>

namespace nanomlp {

PixelStats pixel_stats(const Dataset& data) {
  // Integer sums are exact (at most 60,000 * 784 * 255^2 < 2^64).
  std::uint64_t sum = 0, sum_sq = 0;
  for (std::uint8_t p : data.images) {
    sum += p;
    sum_sq += static_cast<std::uint64_t>(p) * p;
  }
  PixelStats s;
  const double n = static_cast<double>(data.images.size());
  if (n == 0) return s;
  const double mean = static_cast<double>(sum) / n;
  const double var = static_cast<double>(sum_sq) / n - mean * mean;
  s.mean = mean / 255.0;
  s.std = var > 0 ? std::sqrt(var) / 255.0 : 1.0;
  return s;
}

}  // namespace nanomlp
