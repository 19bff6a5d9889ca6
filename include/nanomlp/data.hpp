// MNIST-format datasets: the IDX file reader (gzip or raw) and the data-folder lookup.
// Images stay uint8 in memory (60,000 x 784 bytes = 47 MB); they become floats one batch at a
// time inside the training step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
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

// Names accepted by --dataset.
const std::vector<std::string>& dataset_names();

// Class names of a dataset, e.g. "0".."9" for mnist, "T-shirt/top".. for fashion-mnist.
const std::vector<std::string>& class_names(const std::string& dataset);

// Labels for a model's K classes: its dataset's class names when that dataset is known and has
// K classes, else "0".."K-1". Never throws.
std::vector<std::string> class_labels(const std::string& dataset, std::size_t num_classes);

// Reads a whole file, gunzipping it when it starts with the gzip magic bytes (1f 8b).
// max_bytes bounds the decompressed size: a file that would exceed it throws DataError
// instead of allocating. Throws DataError on a missing file, a truncated or corrupt stream.
std::vector<std::uint8_t> read_maybe_gzip(const std::string& path, std::size_t max_bytes);

// Reads an IDX image file (magic 0x00000803, 28x28 images) and its IDX label file
// (magic 0x00000801). Checks magic numbers, dimensions, that each file holds exactly the bytes
// its header declares (no giant allocation for absurd counts), that the counts agree and that
// every label is < 10. Throws DataError naming the file, what was expected and what was found.
Dataset read_idx_pair(const std::string& images_path, const std::string& labels_path);

// The data root: the --data flag if given, else $NANOMLP_DATA, else "./data".
std::string resolve_data_root(const std::optional<std::string>& flag);

// Loads DIR/NAME/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. A missing folder or file
// throws DataError saying where it looked and how to get the data (`nanomlp download`).
DataSplit load_dataset(const std::string& root, const std::string& name);

}  // namespace nanomlp
