// Shared helpers for the test suite: temporary folders, running the CLI, finding real data.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <zlib.h>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/rng.hpp"

namespace nanomlp::testing {

namespace fs = std::filesystem;

// The what() of the E that f throws. A test failure when f throws nothing or another
// exception.
template <typename E>
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected an exception, none was thrown";
  return {};
}

// Digits a small network learns in a few epochs: class k is a bright 4x4 block at a
// class-specific place (two rows of five), jittered by up to two pixels; labels i % 10. The
// background is noise below 60 (dense input) or black (ink-sparse, as MNIST).
inline Dataset blob_digits(std::size_t count, std::uint64_t seed, bool noisy_background = true) {
  Dataset d;
  d.count = count;
  d.images.assign(count * kImagePixels, 0);
  d.labels.resize(count);
  Rng rng(seed);
  for (std::size_t i = 0; i < count; ++i) {
    const auto label = static_cast<std::uint8_t>(i % 10);
    d.labels[i] = label;
    std::uint8_t* img = d.images.data() + i * kImagePixels;
    if (noisy_background) {
      for (std::size_t p = 0; p < kImagePixels; ++p) {
        img[p] = static_cast<std::uint8_t>(rng.below(60));
      }
    }
    const std::size_t row = 4 + (label / 5) * 12 + rng.below(3);
    const std::size_t col = 1 + (label % 5) * 5 + rng.below(3);
    for (std::size_t r = row; r < row + 4; ++r) {
      for (std::size_t c = col; c < col + 4; ++c) {
        img[r * kImageCols + c] = static_cast<std::uint8_t>(180 + rng.below(76));
      }
    }
  }
  return d;
}

// A fresh folder under the system temp dir, removed when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() /
            ("nanomlp-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

inline void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// Appends v as 4 big-endian bytes, as IDX headers store their fields.
inline void append_be32(std::vector<unsigned char>& out, std::uint32_t v) {
  out.push_back(static_cast<unsigned char>(v >> 24));
  out.push_back(static_cast<unsigned char>(v >> 16));
  out.push_back(static_cast<unsigned char>(v >> 8));
  out.push_back(static_cast<unsigned char>(v));
}

// One gzip member (windowBits 15 + 16 makes deflate write the gzip header and trailer).
inline std::vector<unsigned char> gzip_bytes(const std::vector<unsigned char>& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<unsigned char> out(deflateBound(&zs, static_cast<uLong>(raw.size())) + 64);
  zs.next_in = const_cast<Bytef*>(raw.data());
  zs.avail_in = static_cast<uInt>(raw.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

inline std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The __metadata__ keys of a model file that differ between two runs of the same training
// (app/training.hpp model_metadata): when it was trained and how long it took.
inline const std::set<std::string>& run_dependent_metadata_keys() {
  static const std::set<std::string> keys{"date", "train_seconds"};
  return keys;
}

// The header length of a safetensors file: its first 8 bytes, little-endian.
inline std::uint64_t header_length(const std::vector<unsigned char>& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.at(static_cast<std::size_t>(i));
  return n;
}

// The tensor data of a safetensors file: the bytes after its header.
inline std::vector<unsigned char> tensor_data(const std::vector<unsigned char>& file) {
  return std::vector<unsigned char>(
      file.begin() + 8 + static_cast<std::ptrdiff_t>(header_length(file)), file.end());
}

// Two model files hold the same model: the same tensors to the byte and the same header, but
// for the metadata keys run_dependent_metadata_keys() names. The one comparison for every test
// that checks that a run reproduces another's file (resumed, re-run, other thread count).
inline ::testing::AssertionResult same_model_file(const std::vector<unsigned char>& a,
                                                  const std::vector<unsigned char>& b) {
  struct Parsed {
    nlohmann::json header;
    std::vector<unsigned char> data;
    std::string error;
  };
  const auto parse = [](const std::vector<unsigned char>& bytes) {
    Parsed p;
    if (bytes.size() < 8 || header_length(bytes) > bytes.size() - 8) {
      p.error = "not a safetensors file (" + std::to_string(bytes.size()) + " bytes)";
      return p;
    }
    const auto header_end = bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_length(bytes));
    p.header = nlohmann::json::parse(bytes.begin() + 8, header_end, nullptr, false);
    if (p.header.is_discarded() || !p.header.is_object()) p.error = "header is not a JSON object";
    if (p.header.contains("__metadata__") && p.header["__metadata__"].is_object()) {
      for (const std::string& key : run_dependent_metadata_keys()) {
        p.header["__metadata__"].erase(key);
      }
    }
    p.data = tensor_data(bytes);
    return p;
  };
  const Parsed pa = parse(a), pb = parse(b);
  if (!pa.error.empty()) return ::testing::AssertionFailure() << "first file: " << pa.error;
  if (!pb.error.empty()) return ::testing::AssertionFailure() << "second file: " << pb.error;
  if (pa.header != pb.header) {
    return ::testing::AssertionFailure() << "the headers differ (date and train_seconds aside):\n"
                                         << pa.header.dump() << "\n"
                                         << pb.header.dump();
  }
  if (pa.data != pb.data) {
    std::size_t i = 0;
    while (i < pa.data.size() && i < pb.data.size() && pa.data[i] == pb.data[i]) ++i;
    return ::testing::AssertionFailure() << "the tensor data differ from byte " << i << " of "
                                         << pa.data.size() << " and " << pb.data.size();
  }
  return ::testing::AssertionSuccess();
}

// Now as UTC ISO 8601 to the second, as model files record their date.
inline std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing stdout+stderr and the exit code.
inline CommandResult run_command(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    result.output.append(buffer.data(), n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Runs the nanomlp binary built alongside the tests with the given arguments.
inline CommandResult run_nanomlp(const std::string& args) {
  return run_command(std::string(NANOMLP_BINARY) + " " + args);
}

// The real MNIST data root: $NANOMLP_DATA, else ../shared/data beside the source tree, else
// ./data in the source tree. Empty if none holds mnist/.
inline std::string real_data_root() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("NANOMLP_DATA"); env != nullptr && *env != '\0') {
    candidates.emplace_back(env);
  }
  candidates.push_back(std::string(NANOMLP_SOURCE_DIR) + "/../shared/data");
  candidates.push_back(std::string(NANOMLP_SOURCE_DIR) + "/data");
  for (const auto& c : candidates) {
    if (fs::exists(fs::path(c) / "mnist" / "train-images-idx3-ubyte.gz") ||
        fs::exists(fs::path(c) / "mnist" / "train-images-idx3-ubyte")) {
      return c;
    }
  }
  return {};
}

}  // namespace nanomlp::testing
