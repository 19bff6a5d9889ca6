// MNIST-format data sets on disk: the IDX file reader (gzip or raw), the data-folder lookup and
// the class names of the known data sets. The in-memory form is core/dataset.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"

namespace nanomlp {

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
