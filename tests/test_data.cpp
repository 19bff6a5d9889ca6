#include "nanomlp/io/data.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;
using Bytes = std::vector<unsigned char>;
using testing::append_be32;
using testing::gzip_bytes;

constexpr std::size_t kTestCount = 3;

// A distinct, reproducible value for every pixel so misplaced rows or offsets show up.
unsigned char pixel_value(std::size_t image, std::size_t pixel) {
  return static_cast<unsigned char>((image * 31 + pixel * 7) % 256);
}

Bytes make_images(std::uint32_t count, std::uint32_t rows = 28, std::uint32_t cols = 28,
                  std::uint32_t magic = 0x00000803) {
  Bytes out;
  append_be32(out, magic);
  append_be32(out, count);
  append_be32(out, rows);
  append_be32(out, cols);
  for (std::size_t i = 0; i < count; ++i) {
    for (std::size_t p = 0; p < std::size_t{rows} * cols; ++p) out.push_back(pixel_value(i, p));
  }
  return out;
}

Bytes make_labels(const std::vector<unsigned char>& labels) {
  Bytes out;
  append_be32(out, 0x00000801);
  append_be32(out, static_cast<std::uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

const std::vector<unsigned char> kLabels = {3, 0, 9};

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Runs `f`, expects it to throw E, and returns the message (checking it is a single line and
// holds every expected part).
template <class E, class F>
std::string expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const E& e) {
    std::string message = e.what();
    EXPECT_FALSE(contains(message, "\n")) << "message spans lines: " << message;
    for (const auto& part : parts) {
      EXPECT_TRUE(contains(message, part)) << "missing '" << part << "' in: " << message;
    }
    return message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong exception type: " << e.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

// A temp folder with an image file and a label file, raw or gzipped.
struct PairFiles {
  TempDir dir;
  std::string images;
  std::string labels;

  PairFiles(const Bytes& image_bytes, const Bytes& label_bytes, bool gzipped = false) {
    images = dir.file(gzipped ? "images.gz" : "images");
    labels = dir.file(gzipped ? "labels.gz" : "labels");
    write_bytes(images, gzipped ? gzip_bytes(image_bytes) : image_bytes);
    write_bytes(labels, gzipped ? gzip_bytes(label_bytes) : label_bytes);
  }
  Dataset read() const { return read_idx_pair(images, labels); }
};

void expect_test_pair(const Dataset& data) {
  ASSERT_EQ(data.count, kTestCount);
  ASSERT_EQ(data.images.size(), kTestCount * kImagePixels);
  ASSERT_EQ(data.labels, kLabels);
  for (std::size_t i = 0; i < kTestCount; ++i) {
    for (std::size_t p = 0; p < kImagePixels; ++p) {
      ASSERT_EQ(data.image(i)[p], pixel_value(i, p)) << "image " << i << " pixel " << p;
    }
  }
}

// ---- valid files ----

TEST(ReadIdxPair, ReadsRawFiles) {
  PairFiles files(make_images(kTestCount), make_labels(kLabels));
  expect_test_pair(files.read());
}

TEST(ReadIdxPair, ReadsGzippedFiles) {
  PairFiles files(make_images(kTestCount), make_labels(kLabels), /*gzipped=*/true);
  ASSERT_EQ(read_bytes(files.images).at(0), 0x1f);
  expect_test_pair(files.read());
}

TEST(ReadIdxPair, ReadsAnEmptyPair) {
  PairFiles files(make_images(0), make_labels({}));
  Dataset data = files.read();
  EXPECT_EQ(data.count, 0u);
  EXPECT_TRUE(data.images.empty());
  EXPECT_TRUE(data.labels.empty());
}

TEST(ReadMaybeGzip, ReturnsRawBytesUnchanged) {
  TempDir dir;
  Bytes bytes = {'h', 'e', 'l', 'l', 'o', 0x00, 0x1f};
  write_bytes(dir.file("raw"), bytes);
  EXPECT_EQ(read_maybe_gzip(dir.file("raw"), 100), bytes);
  write_bytes(dir.file("empty"), {});
  EXPECT_TRUE(read_maybe_gzip(dir.file("empty"), 100).empty());
}

TEST(ReadMaybeGzip, DecompressesLargeData) {
  TempDir dir;
  Bytes data(3'000'000);  // several inflate chunks
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * i >> 7);
  write_bytes(dir.file("big.gz"), gzip_bytes(data));
  EXPECT_EQ(read_maybe_gzip(dir.file("big.gz"), data.size()), data);
}

TEST(ReadMaybeGzip, ConcatenatesMultipleMembers) {
  TempDir dir;
  Bytes first = {'a', 'b', 'c'};
  Bytes second = {'d', 'e'};
  Bytes file = gzip_bytes(first);
  Bytes member = gzip_bytes(second);
  file.insert(file.end(), member.begin(), member.end());
  write_bytes(dir.file("multi.gz"), file);
  EXPECT_EQ(read_maybe_gzip(dir.file("multi.gz"), 100), (Bytes{'a', 'b', 'c', 'd', 'e'}));
}

TEST(ReadMaybeGzip, RejectsGarbageAfterTheStream) {
  TempDir dir;
  Bytes file = gzip_bytes({'a', 'b', 'c'});
  file.insert(file.end(), {'j', 'u', 'n', 'k'});
  write_bytes(dir.file("junk.gz"), file);
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("junk.gz"), 100); },
                          {dir.file("junk.gz"), "after the end of gzip member 1"});
}

TEST(ReadMaybeGzip, StopsAtTheSizeLimit) {
  TempDir dir;
  Bytes data(100'000, 7);
  write_bytes(dir.file("big.gz"), gzip_bytes(data));
  write_bytes(dir.file("big"), data);
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("big.gz"), 1000); },
                          {dir.file("big.gz"), "limit of 1000 bytes"});
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("big"), 1000); },
                          {dir.file("big"), "limit of 1000 bytes"});
  // Exactly at the limit is fine.
  EXPECT_EQ(read_maybe_gzip(dir.file("big.gz"), data.size()).size(), data.size());
  EXPECT_EQ(read_maybe_gzip(dir.file("big"), data.size()).size(), data.size());
}

TEST(ReadMaybeGzip, DistrustsTheTrailerSize) {
  // The gzip trailer's ISIZE claims 4 GiB - 1; reading must not allocate for that, and the
  // mismatch with the real length is a corrupt stream.
  TempDir dir;
  Bytes file = gzip_bytes(Bytes(1000, 1));
  for (std::size_t i = file.size() - 4; i < file.size(); ++i) file[i] = 0xff;
  write_bytes(dir.file("liar.gz"), file);
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("liar.gz"), 1 << 20); },
                          {dir.file("liar.gz"), "corrupt gzip stream", "incorrect length check"});
}

TEST(ReadMaybeGzip, MissingFile) {
  TempDir dir;
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("nope.gz"), 100); },
                          {dir.file("nope.gz"), "No such file"});
}

// ---- bad files ----

TEST(BadData, TruncatedGzip) {
  TempDir dir;
  Bytes file = gzip_bytes(make_images(kTestCount));
  file.resize(file.size() / 2);
  write_bytes(dir.file("images.gz"), file);
  write_bytes(dir.file("labels"), make_labels(kLabels));
  expect_error<DataError>([&] { read_idx_pair(dir.file("images.gz"), dir.file("labels")); },
                          {dir.file("images.gz"), "truncated gzip stream ("});
}

TEST(BadData, GzipCutInsideTheTrailer) {
  TempDir dir;
  Bytes file = gzip_bytes(make_labels(kLabels));
  file.resize(file.size() - 3);
  write_bytes(dir.file("labels.gz"), file);
  expect_error<DataError>([&] { read_maybe_gzip(dir.file("labels.gz"), 1 << 20); },
                          {dir.file("labels.gz"), "truncated gzip stream ("});
}

TEST(BadData, CorruptGzip) {
  TempDir dir;
  Bytes file = gzip_bytes(make_images(kTestCount));
  // Break the deflate data right after the 10-byte gzip header.
  for (std::size_t i = 10; i < 40; ++i) file[i] = 0xff;
  write_bytes(dir.file("images.gz"), file);
  std::string message =
      expect_error<DataError>([&] { read_maybe_gzip(dir.file("images.gz"), 1 << 20); },
                              {dir.file("images.gz"), "corrupt gzip stream", "(zlib: "});
  EXPECT_FALSE(contains(message, "(zlib: )")) << message;
}

TEST(BadData, NeitherGzipNorIdx) {
  TempDir dir;
  std::string text = "this is a plain text file, not a dataset\n";
  write_bytes(dir.file("images"), Bytes(text.begin(), text.end()));
  write_bytes(dir.file("labels"), make_labels(kLabels));
  expect_error<DataError>([&] { read_idx_pair(dir.file("images"), dir.file("labels")); },
                          {dir.file("images"), "wrong magic number 0x74686973", "0x00000803"});
}

TEST(BadData, WrongMagicNumber) {
  PairFiles files(make_images(kTestCount, 28, 28, 0x00000804), make_labels(kLabels));
  expect_error<DataError>([&] { files.read(); },
                          {files.images, "wrong magic number 0x00000804", "expected 0x00000803"});
}

TEST(BadData, SwappedImageAndLabelFiles) {
  PairFiles files(make_images(kTestCount), make_labels(kLabels));
  expect_error<DataError>([&] { read_idx_pair(files.labels, files.images); },
                          {files.labels, "wrong magic number 0x00000801", "swapped"});
}

TEST(BadData, TooShortForHeader) {
  TempDir dir;
  write_bytes(dir.file("images"), {0x00, 0x00, 0x08, 0x03, 0x00});
  write_bytes(dir.file("labels"), make_labels(kLabels));
  expect_error<DataError>([&] { read_idx_pair(dir.file("images"), dir.file("labels")); },
                          {dir.file("images"), "holds 5 bytes", "header of 16 bytes"});
}

TEST(BadData, ImagesNot28x28) {
  PairFiles files(make_images(kTestCount, 32, 32), make_labels(kLabels));
  expect_error<DataError>([&] { files.read(); },
                          {files.images, "images are 32x32", "expected 28x28"});
}

TEST(BadData, HeaderClaimsMoreImagesThanTheFileHolds) {
  Bytes images = make_images(kTestCount);
  images[7] = 5;  // count 3 -> 5
  PairFiles files(images, make_labels(kLabels), /*gzipped=*/true);
  expect_error<DataError>(
      [&] { files.read(); },
      {files.images, "header claims 5 images (3936 bytes)", "but the file holds 2368 bytes"});
}

TEST(BadData, HeaderClaimsMoreLabelsThanTheFileHolds) {
  Bytes labels = make_labels(kLabels);
  labels[7] = 4;
  PairFiles files(make_images(kTestCount), labels);
  expect_error<DataError>(
      [&] { files.read(); },
      {files.labels, "header claims 4 labels (12 bytes) but the file holds 11 bytes"});
}

void expect_absurd_count_fails_fast(std::uint32_t count) {
  Bytes images = make_images(kTestCount);
  images[4] = static_cast<unsigned char>(count >> 24);
  images[5] = static_cast<unsigned char>(count >> 16);
  images[6] = static_cast<unsigned char>(count >> 8);
  images[7] = static_cast<unsigned char>(count);
  std::string claimed = std::to_string(16 + std::uint64_t{count} * 784);
  for (bool gzipped : {false, true}) {
    PairFiles files(images, make_labels(kLabels), gzipped);
    auto start = std::chrono::steady_clock::now();
    // A giant allocation would surface as std::bad_alloc (the wrong type) or take seconds.
    expect_error<DataError>([&] { files.read(); },
                            {files.images, "header claims " + std::to_string(count) + " images (" +
                                               claimed + " bytes) but the file holds 2368 bytes"});
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 1.0) << "count " << count << " took " << seconds << " s";
  }
}

TEST(BadData, AbsurdCount2To31) {
  expect_absurd_count_fails_fast(0x80000000u);
}

TEST(BadData, AbsurdCountAllOnes) {
  expect_absurd_count_fails_fast(0xFFFFFFFFu);
}

TEST(BadData, AbsurdLabelCount) {
  Bytes labels = make_labels(kLabels);
  for (int i = 4; i < 8; ++i) labels[i] = 0xff;
  PairFiles files(make_images(kTestCount), labels);
  expect_error<DataError>([&] { files.read(); }, {files.labels, "header claims 4294967295 labels"});
}

TEST(BadData, ImageAndLabelCountsDiffer) {
  PairFiles files(make_images(kTestCount), make_labels({1, 2}));
  expect_error<DataError>([&] { files.read(); },
                          {files.images, "3 images", files.labels, "2 labels"});
}

TEST(BadData, LabelOutOfRange) {
  PairFiles files(make_images(kTestCount), make_labels({1, 10, 2}));
  expect_error<DataError>([&] { files.read(); },
                          {files.labels, "label 10 at index 1", "expected 0..9"});
}

TEST(BadData, TrailingBytesAfterImages) {
  Bytes images = make_images(kTestCount);
  images.push_back(0);
  images.push_back(0);
  PairFiles files(images, make_labels(kLabels), /*gzipped=*/true);
  expect_error<DataError>([&] { files.read(); },
                          {files.images, "header claims 3 images (2368 bytes)", "holds 2370 bytes",
                           "2 unexpected trailing bytes"});
}

TEST(BadData, TrailingBytesAfterLabels) {
  Bytes labels = make_labels(kLabels);
  labels.push_back(1);
  PairFiles files(make_images(kTestCount), labels);
  expect_error<DataError>([&] { files.read(); }, {files.labels, "header claims 3 labels (11 bytes)",
                                                  "holds 12 bytes", "1 unexpected trailing bytes"});
}

// ---- data folder lookup ----

// Writes a complete dataset folder ROOT/NAME with the test pair for both splits.
void write_dataset(const std::string& root, const std::string& name, bool gzipped) {
  std::filesystem::create_directories(std::filesystem::path(root) / name);
  std::string suffix = gzipped ? ".gz" : "";
  auto put = [&](const std::string& base, const Bytes& bytes) {
    write_bytes(root + "/" + name + "/" + base + suffix, gzipped ? gzip_bytes(bytes) : bytes);
  };
  for (const std::string split : {"train", "t10k"}) {
    put(split + "-images-idx3-ubyte", make_images(kTestCount));
    put(split + "-labels-idx1-ubyte", make_labels(kLabels));
  }
}

TEST(LoadDataset, MissingDataRoot) {
  TempDir dir;
  std::string root = dir.file("no-such-folder");
  expect_error<DataError>(
      [&] { load_dataset(root, "mnist"); },
      {"data not found", "no folder " + root, "$NANOMLP_DATA",
       "nanomlp download mnist --data " + root, "mnist/train-images-idx3-ubyte.gz"});
}

TEST(LoadDataset, MissingDatasetFolder) {
  TempDir dir;
  std::string root = dir.path().string();
  expect_error<DataError>(
      [&] { load_dataset(root, "fashion-mnist"); },
      {"data not found", "no folder " + root + "/fashion-mnist", "--data", "$NANOMLP_DATA",
       "./data", "nanomlp download fashion-mnist --data " + root});
}

TEST(LoadDataset, MissingFile) {
  TempDir dir;
  std::string root = dir.path().string();
  write_dataset(root, "mnist", /*gzipped=*/true);
  std::filesystem::remove(root + "/mnist/t10k-labels-idx1-ubyte.gz");
  expect_error<DataError>(
      [&] { load_dataset(root, "mnist"); },
      {"data not found", root + "/mnist/t10k-labels-idx1-ubyte.gz", "nanomlp download mnist"});
}

TEST(LoadDataset, UnknownName) {
  TempDir dir;
  expect_error<UsageError>([&] { load_dataset(dir.path().string(), "cifar"); },
                           {"'cifar'", "mnist, fashion-mnist"});
}

TEST(LoadDataset, LoadsGzippedAndRawFolders) {
  TempDir dir;
  std::string root = dir.path().string();
  write_dataset(root, "mnist", /*gzipped=*/true);
  write_dataset(root, "fashion-mnist", /*gzipped=*/false);
  for (const std::string name : {"mnist", "fashion-mnist"}) {
    SCOPED_TRACE(name);
    DataSplit split = load_dataset(root, name);
    EXPECT_EQ(split.name, name);
    EXPECT_EQ(split.dir, root + "/" + name);
    expect_test_pair(split.train);
    expect_test_pair(split.test);
  }
}

TEST(LoadDataset, PrefersGzipOverRaw) {
  TempDir dir;
  std::string root = dir.path().string();
  write_dataset(root, "mnist", /*gzipped=*/true);
  // A raw train label file that differs from the gzipped one must be ignored.
  write_bytes(root + "/mnist/train-labels-idx1-ubyte", make_labels({7, 7, 7}));
  DataSplit split = load_dataset(root, "mnist");
  EXPECT_EQ(split.train.labels, kLabels);
}

TEST(LoadDataset, ReportsBadFileInsideFolder) {
  TempDir dir;
  std::string root = dir.path().string();
  write_dataset(root, "mnist", /*gzipped=*/false);
  write_bytes(root + "/mnist/t10k-labels-idx1-ubyte", make_labels({1, 2, 200}));
  expect_error<DataError>([&] { load_dataset(root, "mnist"); },
                          {root + "/mnist/t10k-labels-idx1-ubyte", "label 200 at index 2"});
}

// ---- names and data root ----

TEST(Names, DatasetNames) {
  EXPECT_EQ(dataset_names(), (std::vector<std::string>{"mnist", "fashion-mnist"}));
}

TEST(Names, ClassNames) {
  const auto& digits = class_names("mnist");
  ASSERT_EQ(digits.size(), kNumClasses);
  for (std::size_t i = 0; i < kNumClasses; ++i) EXPECT_EQ(digits[i], std::to_string(i));
  EXPECT_EQ(class_names("fashion-mnist"),
            (std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}));
  expect_error<UsageError>([] { class_names("emnist"); }, {"'emnist'", "mnist, fashion-mnist"});
}

// Restores $NANOMLP_DATA after a test that changes it.
class ScopedDataEnv {
 public:
  ScopedDataEnv() {
    if (const char* v = std::getenv("NANOMLP_DATA")) saved_ = v;
  }
  ~ScopedDataEnv() {
    if (saved_) {
      ::setenv("NANOMLP_DATA", saved_->c_str(), 1);
    } else {
      ::unsetenv("NANOMLP_DATA");
    }
  }
  ScopedDataEnv(const ScopedDataEnv&) = delete;
  ScopedDataEnv& operator=(const ScopedDataEnv&) = delete;

 private:
  std::optional<std::string> saved_;
};

TEST(ResolveDataRoot, Precedence) {
  ScopedDataEnv restore;
  ::unsetenv("NANOMLP_DATA");
  EXPECT_EQ(resolve_data_root(std::nullopt), "./data");
  EXPECT_EQ(resolve_data_root(std::string()), "./data");
  EXPECT_EQ(resolve_data_root(std::string("/flag")), "/flag");

  ::setenv("NANOMLP_DATA", "", 1);
  EXPECT_EQ(resolve_data_root(std::nullopt), "./data");

  ::setenv("NANOMLP_DATA", "/env", 1);
  EXPECT_EQ(resolve_data_root(std::nullopt), "/env");
  EXPECT_EQ(resolve_data_root(std::string()), "/env");
  EXPECT_EQ(resolve_data_root(std::string("/flag")), "/flag");
}

// ---- real data ----

TEST(RealData, Mnist) {
  std::string root = testing::real_data_root();
  if (root.empty()) GTEST_SKIP() << "no real MNIST data found (set NANOMLP_DATA)";
  auto start = std::chrono::steady_clock::now();
  DataSplit split = load_dataset(root, "mnist");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[   INFO   ] mnist load took %.3f s\n", seconds);
  EXPECT_EQ(split.train.count, 60000u);
  EXPECT_EQ(split.test.count, 10000u);
  EXPECT_EQ(split.train.images.size(), 60000u * kImagePixels);
  EXPECT_EQ(split.test.images.size(), 10000u * kImagePixels);
  EXPECT_EQ(split.train.labels.at(0), 5);
  EXPECT_EQ(split.test.labels.at(0), 7);
  // The first training image (a 5) has ink near the middle and a blank border.
  EXPECT_EQ(split.train.image(0)[0], 0);
  unsigned ink = 0;
  for (std::size_t p = 0; p < kImagePixels; ++p) ink += split.train.image(0)[p] > 0;
  EXPECT_GT(ink, 50u);
}

TEST(RealData, FashionMnist) {
  std::string root = testing::real_data_root();
  if (root.empty()) GTEST_SKIP() << "no real data found (set NANOMLP_DATA)";
  if (!std::filesystem::exists(std::filesystem::path(root) / "fashion-mnist")) {
    GTEST_SKIP() << "no fashion-mnist folder in " << root;
  }
  DataSplit split = load_dataset(root, "fashion-mnist");
  EXPECT_EQ(split.train.count, 60000u);
  EXPECT_EQ(split.test.count, 10000u);
  EXPECT_EQ(split.train.labels.at(0), 9);
  EXPECT_EQ(class_names("fashion-mnist").at(split.train.labels.at(0)), "Ankle boot");
}

}  // namespace
}  // namespace nanomlp
