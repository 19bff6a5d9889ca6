// A data set in memory: images stay uint8 (60,000 x 784 bytes = 47 MB) and become floats one
// batch at a time inside the training step. Reading them from files is io/data.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace nanomlp {

inline constexpr std::size_t kImageRows = 28;
inline constexpr std::size_t kImageCols = 28;
inline constexpr std::size_t kImagePixels = kImageRows * kImageCols;  // D = 784
inline constexpr std::size_t kNumClasses = 10;                        // K = 10

struct Dataset {
  std::vector<std::uint8_t> images;  // (count, 784) row-major, one image per row
  std::vector<std::uint8_t> labels;  // (count), each < kNumClasses
  std::size_t count = 0;

  const std::uint8_t* image(std::size_t i) const { return images.data() + i * kImagePixels; }
};

struct DataSplit {
  std::string name;  // "mnist" or "fashion-mnist"
  std::string dir;   // folder the files were read from
  Dataset train;
  Dataset test;
};

// Mean and standard deviation of pixel / 255 over a whole dataset (MNIST train: 0.1307,
// 0.3081), for standardising the inputs.
struct PixelStats {
  double mean = 0.0;
  double std = 1.0;
};
PixelStats pixel_stats(const Dataset& data);

}  // namespace nanomlp
