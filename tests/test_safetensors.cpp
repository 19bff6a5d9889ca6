#include "nanomlp/io/safetensors.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/npy.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using testing::message_of;

namespace fs = std::filesystem;
using nanomlp::testing::read_bytes;
using nanomlp::testing::TempDir;
using nanomlp::testing::write_bytes;
using ::testing::HasSubstr;
using ::testing::Not;
using Bytes = std::vector<std::uint8_t>;

void append_u64_le(Bytes& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A file as the reference writer lays it out: length prefix, header padded with spaces to a
// multiple of 8, then the data section. Corrupt cases start from here and break one thing.
Bytes make_file(std::string header, const Bytes& data) {
  while (header.size() % 8 != 0) header += ' ';
  Bytes out;
  append_u64_le(out, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

std::string parse_error(const Bytes& bytes) {
  return message_of<ModelFormatError>([&] { parse_safetensors(bytes, "model.st"); });
}

SafeTensors sample() {
  SafeTensors st;
  st.metadata = {{"format", "pt"}, {"nanomlp", "0.1.0"}};
  const std::vector<float> w = {0.5f, -1.25f, 3.0f, 1e-8f, -0.0f, 65504.0f};
  const std::vector<float> b = {0.1f, -0.2f};
  const std::int64_t batches = 937;
  st.tensors.push_back(TensorEntry::from_f32("0.weight", {2, 3}, w.data()));
  st.tensors.push_back(TensorEntry::from_f32("0.bias", {2}, b.data()));
  st.tensors.push_back(TensorEntry::from_i64("1.num_batches_tracked", {}, &batches));
  st.tensors.push_back(TensorEntry::from_f32("empty", {0, 3}, nullptr));
  return st;
}

std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

// --- round trip and exact bytes ---

TEST(SafeTensors, RoundTripPreservesNamesShapesDtypesValuesAndMetadata) {
  const SafeTensors st = sample();
  const Bytes bytes = serialize_safetensors(st);
  const SafeTensors back = parse_safetensors(bytes, "mem");

  EXPECT_EQ(back.metadata, st.metadata);
  ASSERT_EQ(back.tensors.size(), st.tensors.size());
  for (std::size_t i = 0; i < st.tensors.size(); ++i) {
    EXPECT_EQ(back.tensors[i].name, st.tensors[i].name);
    EXPECT_EQ(back.tensors[i].dtype, st.tensors[i].dtype);
    EXPECT_EQ(back.tensors[i].shape, st.tensors[i].shape);
    EXPECT_EQ(back.tensors[i].data, st.tensors[i].data);
  }
  EXPECT_EQ(back.find("0.weight")->to_f32(),
            (std::vector<float>{0.5f, -1.25f, 3.0f, 1e-8f, -0.0f, 65504.0f}));
  const TensorEntry* scalar = back.find("1.num_batches_tracked");
  ASSERT_NE(scalar, nullptr);
  EXPECT_TRUE(scalar->shape.empty());
  EXPECT_EQ(scalar->numel(), 1u);
  EXPECT_EQ(scalar->to_i64(), std::vector<std::int64_t>{937});
  EXPECT_EQ(back.find("empty")->numel(), 0u);
  EXPECT_EQ(back.find("missing"), nullptr);
}

TEST(SafeTensors, SerializeIsDeterministicAndHeaderIsPaddedToEight) {
  const Bytes a = serialize_safetensors(sample());
  const Bytes b = serialize_safetensors(sample());
  EXPECT_EQ(a, b);

  ASSERT_GE(a.size(), 8u);
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<std::uint64_t>(a[i]) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  const std::size_t data_bytes = 6 * 4 + 2 * 4 + 8;
  EXPECT_EQ(a.size(), 8 + n + data_bytes);
  const std::string header(a.begin() + 8, a.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  // Metadata first, then tensors in the order given, which must survive serialisation.
  EXPECT_EQ(header.rfind("{\"__metadata__\":{", 0), 0u);
  EXPECT_LT(header.find("\"0.weight\""), header.find("\"0.bias\""));
  EXPECT_LT(header.find("\"0.bias\""), header.find("\"1.num_batches_tracked\""));
}

TEST(SafeTensors, SerializeMatchesHandWrittenBytes) {
  SafeTensors st;
  const float values[] = {1.0f, 2.0f};
  st.tensors.push_back(TensorEntry::from_f32("a", {2}, values));

  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})"
                             "  ";  // 54 bytes of JSON, padded to 56
  Bytes expected = {56, 0, 0, 0, 0, 0, 0, 0};
  expected.insert(expected.end(), header.begin(), header.end());
  const Bytes data = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};  // 1.0f, 2.0f LE
  expected.insert(expected.end(), data.begin(), data.end());

  EXPECT_EQ(serialize_safetensors(st), expected);
}

TEST(SafeTensors, SerializeMatchesHandWrittenBytesWithMetadataAndScalar) {
  SafeTensors st;
  st.metadata = {{"format", "pt"}};
  const std::int64_t v = -2;
  st.tensors.push_back(TensorEntry::from_i64("n", {}, &v));

  const std::string header =
      R"({"__metadata__":{"format":"pt"},"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}})"
      "    ";  // 84 bytes of JSON, padded to 88
  Bytes expected = {88, 0, 0, 0, 0, 0, 0, 0};
  expected.insert(expected.end(), header.begin(), header.end());
  const Bytes data = {0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};  // -2 LE
  expected.insert(expected.end(), data.begin(), data.end());

  EXPECT_EQ(serialize_safetensors(st), expected);
}

TEST(SafeTensors, ParsesFileWhoseHeaderOrderDiffersFromDataOrder) {
  // The reference writer orders header keys by name but may pack data differently; the result
  // must come back in data-offset order with each tensor's own bytes.
  const Bytes data = {0x00, 0x00, 0x80, 0x3f, 7, 0, 0, 0, 0, 0, 0, 0};  // b = 1.0f, a = 7
  const Bytes file = make_file(R"({"__metadata__":{"format":"pt"},)"
                               R"("a":{"dtype":"I64","shape":[],"data_offsets":[4,12]},)"
                               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                               data);
  const SafeTensors st = parse_safetensors(file, "ref");
  ASSERT_EQ(st.tensors.size(), 2u);
  EXPECT_EQ(st.tensors[0].name, "b");
  EXPECT_EQ(st.tensors[1].name, "a");
  EXPECT_EQ(st.tensors[0].to_f32(), std::vector<float>{1.0f});
  EXPECT_EQ(st.tensors[1].to_i64(), std::vector<std::int64_t>{7});
  EXPECT_EQ(st.metadata.at("format"), "pt");
}

// --- TensorEntry and serialize validation ---

TEST(SafeTensors, TensorEntryAccessorsCheckDtype) {
  const std::int64_t v = 3;
  const TensorEntry t = TensorEntry::from_i64("n", {}, &v);
  EXPECT_THAT(message_of<ModelFormatError>([&] { (void)t.to_f32(); }),
              HasSubstr("expected dtype F32, found I64"));
  TensorEntry bad = TensorEntry::from_i64("n", {}, &v);
  bad.data.pop_back();
  EXPECT_THAT(message_of<ModelFormatError>([&] { (void)bad.to_i64(); }),
              HasSubstr("expected 8 bytes"));
}

TEST(SafeTensors, SerializeRejectsDuplicateNamesSizeMismatchAndUnknownDtype) {
  const float v[] = {1.0f, 2.0f};
  SafeTensors dup;
  dup.tensors.push_back(TensorEntry::from_f32("w", {2}, v));
  dup.tensors.push_back(TensorEntry::from_f32("w", {1}, v));
  EXPECT_THAT(message_of<ModelFormatError>([&] { serialize_safetensors(dup); }),
              HasSubstr("duplicate tensor name 'w'"));

  SafeTensors mismatch;
  mismatch.tensors.push_back(TensorEntry::from_f32("w", {2}, v));
  mismatch.tensors[0].shape = {3};
  EXPECT_THAT(message_of<ModelFormatError>([&] { serialize_safetensors(mismatch); }),
              HasSubstr("expected 12 bytes of data for shape [3] F32, found 8"));

  SafeTensors f16;
  f16.tensors.push_back(TensorEntry::from_f32("w", {2}, v));
  f16.tensors[0].dtype = "F16";
  EXPECT_THAT(message_of<ModelFormatError>([&] { serialize_safetensors(f16); }),
              HasSubstr("unsupported dtype 'F16' (supported: F32, I64)"));
}

// --- corrupt files: each message names the source and says what was expected/found ---

TEST(SafeTensorsCorrupt, TruncatedFile) {
  Bytes bytes = serialize_safetensors(sample());
  ASSERT_GT(bytes.size(), 5u);
  bytes.erase(bytes.end() - 5, bytes.end());
  const std::string msg = parse_error(bytes);
  EXPECT_THAT(msg, HasSubstr("model.st: "));
  EXPECT_THAT(msg, HasSubstr("end beyond the data section"));
}

TEST(SafeTensorsCorrupt, FileOfFiveBytes) {
  const std::string msg = parse_error(Bytes{1, 2, 3, 4, 5});
  EXPECT_THAT(msg, HasSubstr("model.st: expected at least 8 bytes"));
  EXPECT_THAT(msg, HasSubstr("found a file of 5 bytes"));
}

TEST(SafeTensorsCorrupt, HeaderLengthBeyondFile) {
  Bytes bytes;
  append_u64_le(bytes, 12345);
  bytes.resize(100, ' ');
  EXPECT_THAT(parse_error(bytes), HasSubstr("header length 12345 exceeds file size 100"));
}

TEST(SafeTensorsCorrupt, AbsurdHeaderLengthRejectedWithoutAllocating) {
  Bytes bytes;
  append_u64_le(bytes, std::uint64_t{1} << 60);
  bytes.resize(64, ' ');
  const std::string msg = parse_error(bytes);
  EXPECT_THAT(msg, HasSubstr("header length 1152921504606846976 exceeds the limit"));
}

TEST(SafeTensorsCorrupt, HeaderNotJson) {
  const std::string msg = parse_error(make_file(R"({"a": {"dtype": )", {}));
  EXPECT_THAT(msg, HasSubstr("model.st: corrupt header"));
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

TEST(SafeTensorsCorrupt, HeaderNotAnObject) {
  EXPECT_THAT(parse_error(make_file("[1, 2, 3]", {})),
              HasSubstr("corrupt header: expected a JSON object, found array"));
}

TEST(SafeTensorsCorrupt, UnknownDtypeListsSupported) {
  const std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", Bytes(4)));
  EXPECT_THAT(msg, HasSubstr("tensor 'a': unsupported dtype 'F16' (supported: F32, I64)"));
}

TEST(SafeTensorsCorrupt, ShapeAndOffsetsDisagree) {
  const std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", Bytes(8)));
  EXPECT_THAT(msg, HasSubstr("tensor 'a': expected 12 bytes for shape [3] F32"));
  EXPECT_THAT(msg, HasSubstr("spanning 8 bytes"));
}

TEST(SafeTensorsCorrupt, NegativeShape) {
  EXPECT_THAT(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                                    Bytes(8))),
              HasSubstr("tensor 'a': shape: expected non-negative dimensions, found -2"));
}

TEST(SafeTensorsCorrupt, ShapeOverflow) {
  EXPECT_THAT(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],)"
                                    R"("data_offsets":[0,0]}})",
                                    {})),
              HasSubstr("more elements than fit in 64 bits"));
}

TEST(SafeTensorsCorrupt, OverlappingOffsets) {
  const std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            Bytes(12)));
  EXPECT_THAT(msg, HasSubstr("tensor 'b': data_offsets [4, 12] overlap tensor 'a'"));
}

TEST(SafeTensorsCorrupt, GapBetweenTensors) {
  const std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            Bytes(12)));
  EXPECT_THAT(msg, HasSubstr("tensor 'b': expected data to start at byte 4"));
}

TEST(SafeTensorsCorrupt, TrailingUnusedBytes) {
  const std::string msg =
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", Bytes(7)));
  EXPECT_THAT(msg, HasSubstr("found 3 trailing unused bytes"));
}

TEST(SafeTensorsCorrupt, OffsetsBeginAfterEnd) {
  EXPECT_THAT(
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", Bytes(8))),
      HasSubstr("expected begin <= end, found [8, 4]"));
}

TEST(SafeTensorsCorrupt, MissingFieldAndWrongTypes) {
  EXPECT_THAT(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1]}})", Bytes(4))),
              HasSubstr("tensor 'a': expected a \"data_offsets\" field, found none"));
  EXPECT_THAT(
      parse_error(make_file(R"({"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", Bytes(4))),
      HasSubstr("tensor 'a': dtype: expected a string, found number"));
  EXPECT_THAT(
      parse_error(make_file(R"({"a":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", Bytes(4))),
      HasSubstr("shape: expected an array of non-negative integers, found string"));
  EXPECT_THAT(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})",
                                    Bytes(4))),
              HasSubstr("data_offsets: expected [begin, end], found an array of 3 elements"));
  EXPECT_THAT(parse_error(make_file(R"({"a":[1,2]})", {})),
              HasSubstr("tensor 'a': expected an object with dtype, shape and data_offsets"));
}

TEST(SafeTensorsCorrupt, MetadataWithNonStringValue) {
  const std::string msg = parse_error(make_file(
      R"({"__metadata__":{"epochs":5},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
      Bytes(4)));
  EXPECT_THAT(msg, HasSubstr("__metadata__ key 'epochs': expected a string value, found number 5"));
}

// --- files ---

TEST(SafeTensorsFile, WriteFileAtomicWritesAndReplaces) {
  TempDir dir;
  const std::string path = dir.file("out.json");
  write_file_atomic(path, "first version, longer than the second");
  write_file_atomic(path, "second");
  const auto bytes = read_bytes(path);
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "second");
  EXPECT_EQ(entries_of(dir.path()), std::vector<std::string>{"out.json"});
}

TEST(SafeTensorsFile, WriteIntoMissingFolderThrowsAndLeavesNothing) {
  TempDir dir;
  const std::string path = (dir.path() / "no-such-dir" / "model.safetensors").string();
  const std::string msg = message_of<IoError>([&] { write_safetensors_file(path, sample()); });
  EXPECT_THAT(msg, HasSubstr("cannot write " + path + ": No such file or directory"));
  EXPECT_TRUE(entries_of(dir.path()).empty());
}

TEST(SafeTensorsFile, FailedRenameRemovesTempFile) {
  TempDir dir;
  // A non-empty folder at the target path makes the final rename fail after the temp file
  // was written, which is the path where cleanup matters.
  const fs::path target = dir.path() / "model.safetensors";
  fs::create_directories(target / "inside");
  const std::string msg = message_of<IoError>([&] { write_file_atomic(target.string(), "x"); });
  EXPECT_THAT(msg, HasSubstr("cannot write " + target.string() + ": "));
  EXPECT_EQ(entries_of(dir.path()), std::vector<std::string>{"model.safetensors"});
}

TEST(SafeTensorsFile, WriteThenReadRoundTripsAndLeavesNoTempFile) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  write_safetensors_file(path, sample());
  EXPECT_EQ(entries_of(dir.path()), std::vector<std::string>{"model.safetensors"});
  const auto on_disk = read_bytes(path);
  EXPECT_EQ(Bytes(on_disk.begin(), on_disk.end()), serialize_safetensors(sample()));

  const SafeTensors back = read_safetensors_file(path);
  EXPECT_EQ(back.metadata, sample().metadata);
  ASSERT_NE(back.find("0.bias"), nullptr);
  EXPECT_EQ(back.find("0.bias")->to_f32(), (std::vector<float>{0.1f, -0.2f}));
}

TEST(SafeTensorsFile, ReadMissingFileThrowsIoErrorNamingPath) {
  TempDir dir;
  const std::string path = dir.file("absent.safetensors");
  EXPECT_THAT(message_of<IoError>([&] { read_safetensors_file(path); }),
              HasSubstr("cannot read " + path + ": No such file or directory"));
}

TEST(SafeTensorsFile, ReadCorruptFileNamesPath) {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  write_bytes(path, {1, 2, 3});
  EXPECT_THAT(message_of<ModelFormatError>([&] { read_safetensors_file(path); }),
              HasSubstr(path + ": expected at least 8 bytes"));
}

}  // namespace
}  // namespace nanomlp

namespace nanomlp {
namespace {

// Hostile headers found by fuzzing (the hardening issue): each used to crash, or to fail with the
// JSON library's own words, naming neither the file nor what was expected.
std::string nested(std::size_t depth, const std::string& inner) {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(SafeTensorsHostile, ShapeNested90000DeepIsRefusedWithoutRecursion) {
  // 180 KB of brackets: the error message used to dump() the shape, which recursed until the
  // stack ran out (SIGSEGV in info, eval, predict, serve and --resume).
  const std::string msg = parse_error(make_file(
      R"({"t":{"dtype":"F32","shape":)" + nested(90000, "") + R"(,"data_offsets":[0,0]}})", {}));
  EXPECT_THAT(msg, HasSubstr("model.st: corrupt header: expected JSON, nested more than"));
}

TEST(SafeTensorsHostile, NestedMetadataAndOffsetsAreRefused) {
  EXPECT_THAT(parse_error(make_file(R"({"__metadata__":{"k":)" + nested(50000, "1") + "}}", {})),
              HasSubstr("nested more than"));
  EXPECT_THAT(
      parse_error(make_file(
          R"({"t":{"dtype":"F32","shape":[],"data_offsets":)" + nested(50000, "0") + "}}", {})),
      HasSubstr("nested more than"));
  // Shallow nesting is described by its size, not dumped.
  EXPECT_THAT(
      parse_error(
          make_file(R"({"t":{"dtype":"F32","shape":[[1,2]],"data_offsets":[0,4]}})", Bytes(4))),
      HasSubstr("tensor 't': shape: expected an array of non-negative integers, found an element: "
                "array of 2 elements"));
  EXPECT_THAT(parse_error(make_file(R"({"__metadata__":{"k":{"a":[1]}}})", {})),
              HasSubstr("key 'k': expected a string value, found object of 1 key"));
}

TEST(SafeTensorsHostile, NumberOverflowNamesTheFile) {
  const std::string msg = parse_error(
      make_file(R"({"t":{"dtype":"F32","shape":[1e309],"data_offsets":[0,4]}})", Bytes(4)));
  EXPECT_THAT(msg, HasSubstr("model.st: corrupt header: expected JSON, number overflow"));
  EXPECT_THAT(msg, Not(HasSubstr("json.exception")));
}

TEST(SafeTensorsHostile, BytesThatAreNotUtf8AreShownAsQuestionMarks) {
  const std::string name = "w\xff\xfe";
  const std::string msg = parse_error(
      make_file("{\"" + name + R"(":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", Bytes(4)));
  EXPECT_THAT(msg, HasSubstr("model.st: corrupt header: expected JSON"));
  EXPECT_THAT(msg, HasSubstr("ill-formed UTF-8"));
  for (const char c : msg) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << msg;
  for (const char c : msg) EXPECT_LT(static_cast<unsigned char>(c), 0x7f) << msg;
}

}  // namespace
}  // namespace nanomlp

// .npy (numpy.lib.format 1.0): magic, version 1.0, header length 118 (little-endian), the dict
// padded with spaces so that 10 + 118 = 128 is a multiple of 64, then the values as '<f4'.
TEST(Npy, WritesVersionOneHeaderPaddedToSixtyFourAndRowMajorValues) {
  const float values[6] = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, 0.25f};  // (2, 3)
  const std::string bytes = nanomlp::npy_f32(values, 2, 3);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  ASSERT_EQ(bytes.size(), 128u + 6 * 4);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], '\x01');
  EXPECT_EQ(bytes[7], '\x00');
  EXPECT_EQ(static_cast<unsigned char>(bytes[8]), 118u);
  EXPECT_EQ(bytes[9], '\x00');
  EXPECT_EQ(bytes.substr(10, dict.size()), dict);
  EXPECT_EQ(bytes.substr(10 + dict.size(), 118 - dict.size() - 1),
            std::string(118 - dict.size() - 1, ' '));
  EXPECT_EQ(bytes[127], '\n');
  float back[6];
  std::memcpy(back, bytes.data() + 128, sizeof back);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(back[i], values[i]) << i;
}

TEST(Npy, LongShapeStillPadsToSixtyFour) {
  const std::string bytes = nanomlp::npy_f32(nullptr, 1234567890, 0);
  const auto len = static_cast<std::size_t>(static_cast<unsigned char>(bytes[8])) |
                   static_cast<std::size_t>(static_cast<unsigned char>(bytes[9])) << 8;
  EXPECT_EQ((10 + len) % 64, 0u);
  EXPECT_EQ(bytes.size(), 10 + len);
  EXPECT_NE(bytes.find("'shape': (1234567890, 0)"), std::string::npos);
}
