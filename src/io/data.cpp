#include "nanomlp/io/data.hpp"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <limits>
#include <memory>

#include "nanomlp/core/errors.hpp"

namespace nanomlp {

namespace {

namespace fs = std::filesystem;

// Large chunks keep the zlib and stdio call overhead negligible next to the inflate work itself.
constexpr std::size_t kChunkBytes = std::size_t{1} << 20;

// The largest IDX file we are willing to hold in memory. It caps memory at what a file really
// contains (up to this bound), so a header claiming billions of images cannot make us allocate
// for them: the claim is checked against the bytes actually read.
constexpr std::size_t kMaxIdxFileBytes = std::size_t{256} << 20;

constexpr std::uint32_t kImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr std::uint32_t kLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr std::size_t kImagesHeaderBytes = 16;      // magic, count, rows, cols
constexpr std::size_t kLabelsHeaderBytes = 8;       // magic, count

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

struct InflateGuard {
  z_stream* stream;
  ~InflateGuard() { inflateEnd(stream); }
};

std::string hex32(std::uint32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08x", static_cast<unsigned>(value));
  return buffer;
}

std::uint32_t read_be32(const std::uint8_t* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

[[noreturn]] void throw_read_error(const std::string& path, int err) {
  throw DataError("cannot read " + path + ": " + std::strerror(err));
}

[[noreturn]] void throw_too_large(const std::string& path, std::size_t max_bytes) {
  throw DataError(path + ": data exceeds the limit of " + std::to_string(max_bytes) +
                  " bytes (is this really an MNIST-format file?)");
}

// One past the limit, so that producing a single byte too many is observable.
std::size_t output_cap(std::size_t max_bytes) {
  return max_bytes == std::numeric_limits<std::size_t>::max() ? max_bytes : max_bytes + 1;
}

// Grows `out` towards `cap` geometrically so that appends stay amortised O(1) per byte.
void grow(std::vector<std::uint8_t>& out, std::size_t cap) {
  std::size_t size = out.size();
  std::size_t wanted = size > cap / 2 ? cap : std::max(size * 2, size + kChunkBytes);
  // Stay inside a reservation made from a size hint: no reallocation, and pages are only touched
  // as data actually arrives.
  if (out.capacity() > size) wanted = std::min(wanted, out.capacity());
  out.resize(std::min(wanted, cap));
}

// The gzip trailer's ISIZE (uncompressed size mod 2^32 of the last member). The file is
// untrusted, so this is only ever used as a reservation hint. Restores the file position.
std::optional<std::size_t> gzip_size_hint(std::FILE* f) {
  long position = std::ftell(f);
  if (position < 0) return std::nullopt;
  std::optional<std::size_t> hint;
  std::uint8_t trailer[4];
  if (std::fseek(f, -4, SEEK_END) == 0 && std::fread(trailer, 1, 4, f) == 4) {
    hint = std::size_t{trailer[0]} | (std::size_t{trailer[1]} << 8) |
           (std::size_t{trailer[2]} << 16) | (std::size_t{trailer[3]} << 24);
  }
  std::clearerr(f);
  if (std::fseek(f, position, SEEK_SET) != 0) return std::nullopt;
  return hint;
}

std::vector<std::uint8_t> gunzip(const std::string& path, std::FILE* f, const std::uint8_t* head,
                                 std::size_t head_size, std::size_t max_bytes) {
  const std::size_t cap = output_cap(max_bytes);
  std::optional<std::size_t> hint = gzip_size_hint(f);
  std::vector<std::uint8_t> out;
  // +1 leaves room for inflate to reach the end of the stream without another grow.
  if (hint && *hint <= max_bytes) out.reserve(std::min(*hint + 1, cap));
  out.resize(std::min(kChunkBytes, cap));
  std::vector<std::uint8_t> in(kChunkBytes);
  std::memcpy(in.data(), head, head_size);

  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK) {
    throw DataError(path + ": cannot start zlib inflate (out of memory?)");
  }
  InflateGuard guard{&zs};
  zs.next_in = in.data();
  zs.avail_in = static_cast<uInt>(head_size);

  std::size_t produced = 0;
  std::size_t members_done = 0;
  bool in_member = true;  // a gzip member has started and has not reached its end yet
  for (;;) {
    if (zs.avail_in == 0) {
      std::size_t n = std::fread(in.data(), 1, in.size(), f);
      if (n == 0) {
        if (std::ferror(f)) throw_read_error(path, errno);
        break;
      }
      zs.next_in = in.data();
      zs.avail_in = static_cast<uInt>(n);
    }
    if (!in_member) {
      // Concatenated gzip members decompress to the concatenation of their contents (RFC 1952).
      inflateReset(&zs);
      in_member = true;
    }
    if (produced == out.size()) {
      if (out.size() >= cap) throw_too_large(path, max_bytes);
      grow(out, cap);
    }
    std::size_t room = std::min<std::size_t>(out.size() - produced, UINT_MAX);
    zs.next_out = out.data() + produced;
    zs.avail_out = static_cast<uInt>(room);
    int ret = inflate(&zs, Z_NO_FLUSH);
    produced += room - zs.avail_out;
    if (produced > max_bytes) throw_too_large(path, max_bytes);
    if (ret == Z_STREAM_END) {
      in_member = false;
      ++members_done;
      continue;
    }
    // Z_BUF_ERROR only means no progress was possible with the buffers given; the loop refills
    // whichever ran out, and ends at end of file.
    if (ret == Z_OK || ret == Z_BUF_ERROR) continue;
    std::string reason = zs.msg != nullptr ? zs.msg : "zlib error " + std::to_string(ret);
    if (members_done > 0 && zs.total_out == 0) {
      throw DataError(path +
                      ": corrupt gzip stream: unexpected data after the end of gzip member " +
                      std::to_string(members_done) + " (zlib: " + reason + ")");
    }
    throw DataError(path + ": corrupt gzip stream after " + std::to_string(produced) +
                    " decompressed bytes (zlib: " + reason + ")");
  }
  if (in_member) {
    throw DataError(path + ": truncated gzip stream (the file ends after " +
                    std::to_string(produced) +
                    " decompressed bytes, before the end-of-stream marker; re-download it)");
  }
  out.resize(produced);
  return out;
}

std::vector<std::uint8_t> read_raw(const std::string& path, std::FILE* f, const std::uint8_t* head,
                                   std::size_t head_size, std::size_t max_bytes) {
  const std::size_t cap = output_cap(max_bytes);
  std::error_code ec;
  std::uintmax_t file_size = fs::file_size(path, ec);
  if (!ec && file_size > max_bytes) {
    throw DataError(path + ": file holds " + std::to_string(file_size) +
                    " bytes, more than the limit of " + std::to_string(max_bytes) + " bytes");
  }
  std::size_t initial = ec ? kChunkBytes : static_cast<std::size_t>(file_size) + 1;
  std::vector<std::uint8_t> out(std::max(std::min(initial, cap), head_size));
  std::memcpy(out.data(), head, head_size);
  std::size_t have = head_size;
  for (;;) {
    if (have == out.size()) {
      if (out.size() >= cap) throw_too_large(path, max_bytes);
      grow(out, cap);
    }
    std::size_t n = std::fread(out.data() + have, 1, out.size() - have, f);
    have += n;
    if (n == 0) {
      if (std::ferror(f)) throw_read_error(path, errno);
      break;
    }
  }
  if (have > max_bytes) throw_too_large(path, max_bytes);
  out.resize(have);
  return out;
}

// Checks the magic number and that the header is complete; returns the item count it declares.
std::uint32_t check_header(const std::string& path, const std::vector<std::uint8_t>& bytes,
                           std::uint32_t magic, std::size_t header_bytes, const char* kind) {
  if (bytes.size() >= 4) {
    std::uint32_t found = read_be32(bytes.data());
    if (found != magic) {
      std::string hint;
      if (found == kLabelsMagic) hint = "; that is an IDX label file, are the files swapped?";
      if (found == kImagesMagic) hint = "; that is an IDX image file, are the files swapped?";
      throw DataError(path + ": wrong magic number " + hex32(found) + ", expected " + hex32(magic) +
                      " for an IDX " + kind + " file (not gzip and not IDX?" + hint + ")");
    }
  }
  if (bytes.size() < header_bytes) {
    throw DataError(path + ": file holds " + std::to_string(bytes.size()) +
                    " bytes, too short for an IDX " + kind + " header of " +
                    std::to_string(header_bytes) + " bytes");
  }
  return read_be32(bytes.data() + 4);
}

// Checks that the file holds exactly `header_bytes + count * item_bytes`. The claim is compared
// with bytes already read (bounded by kMaxIdxFileBytes), so an absurd count costs nothing.
void check_size(const std::string& path, const std::vector<std::uint8_t>& bytes,
                std::uint32_t count, std::size_t header_bytes, std::size_t item_bytes,
                const char* items) {
  // 64-bit: count < 2^32 and item_bytes <= 784, so this cannot overflow.
  std::uint64_t expected = header_bytes + std::uint64_t{count} * item_bytes;
  if (bytes.size() == expected) return;
  std::string detail = bytes.size() < expected
                           ? "truncated or the count is wrong"
                           : std::to_string(bytes.size() - expected) + " unexpected trailing bytes";
  throw DataError(path + ": header claims " + std::to_string(count) + " " + items + " (" +
                  std::to_string(expected) + " bytes) but the file holds " +
                  std::to_string(bytes.size()) + " bytes (" + detail + ")");
}

std::string download_hint(const std::string& root, const std::string& name) {
  return "run 'nanomlp download " + name + " --data " + root +
         "' or pass --data DIR pointing to a folder with " + name + "/train-images-idx3-ubyte.gz";
}

// The file BASE.gz if present (preferred: it is what `nanomlp download` writes), else BASE.
std::string find_idx_file(const std::string& root, const std::string& name, const fs::path& dir,
                          const std::string& base) {
  std::error_code ec;
  fs::path gz = dir / (base + ".gz");
  if (fs::is_regular_file(gz, ec)) return gz.string();
  fs::path raw = dir / base;
  if (fs::is_regular_file(raw, ec)) return raw.string();
  throw DataError("data not found: no file " + gz.string() + " or " + raw.string() + "; " +
                  download_hint(root, name));
}

struct SplitFiles {
  std::string images;
  std::string labels;
};

std::string names_list() {
  std::string list;
  for (const auto& n : dataset_names()) list += (list.empty() ? "" : ", ") + n;
  return list;
}

}  // namespace

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = {"mnist", "fashion-mnist"};
  return names;
}

const std::vector<std::string>& class_names(const std::string& dataset) {
  static const std::vector<std::string> digits = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  static const std::vector<std::string> fashion = {
      "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  if (dataset == "mnist") return digits;
  if (dataset == "fashion-mnist") return fashion;
  throw UsageError("unknown dataset '" + dataset + "' (expected one of: " + names_list() + ")");
}

std::vector<std::uint8_t> read_maybe_gzip(const std::string& path, std::size_t max_bytes) {
  FilePtr file(std::fopen(path.c_str(), "rb"));
  if (!file) throw DataError("cannot open " + path + ": " + std::strerror(errno));
  std::uint8_t head[2];
  std::size_t head_size = std::fread(head, 1, sizeof head, file.get());
  if (head_size < sizeof head && std::ferror(file.get())) throw_read_error(path, errno);
  if (head_size == 2 && head[0] == 0x1f && head[1] == 0x8b) {
    return gunzip(path, file.get(), head, head_size, max_bytes);
  }
  return read_raw(path, file.get(), head, head_size, max_bytes);
}

Dataset read_idx_pair(const std::string& images_path, const std::string& labels_path) {
  Dataset data;
  data.images = read_maybe_gzip(images_path, kMaxIdxFileBytes);
  std::uint32_t image_count =
      check_header(images_path, data.images, kImagesMagic, kImagesHeaderBytes, "image");
  std::uint32_t rows = read_be32(data.images.data() + 8);
  std::uint32_t cols = read_be32(data.images.data() + 12);
  if (rows != kImageRows || cols != kImageCols) {
    throw DataError(images_path + ": images are " + std::to_string(rows) + "x" +
                    std::to_string(cols) + ", expected " + std::to_string(kImageRows) + "x" +
                    std::to_string(kImageCols));
  }
  check_size(images_path, data.images, image_count, kImagesHeaderBytes, kImagePixels, "images");

  data.labels = read_maybe_gzip(labels_path, kMaxIdxFileBytes);
  std::uint32_t label_count =
      check_header(labels_path, data.labels, kLabelsMagic, kLabelsHeaderBytes, "label");
  check_size(labels_path, data.labels, label_count, kLabelsHeaderBytes, 1, "labels");
  if (image_count != label_count) {
    throw DataError(images_path + " holds " + std::to_string(image_count) + " images but " +
                    labels_path + " holds " + std::to_string(label_count) +
                    " labels (expected the same count)");
  }
  const std::uint8_t* labels = data.labels.data() + kLabelsHeaderBytes;
  for (std::size_t i = 0; i < label_count; ++i) {
    if (labels[i] >= kNumClasses) {
      throw DataError(labels_path + ": label " + std::to_string(labels[i]) + " at index " +
                      std::to_string(i) + " is out of range (expected 0.." +
                      std::to_string(kNumClasses - 1) + ")");
    }
  }

  // Drop the headers in place rather than copying tens of megabytes into fresh buffers.
  data.images.erase(data.images.begin(),
                    data.images.begin() + static_cast<std::ptrdiff_t>(kImagesHeaderBytes));
  data.labels.erase(data.labels.begin(),
                    data.labels.begin() + static_cast<std::ptrdiff_t>(kLabelsHeaderBytes));
  data.count = image_count;
  return data;
}

std::string resolve_data_root(const std::optional<std::string>& flag) {
  if (flag && !flag->empty()) return *flag;
  if (const char* env = std::getenv("NANOMLP_DATA"); env != nullptr && *env != '\0') return env;
  return "./data";
}

DataSplit load_dataset(const std::string& root, const std::string& name) {
  const auto& names = dataset_names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    throw UsageError("unknown dataset '" + name + "' (expected one of: " + names_list() + ")");
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw DataError("data not found: no folder " + root +
                    " (the data root; looked in --data, $NANOMLP_DATA, ./data); " +
                    download_hint(root, name));
  }
  fs::path dir = fs::path(root) / name;
  if (!fs::is_directory(dir, ec)) {
    throw DataError("data not found: no folder " + dir.string() +
                    " (looked in --data, $NANOMLP_DATA, ./data); " + download_hint(root, name));
  }

  // Find every file before reading any, so a missing one is reported without a slow load first.
  SplitFiles train{find_idx_file(root, name, dir, "train-images-idx3-ubyte"),
                   find_idx_file(root, name, dir, "train-labels-idx1-ubyte")};
  SplitFiles test{find_idx_file(root, name, dir, "t10k-images-idx3-ubyte"),
                  find_idx_file(root, name, dir, "t10k-labels-idx1-ubyte")};

  DataSplit split;
  split.name = name;
  split.dir = dir.string();
  // Inflate is single-threaded, so the test split decompresses on a second thread meanwhile.
  auto test_future =
      std::async(std::launch::async, [&test] { return read_idx_pair(test.images, test.labels); });
  split.train = read_idx_pair(train.images, train.labels);
  split.test = test_future.get();
  return split;
}

std::vector<std::string> class_labels(const std::string& dataset, std::size_t num_classes) {
  if (std::find(dataset_names().begin(), dataset_names().end(), dataset) != dataset_names().end()) {
    const auto& names = class_names(dataset);
    if (names.size() == num_classes) return names;
  }
  std::vector<std::string> labels;
  for (std::size_t k = 0; k < num_classes; ++k) labels.push_back(std::to_string(k));
  return labels;
}

}  // namespace nanomlp
