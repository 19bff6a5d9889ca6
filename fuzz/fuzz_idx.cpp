// The IDX reader, raw and gzip: read_idx_pair(images_path, labels_path) and read_maybe_gzip.
// The reader only takes paths, so each input becomes two files in /tmp:
//   bytes 0-1   little-endian length n of the image file (clamped to what follows)
//   next n      the image file (raw IDX or gzip)
//   the rest    the label file (raw IDX or gzip)
// fuzz/make_seeds.py writes seeds in this layout.
#include <algorithm>
#include <cstdlib>
#include <string>

#include "fuzz_util.hpp"
#include "nanomlp/io/data.hpp"

namespace {
const std::string& images_path() {
  // Never destroyed: the atexit handler below may outlive function-local statics.
  static const std::string* p = new std::string(nanomlp_fuzz::temp_path("images-idx3-ubyte"));
  return *p;
}
const std::string& labels_path() {
  static const std::string* p = new std::string(nanomlp_fuzz::temp_path("labels-idx1-ubyte"));
  return *p;
}
void remove_files() {
  std::remove(images_path().c_str());
  std::remove(labels_path().c_str());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::atexit(remove_files);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::size_t n = std::min<std::size_t>(data[0] | (std::size_t{data[1]} << 8), size - 2);
  nanomlp_fuzz::write_bytes(images_path(), data + 2, n);
  nanomlp_fuzz::write_bytes(labels_path(), data + 2 + n, size - 2 - n);
  nanomlp_fuzz::expect_typed_errors([&] {
    const nanomlp::Dataset d = nanomlp::read_idx_pair(images_path(), labels_path());
    if (d.images.size() != d.count * nanomlp::kImagePixels || d.labels.size() != d.count) {
      std::abort();  // read_idx_pair's own promise
    }
    for (std::uint8_t label : d.labels) {
      if (label >= nanomlp::kNumClasses) std::abort();
    }
    (void)nanomlp::pixel_stats(d);
  });
  // A small limit, so that the "exceeds the limit" paths of both readers are reached too.
  nanomlp_fuzz::expect_typed_errors([&] {
    const auto bytes = nanomlp::read_maybe_gzip(labels_path(), 64);
    if (bytes.size() > 64) std::abort();
  });
  return 0;
}
