// End-to-end tests of the nanomlp binary: help, usage errors (exit 2), runtime errors (exit 1),
// the success path on a small synthetic dataset, determinism, and one full run on real MNIST.
//
// Every failing run must print exactly one line, "nanomlp: error: ...", naming the flag or file,
// and must leave no model file behind.
//
// Tests that document a program bug carry a comment starting with "BUG:".
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <string>
#include <vector>

#include "nanomlp/core/version.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

namespace fs = std::filesystem;
using testing::append_be32;
using testing::CommandResult;
using testing::gzip_bytes;
using testing::header_length;
using testing::read_bytes;
using testing::real_data_root;
using testing::run_command;
using testing::TempDir;
using testing::tensor_data;
using testing::write_bytes;
using Bytes = std::vector<unsigned char>;
using Json = nlohmann::json;

constexpr std::size_t kTrainCount = 200;
constexpr std::size_t kTestCount = 50;
constexpr std::size_t kPixels = 28 * 28;

// Every run uses two threads (the determinism test also checks one).
constexpr const char* kTwoThreads = "--threads 2";

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Runs the binary under `timeout`, so that a hang fails the test (exit code 124) instead of
// stalling the whole suite. A run on the synthetic data takes well under a second.
CommandResult run_cli(const std::string& args, int timeout_seconds = 30) {
  return run_command("timeout -k 5 " + std::to_string(timeout_seconds) + " " +
                     quote(NANOMLP_BINARY) + " " + args);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The output for a failure message, cut short when a runaway run printed a lot.
std::string excerpt(const std::string& output) {
  constexpr std::size_t kMax = 2000;
  if (output.size() <= kMax) return output;
  return output.substr(0, kMax) + "\n... (" + std::to_string(output.size() - kMax) + " more bytes)";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The run failed with `exit_code` and printed exactly one line, an error naming every `needle`.
void expect_one_error_line(const CommandResult& r, int exit_code,
                           std::initializer_list<std::string> needles) {
  EXPECT_EQ(r.exit_code, exit_code) << excerpt(r.output);
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_EQ(lines.size(), 1u) << "expected exactly one line of output, got:\n" << excerpt(r.output);
  EXPECT_EQ(lines[0].rfind("nanomlp: error: ", 0), 0u) << lines[0];
  for (const std::string& needle : needles) {
    EXPECT_TRUE(contains(lines[0], needle)) << "expected '" << needle << "' in: " << lines[0];
  }
}

// Neither the model file nor a temporary file of the atomic writer was left behind.
void expect_no_model(const std::string& out) {
  EXPECT_FALSE(fs::exists(out)) << out << " was written";
  const fs::path parent = fs::path(out).parent_path();
  if (!fs::is_directory(parent)) return;
  const std::string stem = fs::path(out).filename().string();
  for (const auto& entry : fs::directory_iterator(parent)) {
    EXPECT_NE(entry.path().filename().string().rfind(stem, 0), 0u)
        << "leftover file " << entry.path();
  }
}

// --- synthetic MNIST-format data -------------------------------------------------------------

unsigned char label_of(std::size_t i) {
  return static_cast<unsigned char>(i % 10);
}

// Image i: faint noise plus two bright rows whose position encodes label i % 10, so a small
// network learns it within a couple of epochs.
Bytes idx_images(std::size_t count, std::uint32_t seed, std::uint32_t rows = 28,
                 std::uint32_t cols = 28, std::uint32_t magic = 0x00000803,
                 std::uint64_t claimed_count = ~std::uint64_t{0}) {
  Bytes out;
  append_be32(out, magic);
  append_be32(
      out, static_cast<std::uint32_t>(claimed_count == ~std::uint64_t{0} ? count : claimed_count));
  append_be32(out, rows);
  append_be32(out, cols);
  std::mt19937 gen(seed);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t bright = 4 + 2 * std::size_t{label_of(i)};
    for (std::size_t r = 0; r < rows; ++r) {
      for (std::size_t c = 0; c < cols; ++c) {
        const bool on = r == bright || r == bright + 1;
        out.push_back(static_cast<unsigned char>(on ? 200 + gen() % 56 : gen() % 40));
      }
    }
  }
  return out;
}

Bytes idx_labels(std::size_t count) {
  Bytes out;
  append_be32(out, 0x00000801);
  append_be32(out, static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) out.push_back(label_of(i));
  return out;
}

// ROOT/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte: 200 train and 50 test images.
struct SyntheticData {
  TempDir dir;
  std::string root = dir.file("data");
  std::string mnist = root + "/mnist";
  std::string train_images = mnist + "/train-images-idx3-ubyte";
  std::string train_labels = mnist + "/train-labels-idx1-ubyte";
  std::string test_images = mnist + "/t10k-images-idx3-ubyte";
  std::string test_labels = mnist + "/t10k-labels-idx1-ubyte";

  SyntheticData() {
    fs::create_directories(mnist);
    write_bytes(train_images, idx_images(kTrainCount, 1));
    write_bytes(train_labels, idx_labels(kTrainCount));
    write_bytes(test_images, idx_images(kTestCount, 2));
    write_bytes(test_labels, idx_labels(kTestCount));
  }
  std::string out(const std::string& name = "model.safetensors") const { return dir.file(name); }
};

// The quick training run of the success-path tests.
std::string quick_train_args(const SyntheticData& data, const std::string& out,
                             const std::string& extra = "") {
  return "train --data " + quote(data.root) + " --hidden 16 --epochs 2 --batch-size 32 --out " +
         quote(out) + " " + extra;
}

// --- safetensors helpers ----------------------------------------------------------------------

Json header_json(const Bytes& file) {
  const std::uint64_t n = header_length(file);
  EXPECT_LE(8 + n, file.size());
  return Json::parse(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
}

// Replaces the header of a safetensors file, keeping its tensor data and re-padding to 8 bytes.
Bytes with_header(const Bytes& file, const nlohmann::ordered_json& header) {
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  Bytes out;
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  const Bytes data = tensor_data(file);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

Json read_json_file(const std::string& path) {
  const Bytes bytes = read_bytes(path);
  return Json::parse(bytes.begin(), bytes.end());
}

std::string require_real_data() {
  const std::string root = real_data_root();
  if (root.empty()) {
    ADD_FAILURE() << "real MNIST data not found: set NANOMLP_DATA to a folder holding "
                     "mnist/train-images-idx3-ubyte.gz (e.g. NANOMLP_DATA=/work/shared/data)";
  }
  return root;
}

// --- help -------------------------------------------------------------------------------------

TEST(CliHelp, TopLevelHelpListsSubcommands) {
  const CommandResult r = run_cli("--help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* word : {"train", "eval", "--help", "--version"}) {
    EXPECT_TRUE(contains(r.output, word)) << word << " missing from:\n" << r.output;
  }
}

TEST(CliHelp, TrainHelpListsKeyFlags) {
  const CommandResult r = run_cli("train --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* flag : {"--data", "--hidden", "--activation", "--dropout", "--epochs",
                           "--batch-size", "--lr", "--optimizer", "--schedule", "--val-split",
                           "--seed", "--threads", "--out", "--metrics-json"}) {
    EXPECT_TRUE(contains(r.output, flag)) << flag << " missing from:\n" << r.output;
  }
}

TEST(CliHelp, EvalHelpListsKeyFlags) {
  const CommandResult r = run_cli("eval --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* flag : {"--model", "--data", "--json", "--threads"}) {
    EXPECT_TRUE(contains(r.output, flag)) << flag << " missing from:\n" << r.output;
  }
}

// The `--flag` names in text: "--", a lowercase letter, then letters, digits and dashes.
std::vector<std::string> flags_in(const std::string& text) {
  const auto flag_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  };
  std::vector<std::string> flags;
  for (std::size_t pos = text.find("--"); pos != std::string::npos; pos = text.find("--", pos)) {
    std::size_t end = pos + 2;
    if (end >= text.size() || text[end] < 'a' || text[end] > 'z') {
      pos = end;
      continue;
    }
    while (end < text.size() && flag_char(text[end])) ++end;
    const std::string flag = text.substr(pos, end - pos);
    if (std::find(flags.begin(), flags.end(), flag) == flags.end()) flags.push_back(flag);
    pos = end;
  }
  return flags;
}

// Whether text names flag itself, not only a longer flag it begins ("--data" in "--data-dir").
bool names_flag(const std::string& text, const std::string& flag) {
  for (std::size_t pos = text.find(flag); pos != std::string::npos;
       pos = text.find(flag, pos + 1)) {
    const std::size_t end = pos + flag.size();
    const char next = end < text.size() ? text[end] : ' ';
    if (!((next >= 'a' && next <= 'z') || (next >= '0' && next <= '9') || next == '-')) return true;
  }
  return false;
}

// README.md's "Command-line reference" section.
std::string readme_reference() {
  const Bytes bytes = read_bytes(std::string(NANOMLP_SOURCE_DIR) + "/README.md");
  const std::string readme(bytes.begin(), bytes.end());
  const std::size_t begin = readme.find("\n## Command-line reference\n");
  if (begin == std::string::npos) return {};
  return readme.substr(begin, readme.find("\n## ", begin + 1) - begin);
}

// The lines of the reference about one subcommand: its synopsis ("nanomlp SUB ..." and the
// indented lines after it) and its bullet ("- **SUB** ..." and the lines after it), each up to
// the next synopsis line, bullet, code fence or blank line.
std::string reference_entry(const std::string& reference, const std::string& sub) {
  std::string entry;
  bool inside = false;
  for (const std::string& line : lines_of(reference)) {
    if (line.empty() || line.rfind("nanomlp ", 0) == 0 || line.rfind("- **", 0) == 0 ||
        line.rfind("```", 0) == 0) {
      inside =
          line.rfind("nanomlp " + sub + " ", 0) == 0 || line.rfind("- **" + sub + "**", 0) == 0;
    }
    if (inside) entry += line + "\n";
  }
  return entry;
}

// The subcommands `nanomlp --help` lists under "Subcommands:".
std::vector<std::string> subcommands_in(const std::string& help) {
  std::vector<std::string> names;
  bool listed = false;
  for (const std::string& line : lines_of(help)) {
    if (line == "Subcommands:") {
      listed = true;
    } else if (listed && line.size() > 2 && line.rfind("  ", 0) == 0) {
      names.push_back(line.substr(2, line.find(' ', 2) - 2));
    } else {
      listed = false;
    }
  }
  return names;
}

// Every flag a --help prints is in the README's reference: the top level's (--help, --version)
// anywhere in it, each subcommand's in that subcommand's synopsis or bullet, so that a flag
// added to one command and documented for another does not pass.
TEST(CliHelp, ReadmeReferenceNamesEveryFlagOfEveryHelp) {
  const std::string reference = readme_reference();
  ASSERT_FALSE(reference.empty()) << "no \"## Command-line reference\" in README.md";
  const CommandResult top = run_cli("--help");
  ASSERT_EQ(top.exit_code, 0) << top.output;
  const std::vector<std::string> common = flags_in(top.output);
  EXPECT_TRUE(std::find(common.begin(), common.end(), "--version") != common.end()) << top.output;
  for (const std::string& flag : common) {
    EXPECT_TRUE(names_flag(reference, flag)) << "README's reference does not name " << flag;
  }
  const std::vector<std::string> subcommands = subcommands_in(top.output);
  EXPECT_EQ(subcommands.size(), 8u) << top.output;
  for (const std::string& sub : subcommands) {
    SCOPED_TRACE("nanomlp " + sub + " --help");
    const CommandResult r = run_cli(sub + " --help");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string entry = reference_entry(reference, sub);
    EXPECT_FALSE(entry.empty()) << "README's reference has no synopsis or bullet for " << sub;
    std::size_t checked = 0;
    for (const std::string& flag : flags_in(r.output)) {
      // --help: every subcommand has it, and the reference says so once.
      if (std::find(common.begin(), common.end(), flag) != common.end()) continue;
      ++checked;
      EXPECT_TRUE(names_flag(entry, flag))
          << "README's reference for " << sub << " does not name " << flag << "; it has:\n"
          << entry;
    }
    EXPECT_GT(checked, 0u) << r.output;
  }
}

TEST(CliHelp, VersionPrintsVersion) {
  const CommandResult r = run_cli("--version");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "nanomlp 0.1.0")) << r.output;
}

// --- usage errors: exit 2 ---------------------------------------------------------------------

class CliUsageError : public ::testing::Test {
 protected:
  // Runs `train` on valid synthetic data with `flags`, so that a missing check would train and
  // write a model instead of failing.
  CommandResult train(const std::string& flags, int timeout_seconds = 30) {
    return run_cli("train --data " + quote(data_.root) + " " + kTwoThreads + " --out " +
                       quote(out_) + " " + flags,
                   timeout_seconds);
  }
  void expect_usage_error(const std::string& flags, std::initializer_list<std::string> needles,
                          int timeout_seconds = 30) {
    SCOPED_TRACE("flags: " + flags);
    expect_one_error_line(train(flags, timeout_seconds), 2, needles);
    expect_no_model(out_);
  }

  SyntheticData data_;
  std::string out_ = data_.out();
};

TEST_F(CliUsageError, ZeroEpochs) {
  expect_usage_error("--epochs 0", {"--epochs"});
}

TEST_F(CliUsageError, ZeroBatchSize) {
  expect_usage_error("--batch-size 0", {"--batch-size"});
}

TEST_F(CliUsageError, NegativeLearningRate) {
  expect_usage_error("--lr -1", {"--lr", "-1"});
}

TEST_F(CliUsageError, NonNumericLearningRate) {
  expect_usage_error("--lr abc", {"--lr", "abc"});
}

// BUG (this test and the next two): in apps/nanomlp/cmd_train.cpp, add_train() binds --epochs,
// --batch-size, --val-split (likewise --early-stop, --step-epochs) to std::size_t fields with no
// check, and CLI11 2.1.2 converts "-1" to 18446744073709551615 instead of rejecting it.
// `--epochs -1` then trains "18446744073709551615 epochs" until killed (exit code 124 here),
// `--batch-size -1` exits 1 with "cannot create std::vector larger than max_size()" (no flag
// named, wrong exit code), and `--val-split -1` reports "got 18446744073709551615". Expected:
// exit 2 with one line naming the flag and the value given, e.g. "--epochs: expected a positive
// integer, got -1" (add ->check(CLI::NonNegativeNumber) / CLI::PositiveNumber, or parse as a
// signed value and validate).
TEST_F(CliUsageError, NegativeEpochs) {
  expect_usage_error("--epochs -1", {"--epochs", "-1"}, 3);
}

TEST_F(CliUsageError, NegativeBatchSize) {
  expect_usage_error("--batch-size -1", {"--batch-size", "-1"});
}

TEST_F(CliUsageError, NegativeValSplit) {
  expect_usage_error("--val-split -1", {"--val-split", "-1"});
}

TEST_F(CliUsageError, OutputFolderDoesNotExist) {
  const std::string out = "/nonexistent-dir/x.safetensors";
  const CommandResult r =
      run_cli("train --data " + quote(data_.root) + " " + kTwoThreads + " --out " + out);
  expect_one_error_line(r, 2, {"--out", "/nonexistent-dir"});
  expect_no_model(out);
  expect_no_model(out_);
}

TEST_F(CliUsageError, MetricsFolderDoesNotExist) {
  expect_usage_error("--metrics-json /nonexistent-dir/m.json",
                     {"--metrics-json", "/nonexistent-dir"});
}

// BUG: apps/nanomlp/main.cpp, app.require_subcommand(1) and the CLI::ParseError handler in
// main(): `nanomlp frobnicate` prints "A subcommand is required (see nanomlp --help)",
// which neither names the word the user typed nor lists the subcommands (CLI11 raises its
// RequiredError for the missing subcommand before the ExtrasError for 'frobnicate'). Expected:
// one line naming it, e.g. "unknown subcommand 'frobnicate' (expected one of: train, eval)".
TEST_F(CliUsageError, UnknownSubcommand) {
  const CommandResult r = run_cli("frobnicate --out " + quote(out_));
  expect_one_error_line(r, 2, {"frobnicate"});
  expect_no_model(out_);
}

TEST_F(CliUsageError, MissingSubcommand) {
  const CommandResult r = run_cli("");
  expect_one_error_line(r, 2, {"subcommand"});
}

TEST_F(CliUsageError, UnexpectedPositionalArgument) {
  expect_usage_error("frobnicate", {"frobnicate"});
}

TEST_F(CliUsageError, UnknownFlag) {
  expect_usage_error("--frobnicate 3", {"--frobnicate"});
}

TEST_F(CliUsageError, HiddenWidthZero) {
  expect_usage_error("--hidden 128,0", {"--hidden"});
}

TEST_F(CliUsageError, HiddenNotANumber) {
  expect_usage_error("--hidden abc", {"--hidden", "abc"});
}

TEST_F(CliUsageError, HiddenTrailingComma) {
  expect_usage_error("--hidden 16,", {"--hidden"});
}

TEST_F(CliUsageError, DropoutAboveOne) {
  expect_usage_error("--dropout 1.5", {"--dropout"});
}

TEST_F(CliUsageError, UnknownOptimizerListsValidNames) {
  expect_usage_error("--optimizer foo", {"--optimizer", "foo", "sgd", "adam", "adamw", "rmsprop"});
}

TEST_F(CliUsageError, UnknownScheduleListsValidNames) {
  expect_usage_error("--schedule foo", {"--schedule", "foo", "constant", "step", "cosine"});
}

TEST_F(CliUsageError, UnknownActivationListsValidNames) {
  expect_usage_error("--activation foo", {"--activation", "foo", "relu", "tanh"});
}

TEST_F(CliUsageError, UnknownDataset) {
  expect_usage_error("--dataset foo", {"--dataset", "foo"});
}

// --- numeric flags of train: ranges and combinations, checked before anything runs -------------

// One rejected command line: the flags, then what its one error line must name (the flag, the
// value given or the other flag of the combination).
struct RejectedFlags {
  const char* flags;
  std::initializer_list<std::string> needles;
};

const RejectedFlags kRejectedFlags[] = {
    // --lr: finite > 0
    {"--lr nan", {"--lr", "nan"}},
    {"--lr inf", {"--lr", "inf"}},
    {"--lr 0", {"--lr", "got 0"}},
    // --momentum: [0, 1)
    {"--momentum 1.5", {"--momentum", "[0, 1)", "1.5"}},
    {"--momentum 1", {"--momentum", "[0, 1)", "got 1"}},
    {"--momentum -0.1", {"--momentum", "-0.1"}},
    {"--momentum nan", {"--momentum", "nan"}},
    // --weight-decay: finite >= 0
    {"--weight-decay inf", {"--weight-decay", ">= 0", "inf"}},
    {"--weight-decay -1", {"--weight-decay", ">= 0", "-1"}},
    {"--weight-decay nan", {"--weight-decay", "nan"}},
    // --clip-grad-norm: finite > 0
    {"--clip-grad-norm nan", {"--clip-grad-norm", "positive", "nan"}},
    {"--clip-grad-norm 0", {"--clip-grad-norm", "positive", "got 0"}},
    {"--clip-grad-norm -1", {"--clip-grad-norm", "-1"}},
    {"--clip-grad-norm inf", {"--clip-grad-norm", "inf"}},
    // --gamma: (0, 1]
    {"--schedule step --gamma nan", {"--gamma", "(0, 1]", "nan"}},
    {"--schedule step --gamma 0", {"--gamma", "(0, 1]", "got 0"}},
    {"--schedule step --gamma 1.5", {"--gamma", "1.5"}},
    {"--schedule step --gamma -0.5", {"--gamma", "-0.5"}},
    // --step-epochs: >= 1
    {"--schedule step --step-epochs 0", {"--step-epochs", "positive", "got 0"}},
    {"--schedule step --step-epochs -1", {"--step-epochs", "-1"}},
    // --min-lr: finite >= 0
    {"--schedule cosine --min-lr -1", {"--min-lr", ">= 0", "-1"}},
    {"--schedule cosine --min-lr nan", {"--min-lr", "nan"}},
    {"--schedule cosine --min-lr inf", {"--min-lr", "inf"}},
    // --label-smoothing: [0, 1)
    {"--label-smoothing 1", {"--label-smoothing", "[0, 1)", "got 1"}},
    {"--label-smoothing -0.1", {"--label-smoothing", "-0.1"}},
    {"--label-smoothing nan", {"--label-smoothing", "nan"}},
    // --dropout: [0, 1)
    {"--dropout 1", {"--dropout", "[0, 1)", "got 1"}},
    {"--dropout -0.1", {"--dropout", "-0.1"}},
    {"--dropout nan", {"--dropout", "nan"}},
    // --warmup-epochs: finite, from 0 to --epochs
    {"--schedule cosine --warmup-epochs -1", {"--warmup-epochs", "-1"}},
    {"--schedule cosine --warmup-epochs nan", {"--warmup-epochs", "nan"}},
    {"--schedule cosine --warmup-epochs inf", {"--warmup-epochs", "inf"}},
    {"--schedule cosine --epochs 2 --warmup-epochs 3", {"--warmup-epochs", "--epochs", "got 3"}},
    // --threads: 1 to 256 when given (CLI11's Range)
    {"--threads 0", {"--threads", "Value 0 not in range 1 to 256"}},
    {"--threads -1", {"--threads", "Value -1 not in range 1 to 256"}},
    {"--threads 257", {"--threads", "Value 257 not in range 1 to 256"}},
    {"--threads 99999999999", {"--threads", "not in range 1 to 256"}},
    // --epochs, --batch-size: >= 1
    {"--epochs 0", {"--epochs", "got 0"}},
    {"--batch-size 0", {"--batch-size", "got 0"}},
    // flags the optimizer ignores
    {"--optimizer adam --momentum 0.9", {"--momentum", "sgd and rmsprop", "--optimizer adam"}},
    {"--optimizer adamw --momentum 0", {"--momentum", "--optimizer adamw"}},
    {"--optimizer rmsprop --momentum 0.9 --nesterov", {"--nesterov", "--optimizer rmsprop"}},
    {"--optimizer adam --nesterov", {"--nesterov", "--optimizer adam"}},
    // flags the schedule ignores (given, or the preset's)
    {"--schedule cosine --gamma 0.5", {"--gamma", "--schedule step", "--schedule cosine"}},
    {"--gamma 0.5", {"--gamma", "--schedule cosine", "default preset"}},
    {"--preset seed --step-epochs 2", {"--step-epochs", "--schedule constant", "seed preset"}},
    {"--schedule step --min-lr 0.001", {"--min-lr", "--schedule cosine", "--schedule step"}},
    {"--schedule onecycle --warmup-epochs 1", {"--warmup-epochs", "--schedule onecycle"}},
    {"--preset seed --warmup-epochs 1", {"--warmup-epochs", "--schedule constant"}},
    // a network that cannot fit in memory (1e14 parameters)
    {"--hidden 9999999,9999999", {"--hidden", "bytes", "784-9999999-9999999-10"}},
};

// Every case fails with exit code 2 and one line before the data is read: the data folder
// does not exist, so a check made after loading would fail with the data error (exit 1), one
// missing altogether would too, and neither writes the model file.
TEST(CliTrainFlags, RejectsEveryOutOfRangeValueAndIgnoredFlagBeforeLoadingData) {
  TempDir dir;
  const std::string missing_data = dir.file("no-such-data");
  const std::string out = dir.file("model.safetensors");
  // The baseline: without a bad flag the same command gets as far as the data.
  const CommandResult control =
      run_cli("train --data " + quote(missing_data) + " --out " + quote(out));
  EXPECT_EQ(control.exit_code, 1) << control.output;
  EXPECT_TRUE(contains(control.output, "no-such-data")) << control.output;
  for (const RejectedFlags& c : kRejectedFlags) {
    SCOPED_TRACE(std::string("flags: ") + c.flags);
    const CommandResult r =
        run_cli("train --data " + quote(missing_data) + " --out " + quote(out) + " " + c.flags);
    expect_one_error_line(r, 2, c.needles);
    expect_no_model(out);
  }
}

// eval, predict and report check --threads while parsing, as train does: with a model file that
// does not exist, a value let through would fail on the model instead (exit 1). The largest
// value is accepted and gets as far as the model.
TEST(CliThreads, EvalPredictAndReportRejectOutOfRangeThreadsBeforeReadingTheModel) {
  TempDir dir;
  const std::string model = quote(dir.file("no-such-model.safetensors"));
  const std::vector<std::string> commands = {
      "eval --model " + model, "predict --model " + model + " " + quote(dir.file("digit.png")),
      "report --model " + model + " --metrics-json " + quote(dir.file("no-such-metrics.json")) +
          " --out " + quote(dir.file("r.html"))};
  for (const std::string& command : commands) {
    for (const char* value : {"0", "-1", "257", "99999999999"}) {
      SCOPED_TRACE(command + " --threads " + value);
      expect_one_error_line(run_cli(command + " --threads " + value), 2,
                            {"--threads", "Value " + std::string(value), "not in range 1 to 256"});
    }
    SCOPED_TRACE(command + " --threads 256");
    const CommandResult edge = run_cli(command + " --threads 256");
    EXPECT_NE(edge.exit_code, 2) << edge.output;
    EXPECT_TRUE(contains(edge.output, "no-such")) << edge.output;
  }
}

// An output that cannot be written is reported before the data is read, not after training:
// /sys refuses new files even to root.
TEST(CliTrainFlags, UnwritableOutputsAreRefusedBeforeLoadingData) {
  TempDir dir;
  const std::string missing_data = dir.file("no-such-data");
  const std::string good = dir.file("model.safetensors");
  for (const std::string flag : {"--out", "--metrics-json", "--report"}) {
    SCOPED_TRACE(flag);
    const std::string args = flag == "--out" ? " --out /sys/model.safetensors"
                                             : " --out " + quote(good) + " " + flag + " /sys/x";
    const CommandResult r = run_cli("train --data " + quote(missing_data) + args);
    expect_one_error_line(r, 1, {flag + ": cannot write /sys/", "(folder /sys)"});
    expect_no_model(good);
  }
}

// The edges of every range are accepted, and a preset's own values do not count as flags the
// chosen optimizer or schedule ignores (the default preset's momentum 0.9 and warm-up ride along
// with --optimizer adam and --schedule step). A batch larger than the training set is the whole
// set (it used to end in std::bad_alloc).
TEST(CliTrainFlags, AcceptsTheEdgesOfEveryRangeAndPresetValues) {
  SyntheticData data;
  const std::string out = data.out();
  for (const char* flags :
       {"--threads 1 --momentum 0 --weight-decay 0 --label-smoothing 0 --dropout 0 "
        "--clip-grad-norm 1e-3 --schedule step --gamma 1 --step-epochs 1",
        "--threads 2 --optimizer rmsprop --lr 1e-3 --momentum 0.5 --schedule cosine "
        "--warmup-epochs 2 --min-lr 0",
        "--threads 2 --optimizer sgd --momentum 0.9 --nesterov --schedule cosine "
        "--warmup-epochs 0 --min-lr 1e-4",
        "--threads 2 --optimizer adam --schedule step", "--threads 2 --preset seed --lr 0.05"}) {
    SCOPED_TRACE(std::string("flags: ") + flags);
    fs::remove(out);
    const CommandResult r = run_cli(quick_train_args(data, out, flags));
    EXPECT_EQ(r.exit_code, 0) << excerpt(r.output);
    EXPECT_TRUE(fs::exists(out));
  }
  fs::remove(out);
  const CommandResult r = run_cli("train --data " + quote(data.root) +
                                  " --threads 2 --hidden 16 --epochs 1 --batch-size 999999999999 "
                                  "--out " +
                                  quote(out));
  EXPECT_EQ(r.exit_code, 0) << excerpt(r.output);
  EXPECT_TRUE(fs::exists(out));
}

TEST_F(CliUsageError, EvalWithoutModel) {
  expect_one_error_line(run_cli("eval --data " + quote(data_.root)), 2, {"--model"});
}

// --val-split can only be checked once the training set is loaded: run_train() calls
// TrainOptions::validate right after load_dataset(), before it prints anything, so the usage
// error is the only line of output.
TEST(CliUsageErrorRealData, ValSplitNotSmallerThanTrainingSet) {
  const std::string root = require_real_data();
  ASSERT_FALSE(root.empty());
  TempDir dir;
  const std::string out = dir.file("model.safetensors");
  const CommandResult r = run_cli(
      "train --data " + quote(root) + " " + kTwoThreads + " --val-split 60000 --out " + quote(out),
      120);
  expect_one_error_line(r, 2, {"--val-split", "60000"});
  expect_no_model(out);
}

// --- runtime errors: exit 1 -------------------------------------------------------------------

class CliDataError : public ::testing::Test {
 protected:
  CommandResult train() {
    return run_cli("train --data " + quote(data_.root) + " " + kTwoThreads +
                   " --hidden 16 --epochs 1 --out " + quote(out_));
  }
  void expect_data_error(std::initializer_list<std::string> needles) {
    expect_one_error_line(train(), 1, needles);
    expect_no_model(out_);
  }
  // Replaces the raw train images by a .gz file holding `bytes`.
  std::string replace_train_images_with_gz(const Bytes& bytes) {
    fs::remove(data_.train_images);
    const std::string gz = data_.train_images + ".gz";
    write_bytes(gz, bytes);
    return gz;
  }

  SyntheticData data_;
  std::string out_ = data_.out();
};

TEST_F(CliDataError, ControlValidSyntheticDataTrains) {
  // The baseline every variant below breaks: the same command succeeds on intact data.
  const CommandResult r = train();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out_));
}

TEST_F(CliDataError, ControlGzippedSyntheticDataTrains) {
  // Proves the gzip writer used for the truncated-stream test below produces valid files.
  for (const std::string& path :
       {data_.train_images, data_.train_labels, data_.test_images, data_.test_labels}) {
    write_bytes(path + ".gz", gzip_bytes(read_bytes(path)));
    fs::remove(path);
  }
  const CommandResult r = train();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "200 train, 50 test images")) << r.output;
}

TEST_F(CliDataError, MissingDataFolder) {
  const std::string missing = data_.dir.file("no-such-data");
  const CommandResult r =
      run_cli("train --data " + quote(missing) + " " + kTwoThreads + " --out " + quote(out_));
  expect_one_error_line(r, 1, {missing, "nanomlp download"});
  expect_no_model(out_);
}

TEST_F(CliDataError, MissingDatasetSubfolder) {
  fs::remove_all(data_.mnist);
  expect_data_error({data_.mnist, "nanomlp download"});
}

TEST_F(CliDataError, MissingTestLabelsFile) {
  fs::remove(data_.test_labels);
  expect_data_error({data_.test_labels, "nanomlp download"});
}

TEST_F(CliDataError, TruncatedGzip) {
  const Bytes gz = gzip_bytes(read_bytes(data_.train_images));
  const std::string path =
      replace_train_images_with_gz(Bytes(gz.begin(), gz.begin() + gz.size() / 2));
  expect_data_error({path, "truncated"});
}

TEST_F(CliDataError, GzFileThatIsNotGzip) {
  const std::string text = "this is not a gzip file, just some text\n";
  const std::string path = replace_train_images_with_gz(Bytes(text.begin(), text.end()));
  expect_data_error({path, "magic"});
}

TEST_F(CliDataError, WrongMagicNumber) {
  write_bytes(data_.train_images, idx_images(kTrainCount, 1, 28, 28, 0x00000804));
  expect_data_error({data_.train_images, "0x00000804", "0x00000803"});
}

TEST_F(CliDataError, ImageAndLabelFilesSwapped) {
  write_bytes(data_.test_images, idx_labels(kTestCount));
  expect_data_error({data_.test_images, "magic"});
}

TEST_F(CliDataError, WrongImageDimensions) {
  write_bytes(data_.train_images, idx_images(kTrainCount, 1, 32, 32));
  expect_data_error({data_.train_images, "32x32", "28x28"});
}

TEST_F(CliDataError, HeaderClaimsTwoBillionImages) {
  write_bytes(data_.train_images,
              idx_images(kTrainCount, 1, 28, 28, 0x00000803, std::uint64_t{1} << 31));
  expect_data_error({data_.train_images, "2147483648"});
}

TEST_F(CliDataError, ImageFileTruncated) {
  Bytes images = idx_images(kTrainCount, 1);
  images.resize(images.size() - kPixels / 2);
  write_bytes(data_.train_images, images);
  expect_data_error({data_.train_images, "truncated"});
}

TEST_F(CliDataError, ImageAndLabelCountsDiffer) {
  write_bytes(data_.train_labels, idx_labels(kTrainCount - 1));
  expect_data_error({data_.train_images, data_.train_labels, "200", "199"});
}

TEST_F(CliDataError, LabelOutOfRange) {
  Bytes labels = idx_labels(kTrainCount);
  labels[8 + 37] = 10;
  write_bytes(data_.train_labels, labels);
  expect_data_error({data_.train_labels, "label 10", "37"});
}

TEST_F(CliDataError, BadFileInTestSplit) {
  Bytes labels = idx_labels(kTestCount);
  labels[8 + 3] = 200;
  write_bytes(data_.test_labels, labels);
  expect_data_error({data_.test_labels, "200"});
}

TEST_F(CliDataError, TrainingDivergesWithHugeLearningRate) {
  const CommandResult r =
      run_cli(quick_train_args(data_, out_, std::string(kTwoThreads) + " --lr 1e6"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const std::vector<std::string> lines = lines_of(r.output);
  ASSERT_FALSE(lines.empty());
  const auto errors = std::count_if(lines.begin(), lines.end(), [](const std::string& l) {
    return l.rfind("nanomlp: error:", 0) == 0;
  });
  EXPECT_EQ(errors, 1) << r.output;
  const std::string& last = lines.back();
  EXPECT_EQ(last.rfind("nanomlp: error: ", 0), 0u) << r.output;
  EXPECT_TRUE(contains(last, "epoch 1")) << last;
  EXPECT_TRUE(contains(last, "step ")) << last;
  EXPECT_TRUE(contains(last, "lower learning rate")) << last;
  EXPECT_TRUE(contains(last, "--lr")) << last;
  expect_no_model(out_);
}

// Regression test for a thread-pool start race (found while writing this file; fixed in
// be35b4a): ThreadPool::worker_loop read the generation it waits on when the worker thread first
// ran, not when set_num_threads created it. If the process bumped the generation before the
// new thread got there (the pool's destructor at exit, or the first parallel GEMM), the worker
// waited forever: the process hung at exit in join(), or spun forever in run_impl(). A fast
// failure with --threads 2 (missing data, missing model) hung in about a quarter of the runs
// on a busy 2-core machine. The race is timing-dependent, so this repeats the run.
TEST(CliThreads, FastFailureWithTwoThreadsExitsPromptly) {
  TempDir dir;
  const std::string out = dir.file("model.safetensors");
  const std::string missing_data = dir.file("no-such-data");
  const std::string missing_model = dir.file("no-such-model.safetensors");
  // A run that does not hang takes 10-30 ms; with the bug, a quarter of them hung.
  constexpr int kRuns = 40;
  for (int i = 0; i < kRuns; ++i) {
    const bool train = i % 2 == 0;
    const std::string args =
        train ? "train --data " + quote(missing_data) + " " + kTwoThreads + " --out " + quote(out)
              : "eval --model " + quote(missing_model) + " --data " + quote(missing_data) + " " +
                    kTwoThreads;
    const CommandResult r = run_cli(args, 3);
    ASSERT_NE(r.exit_code, 124) << "run " << i + 1 << " of " << kRuns << " (nanomlp " << args
                                << ") hung after printing: " << r.output;
    expect_one_error_line(r, 1, {train ? missing_data : missing_model});
  }
  expect_no_model(out);
}

// --- eval on bad model files: exit 1 ----------------------------------------------------------

// A model trained on synthetic data, and eval of any model file on that data.
class TrainedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const CommandResult r = run_cli(quick_train_args(data_, model_, kTwoThreads));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    model_bytes_ = read_bytes(model_);
    ASSERT_GT(model_bytes_.size(), 8u);
  }
  CommandResult eval(const std::string& model) {
    return run_cli("eval --model " + quote(model) + " --data " + quote(data_.root) + " " +
                   kTwoThreads);
  }

  SyntheticData data_;
  std::string model_ = data_.out("model.safetensors");
  Bytes model_bytes_;
};

class CliEvalError : public TrainedModelTest {};

TEST_F(CliEvalError, ControlValidModelEvaluates) {
  const CommandResult r = eval(model_);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "accuracy")) << r.output;
}

// --probabilities: a .npy of (count, 10) float32 rows that sum to 1, whose argmax gives the
// accuracy eval reports (labels are i % 10).
TEST_F(CliEvalError, ProbabilitiesFileHoldsOneRowPerTestImage) {
  const std::string npy = data_.out("probabilities.npy");
  const CommandResult r = run_cli("eval --model " + quote(model_) + " --data " + quote(data_.root) +
                                  " " + kTwoThreads + " --json --probabilities " + quote(npy));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Bytes bytes = read_bytes(npy);
  const std::size_t header = 10 + (bytes[8] | static_cast<std::size_t>(bytes[9]) << 8);
  ASSERT_EQ(bytes.size(), header + kTestCount * 10 * sizeof(float));
  const std::string dict(bytes.begin() + 10, bytes.begin() + static_cast<std::ptrdiff_t>(header));
  EXPECT_TRUE(contains(dict, "'shape': (" + std::to_string(kTestCount) + ", 10)")) << dict;
  std::vector<float> p(kTestCount * 10);
  std::memcpy(p.data(), bytes.data() + header, p.size() * sizeof(float));
  std::size_t correct = 0;
  for (std::size_t i = 0; i < kTestCount; ++i) {
    const float* row = p.data() + i * 10;
    double sum = 0.0;
    for (int k = 0; k < 10; ++k) sum += row[k];
    EXPECT_NEAR(sum, 1.0, 1e-5) << "image " << i;
    correct += static_cast<std::size_t>(std::max_element(row, row + 10) - row) == i % 10;
  }
  const Json result = Json::parse(r.output);
  EXPECT_EQ(static_cast<double>(correct) / kTestCount, result["accuracy"].get<double>());
}

TEST_F(CliEvalError, ProbabilitiesIntoMissingFolderFailsWithOneLine) {
  const std::string npy = data_.out("no-such-folder/p.npy");
  expect_one_error_line(run_cli("eval --model " + quote(model_) + " --data " + quote(data_.root) +
                                " " + kTwoThreads + " --probabilities " + quote(npy)),
                        1, {npy});
  EXPECT_FALSE(std::filesystem::exists(data_.out("no-such-folder")));
}

TEST_F(CliEvalError, MissingModelFile) {
  const std::string missing = data_.out("missing.safetensors");
  expect_one_error_line(eval(missing), 1, {missing});
}

TEST_F(CliEvalError, TruncatedModelFile) {
  const std::string path = data_.out("truncated.safetensors");
  write_bytes(path, Bytes(model_bytes_.begin(), model_bytes_.begin() + model_bytes_.size() / 2));
  expect_one_error_line(eval(path), 1, {path, "truncated"});
}

TEST_F(CliEvalError, ModelFileShorterThanLengthPrefix) {
  const std::string path = data_.out("tiny.safetensors");
  write_bytes(path, Bytes(model_bytes_.begin(), model_bytes_.begin() + 5));
  expect_one_error_line(eval(path), 1, {path});
}

TEST_F(CliEvalError, CorruptHeader) {
  const std::string path = data_.out("corrupt.safetensors");
  Bytes bytes = model_bytes_;
  const unsigned char garbage[12] = {0xff, 0x00, '\n', '#',  0x7f, 'x',
                                     0x01, ']',  '}',  0xfe, 'q',  '\r'};
  std::copy(std::begin(garbage), std::end(garbage), bytes.begin() + 8);
  write_bytes(path, bytes);
  expect_one_error_line(eval(path), 1, {path, "header"});
}

TEST_F(CliEvalError, TensorShapeDoesNotMatchArchitecture) {
  nlohmann::ordered_json header = nlohmann::ordered_json::parse(
      model_bytes_.begin() + 8,
      model_bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(header_length(model_bytes_)));
  auto arch =
      nlohmann::ordered_json::parse(header["__metadata__"]["architecture"].get<std::string>());
  ASSERT_EQ(arch["hidden"], nlohmann::ordered_json::array({16}));
  arch["hidden"] = {17};
  header["__metadata__"]["architecture"] = arch.dump();
  const std::string path = data_.out("mismatch.safetensors");
  write_bytes(path, with_header(model_bytes_, header));
  expect_one_error_line(eval(path), 1, {path, "0.weight", "[17, 784]", "[16, 784]"});
}

TEST_F(CliEvalError, ControlRewrittenHeaderStillLoads) {
  // The same rewrite without the edit must load, so the mismatch above is what fails.
  const nlohmann::ordered_json header = nlohmann::ordered_json::parse(
      model_bytes_.begin() + 8,
      model_bytes_.begin() + 8 + static_cast<std::ptrdiff_t>(header_length(model_bytes_)));
  const std::string path = data_.out("rewritten.safetensors");
  write_bytes(path, with_header(model_bytes_, header));
  const CommandResult r = eval(path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// --- success path on synthetic data ------------------------------------------------------------

void expect_fraction(const Json& value, const std::string& what) {
  ASSERT_TRUE(value.is_number()) << what << " = " << value;
  EXPECT_GE(value.get<double>(), 0.0) << what;
  EXPECT_LE(value.get<double>(), 1.0) << what;
}

TEST(CliTrain, SyntheticTrainWritesMetricsAndModelThatEvalReproduces) {
  SyntheticData data;
  const std::string model = data.out("model.safetensors");
  const std::string metrics_path = data.out("metrics.json");
  const CommandResult r = run_cli(quick_train_args(
      data, model, std::string(kTwoThreads) + " --metrics-json " + quote(metrics_path)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_TRUE(fs::exists(model)) << r.output;
  ASSERT_TRUE(fs::exists(metrics_path)) << r.output;

  // Metrics JSON.
  const Json metrics = read_json_file(metrics_path);
  ASSERT_TRUE(metrics.contains("settings"));
  const Json& settings = metrics["settings"];
  EXPECT_EQ(settings["epochs"], 2);
  EXPECT_EQ(settings["batch_size"], 32);
  EXPECT_EQ(settings["threads"], 2);
  EXPECT_EQ(settings["architecture"]["hidden"], Json::array({16}));
  ASSERT_TRUE(metrics["epochs"].is_array());
  ASSERT_EQ(metrics["epochs"].size(), 2u);
  for (std::size_t e = 0; e < 2; ++e) {
    const Json& rec = metrics["epochs"][e];
    SCOPED_TRACE("epoch record " + rec.dump());
    EXPECT_EQ(rec["epoch"], e + 1);
    for (const char* key : {"train_loss", "test_loss", "seconds", "samples_per_second"}) {
      ASSERT_TRUE(rec.contains(key)) << key;
      ASSERT_TRUE(rec[key].is_number()) << key;
      EXPECT_GE(rec[key].get<double>(), 0.0) << key;
    }
    expect_fraction(rec["train_accuracy"], "train_accuracy");
    expect_fraction(rec["test_accuracy"], "test_accuracy");
  }
  const Json& summary = metrics["final"];
  for (const char* key : {"test_accuracy", "test_loss", "train_seconds", "total_seconds"}) {
    ASSERT_TRUE(summary.contains(key)) << key << " missing from final: " << summary.dump();
    ASSERT_TRUE(summary[key].is_number()) << key;
  }
  expect_fraction(summary["test_accuracy"], "final.test_accuracy");
  EXPECT_GE(summary["total_seconds"].get<double>(), summary["train_seconds"].get<double>());
  // The final evaluation uses the weights after the last epoch, as the last record does.
  EXPECT_EQ(summary["test_accuracy"], metrics["epochs"][1]["test_accuracy"]);
  // The synthetic classes are separable: the network learns them (chance is 0.1).
  EXPECT_GE(summary["test_accuracy"].get<double>(), 0.5) << summary.dump();

  // Model file: safetensors with PyTorch's nn.Sequential names and layouts.
  const Bytes file = read_bytes(model);
  ASSERT_GE(file.size(), 8u);
  const std::uint64_t len = header_length(file);
  EXPECT_EQ(len % 8, 0u);
  ASSERT_LE(8 + len, file.size());
  const Json header = header_json(file);
  const std::vector<std::pair<std::string, std::vector<int>>> expected = {
      {"0.weight", {16, 784}}, {"0.bias", {16}}, {"2.weight", {10, 16}}, {"2.bias", {10}}};
  std::uint64_t data_bytes = 0;
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(header.contains(name)) << name << " missing from " << header.dump();
    EXPECT_EQ(header[name]["dtype"], "F32") << name;
    EXPECT_EQ(header[name]["shape"], Json(shape)) << name;
    std::uint64_t numel = 1;
    for (int d : shape) numel *= static_cast<std::uint64_t>(d);
    const Json& offsets = header[name]["data_offsets"];
    EXPECT_EQ(offsets[1].get<std::uint64_t>() - offsets[0].get<std::uint64_t>(), numel * 4) << name;
    data_bytes += numel * 4;
  }
  EXPECT_EQ(header.size(), expected.size() + 1) << header.dump();  // + __metadata__
  EXPECT_EQ(file.size(), 8 + len + data_bytes);
  ASSERT_TRUE(header.contains("__metadata__"));
  const Json& meta = header["__metadata__"];
  EXPECT_EQ(meta["format_version"], "2");
  ASSERT_TRUE(meta.contains("architecture"));
  ASSERT_TRUE(meta["architecture"].is_string());
  const Json arch = Json::parse(meta["architecture"].get<std::string>());
  EXPECT_EQ(arch["hidden"], Json::array({16}));
  EXPECT_EQ(arch["input_dim"], 784);
  EXPECT_EQ(arch["num_classes"], 10);

  // eval reproduces the final test accuracy exactly.
  const CommandResult ev = run_cli("eval --model " + quote(model) + " --data " + quote(data.root) +
                                   " " + kTwoThreads + " --json");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  const Json result = Json::parse(ev.output);
  EXPECT_EQ(result["accuracy"].get<double>(), summary["test_accuracy"].get<double>());
  EXPECT_EQ(result["count"], kTestCount);
  std::size_t total = 0;
  ASSERT_EQ(result["confusion"].size(), 10u);
  for (std::size_t t = 0; t < 10; ++t) {
    std::size_t row = 0;
    for (const Json& v : result["confusion"][t]) row += v.get<std::size_t>();
    EXPECT_EQ(row, kTestCount / 10) << "true class " << t;  // labels are i % 10
    total += row;
  }
  EXPECT_EQ(total, kTestCount);
}

// --- export: ONNX and plain model files ----------------------------------------------------------

// Trains quick_train_args's run into `model` with --checkpoint-dir DATA/ck and returns the path
// of its last checkpoint (epoch 2); "" and a test failure when the run fails.
std::string last_checkpoint_of_quick_run(const SyntheticData& data, const std::string& model) {
  const std::string ck = data.out("ck");
  const CommandResult r = run_cli(
      quick_train_args(data, model, std::string(kTwoThreads) + " --checkpoint-dir " + quote(ck)));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.exit_code == 0 ? ck + "/checkpoint-epoch-0002.safetensors" : "";
}

class CliExport : public TrainedModelTest {
 protected:
  CommandResult export_model(const std::string& model, const std::string& format,
                             const std::string& out) {
    return run_cli("export --model " + quote(model) + " --format " + format + " --out " +
                   quote(out));
  }
  // eval prints the same loss, accuracy and confusion matrix for both files (line 0 names the
  // file, every other line is the same).
  void expect_same_eval(const std::string& a_model, const std::string& b_model) {
    const CommandResult a = eval(a_model), b = eval(b_model);
    ASSERT_EQ(a.exit_code, 0) << a.output;
    ASSERT_EQ(b.exit_code, 0) << b.output;
    const std::vector<std::string> a_lines = lines_of(a.output), b_lines = lines_of(b.output);
    ASSERT_GT(a_lines.size(), 3u) << a.output;
    EXPECT_TRUE(contains(a_lines[2], "accuracy")) << a_lines[2];
    EXPECT_EQ(std::vector<std::string>(a_lines.begin() + 1, a_lines.end()),
              std::vector<std::string>(b_lines.begin() + 1, b_lines.end()));
  }
};

// The exported file evaluates to the same loss, accuracy and confusion matrix, and holds the
// same tensor bytes and the same metadata (the training settings) as the original.
TEST_F(CliExport, SafetensorsRoundTripEvaluatesIdentically) {
  const std::string out = data_.out("copy.safetensors");
  const CommandResult r = export_model(model_, "safetensors", out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, out)) << r.output;
  expect_same_eval(model_, out);
  const Bytes exported = read_bytes(out);
  EXPECT_EQ(tensor_data(exported), tensor_data(model_bytes_));
  const Json meta = header_json(exported)["__metadata__"];
  EXPECT_EQ(meta, header_json(model_bytes_)["__metadata__"]);
  EXPECT_TRUE(meta.contains("training")) << meta.dump();
}

// A checkpoint exported as safetensors is a plain model file: the last checkpoint of a run holds
// the run's final model, so the tensor bytes are the model file's, eval prints the same, info
// calls it a model, and of the run's state only the training settings and the epoch remain.
TEST_F(CliExport, ACheckpointBecomesThePlainModelOfItsEpoch) {
  const std::string final_model = data_.out("final.safetensors");
  const std::string checkpoint = last_checkpoint_of_quick_run(data_, final_model);
  ASSERT_FALSE(checkpoint.empty());
  const std::string out = data_.out("from-checkpoint.safetensors");
  const CommandResult r = export_model(checkpoint, "safetensors", out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Bytes exported = read_bytes(out);
  EXPECT_EQ(tensor_data(exported), tensor_data(read_bytes(final_model)));
  expect_same_eval(final_model, out);
  const Json meta = header_json(exported)["__metadata__"];
  EXPECT_EQ(meta["format"], "nanomlp");
  EXPECT_EQ(meta["checkpoint_epoch"], "2");
  EXPECT_TRUE(contains(meta["training"].get<std::string>(), "\"epochs\":2")) << meta.dump();
  for (const char* run_state : {"options", "shuffle_rng", "records", "optimizer_steps"}) {
    EXPECT_FALSE(meta.contains(run_state)) << run_state << " in " << meta.dump();
  }
  const CommandResult info = run_cli("info --json --model " + quote(out));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_EQ(Json::parse(info.output)["kind"], "model");
}

// A serialised onnx.ModelProto: the names of its producer, input, outputs and operators are
// strings in the protobuf bytes. tests/onnx runs such files in ONNX Runtime.
TEST_F(CliExport, OnnxWritesTheGraphWithItsInputAndOutputs) {
  const std::string out = data_.out("model.onnx");
  const CommandResult r = export_model(model_, "onnx", out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, out)) << r.output;
  EXPECT_TRUE(contains(r.output, "opset 17")) << r.output;
  const Bytes bytes = read_bytes(out);
  const std::string text(bytes.begin(), bytes.end());
  for (const char* name : {"nanomlp", "pixels", "probabilities", "logits", "Gemm", "Relu",
                           "Softmax", "0.weight", "2.bias"}) {
    EXPECT_TRUE(contains(text, name)) << name << " missing from " << out;
  }
  // The 784 x 16 weights and the 16 x 10 ones, as float32, are most of the file.
  EXPECT_GT(bytes.size(), (784 * 16 + 16 * 10) * sizeof(float));
  for (const auto& entry : fs::directory_iterator(data_.dir.file(""))) {
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos)
        << "leftover file " << entry.path();
  }
}

TEST_F(CliExport, MissingModelFile) {
  const std::string missing = data_.out("missing.safetensors");
  for (const char* format : {"onnx", "safetensors"}) {
    SCOPED_TRACE(format);
    const std::string out = data_.out(std::string("out.") + format);
    expect_one_error_line(export_model(missing, format, out), 1, {missing});
    expect_no_model(out);
  }
}

TEST_F(CliExport, CorruptModelFile) {
  const std::string path = data_.out("truncated.safetensors");
  write_bytes(path, Bytes(model_bytes_.begin(), model_bytes_.begin() + model_bytes_.size() / 2));
  for (const char* format : {"onnx", "safetensors"}) {
    SCOPED_TRACE(format);
    const std::string out = data_.out(std::string("out.") + format);
    expect_one_error_line(export_model(path, format, out), 1, {path, "truncated"});
    expect_no_model(out);
  }
}

TEST_F(CliExport, UnknownFormatListsTheFormats) {
  const std::string out = data_.out("model.tflite");
  expect_one_error_line(export_model(model_, "tflite", out), 2,
                        {"--format", "tflite", "onnx", "safetensors"});
  expect_no_model(out);
  // Checked while parsing, before the model file is read.
  expect_one_error_line(export_model(data_.out("missing.safetensors"), "tflite", out), 2,
                        {"--format", "tflite"});
  expect_no_model(out);
}

TEST_F(CliExport, OutputFolderDoesNotExist) {
  const std::string folder = data_.out("no-such-folder");
  for (const char* format : {"onnx", "safetensors"}) {
    SCOPED_TRACE(format);
    const std::string out = folder + "/model." + format;
    expect_one_error_line(export_model(model_, format, out), 1, {"--out", folder});
    EXPECT_FALSE(fs::exists(folder));
  }
}

// --- report: metrics of another model are refused ---------------------------------------------

// A model and its metrics (seed 0, 784-16-10), from which the tests pair other models and
// metrics files for `nanomlp report`.
class CliReportGuard : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(train("a", "")); }
  // Trains NAME.safetensors with NAME.json as quick_train_args does, but for the hidden widths;
  // false (and a test failure) when the run fails.
  bool train(const std::string& name, const std::string& flags, const std::string& hidden = "16") {
    const CommandResult r =
        run_cli("train --data " + quote(data_.root) + " --hidden " + hidden +
                " --epochs 2 --batch-size 32 --quiet " + kTwoThreads + " --out " +
                quote(model(name)) + " --metrics-json " + quote(metrics(name)) + " " + flags);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0;
  }
  CommandResult report(const std::string& model_path, const std::string& metrics_path) {
    return run_cli("report --model " + quote(model_path) + " --metrics-json " +
                   quote(metrics_path) + " --data " + quote(data_.root) + " " + kTwoThreads +
                   " --out " + quote(out_));
  }
  std::string model(const std::string& name) const { return data_.out(name + ".safetensors"); }
  std::string metrics(const std::string& name) const { return data_.out(name + ".json"); }
  std::string hash_of(const std::string& name) const {
    return read_json_file(metrics(name))["model"]["weights_sha256"].get<std::string>();
  }

  SyntheticData data_;
  std::string out_ = data_.out("report.html");
};

// The metrics record the model file's architecture and the SHA-256 of its data section (checked
// with sha256sum), and report accepts the pair without a warning.
TEST_F(CliReportGuard, MetricsRecordTheModelAndReportAcceptsTheirOwnModel) {
  const Bytes file = read_bytes(model("a"));
  const Json recorded = read_json_file(metrics("a"))["model"];
  EXPECT_EQ(recorded["architecture"],
            Json::parse(header_json(file)["__metadata__"]["architecture"].get<std::string>()));
  const std::string data_path = data_.out("a.data");
  write_bytes(data_path, tensor_data(file));
  const CommandResult sum = run_command("sha256sum " + quote(data_path));
  ASSERT_EQ(sum.exit_code, 0) << sum.output;
  EXPECT_EQ(recorded["weights_sha256"], sum.output.substr(0, 64));

  const CommandResult r = report(model("a"), metrics("a"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "report written to")) << r.output;
  EXPECT_FALSE(contains(r.output, "warning")) << r.output;
  EXPECT_TRUE(fs::exists(out_));
}

TEST_F(CliReportGuard, RefusesTheMetricsOfAModelWithOtherWeights) {
  ASSERT_TRUE(train("b", "--seed 1"));  // the same architecture, other weights
  ASSERT_NE(hash_of("a"), hash_of("b"));
  expect_one_error_line(report(model("b"), metrics("a")), 1,
                        {metrics("a"), model("b"),
                         "weights differ: the metrics were written for another model (hash " +
                             hash_of("a") + ", model has " + hash_of("b") + ")"});
  EXPECT_FALSE(fs::exists(out_));
}

// The last checkpoint of a run holds the run's final model: report accepts it with the run's
// metrics; the checkpoint of an earlier epoch holds other weights and is refused.
TEST_F(CliReportGuard, AcceptsTheLastCheckpointOfTheRunAndRefusesAnEarlierOne) {
  const std::string ck = data_.out("ck");
  ASSERT_TRUE(train("c", "--checkpoint-dir " + quote(ck)));
  const CommandResult r = report(ck + "/checkpoint-epoch-0002.safetensors", metrics("c"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "warning")) << r.output;
  EXPECT_TRUE(fs::exists(out_));
  fs::remove(out_);
  const std::string first = ck + "/checkpoint-epoch-0001.safetensors";
  expect_one_error_line(report(first, metrics("c")), 1, {metrics("c"), first, "weights differ"});
  EXPECT_FALSE(fs::exists(out_));
}

TEST_F(CliReportGuard, RefusesTheMetricsOfAnotherArchitecture) {
  ASSERT_TRUE(train("narrow", "", "8"));
  expect_one_error_line(report(model("narrow"), metrics("a")), 1,
                        {metrics("a"), model("narrow"), "architecture differs",
                         "written for 784-16-10, relu (model has 784-8-10, relu)"});
  // The same layers, other input normalisation: the keys that differ are named.
  ASSERT_TRUE(train("raw", "--no-normalize"));
  expect_one_error_line(report(model("raw"), metrics("a")), 1,
                        {metrics("a"), model("raw"), "architecture differs (784-16-10, relu)",
                         "normalisation: the metrics have"});
  EXPECT_FALSE(fs::exists(out_));
}

// Metrics written before the check (no "model" entry) still make a report, with one warning.
TEST_F(CliReportGuard, AcceptsOldMetricsWithAWarning) {
  Json old = read_json_file(metrics("a"));
  old.erase("model");
  const std::string old_path = data_.out("old.json");
  { std::ofstream(old_path) << old.dump(2); }
  const CommandResult r = report(model("a"), old_path);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> warnings;
  for (const std::string& line : lines_of(r.output)) {
    if (contains(line, "warning")) warnings.push_back(line);
  }
  ASSERT_EQ(warnings.size(), 1u) << r.output;
  EXPECT_EQ(warnings[0].rfind("nanomlp: warning: metrics file " + old_path, 0), 0u) << warnings[0];
  EXPECT_TRUE(contains(warnings[0], "cannot be checked against model file " + model("a")))
      << warnings[0];
  EXPECT_TRUE(contains(r.output, "report written to")) << r.output;
}

TEST_F(CliReportGuard, RefusesAMalformedModelEntry) {
  Json bad = read_json_file(metrics("a"));
  bad["model"]["weights_sha256"] = "not a hash";
  const std::string bad_path = data_.out("bad.json");
  { std::ofstream(bad_path) << bad.dump(2); }
  expect_one_error_line(report(model("a"), bad_path), 1,
                        {bad_path, "\"weights_sha256\" (64 lowercase hex digits)"});
}

// --- info: what a model file tells ---------------------------------------------------------

// The file records nanomlp's version, the date it was written (UTC ISO 8601), the final test
// accuracy and loss and the training time; info prints each, and --json gives them as values.
TEST(CliInfo, PrintsTheVersionDateFiguresAndTrainingTimeTheFileRecords) {
  SyntheticData data;
  const std::string model = data.out("model.safetensors");
  const std::string before = testing::utc_now_iso8601();
  const CommandResult r = run_cli(quick_train_args(data, model, kTwoThreads));
  const std::string after = testing::utc_now_iso8601();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json meta = header_json(read_bytes(model))["__metadata__"];
  EXPECT_EQ(meta["nanomlp_version"], kVersion);
  const std::string date = meta["date"].get<std::string>();
  EXPECT_TRUE(std::regex_match(date, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"))) << date;
  EXPECT_LE(before, date);  // ISO 8601 in UTC sorts as time does
  EXPECT_LE(date, after);
  const double train_seconds = std::stod(meta["train_seconds"].get<std::string>());
  EXPECT_GT(train_seconds, 0.0);
  EXPECT_LT(train_seconds, 30.0);
  EXPECT_FALSE(meta.contains("val_accuracy")) << meta.dump();

  // The figures are those eval computes for the file.
  const CommandResult ev = run_cli("eval --model " + quote(model) + " --data " + quote(data.root) +
                                   " " + kTwoThreads + " --json");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  const Json evaluated = Json::parse(ev.output);
  EXPECT_EQ(std::stod(meta["test_accuracy"].get<std::string>()), evaluated["accuracy"]);
  EXPECT_NEAR(std::stod(meta["test_loss"].get<std::string>()), evaluated["loss"].get<double>(),
              1e-9);

  const CommandResult info = run_cli("info --model " + quote(model));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  char figures[128];
  std::snprintf(figures, sizeof figures, " in %.2f s; test accuracy %.2f%%, loss %.4f\n",
                train_seconds, evaluated["accuracy"].get<double>() * 100.0,
                evaluated["loss"].get<double>());
  EXPECT_TRUE(contains(info.output,
                       "\ntrained by nanomlp " + std::string(kVersion) + " on " + date + figures))
      << info.output;

  const CommandResult j = run_cli("info --model " + quote(model) + " --json");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  const Json run = Json::parse(j.output)["run"];
  EXPECT_EQ(run["nanomlp_version"], kVersion);
  EXPECT_EQ(run["date"], date);
  EXPECT_EQ(run["test_accuracy"], evaluated["accuracy"]);
  EXPECT_EQ(run["test_loss"].get<double>(), std::stod(meta["test_loss"].get<std::string>()));
  EXPECT_EQ(run["train_seconds"].get<double>(), train_seconds);
  EXPECT_EQ(Json::parse(j.output)["metadata"]["date"], date);
}

// With --val-split the file records the validation figures of the weights it holds, not the
// test set's; info says so.
TEST(CliInfo, ValidationSplitRecordsTheValidationFigures) {
  SyntheticData data;
  const std::string model = data.out("model.safetensors");
  const std::string metrics = data.out("metrics.json");
  const CommandResult r = run_cli(quick_train_args(
      data, model, std::string(kTwoThreads) + " --val-split 50 --metrics-json " + quote(metrics)));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json meta = header_json(read_bytes(model))["__metadata__"];
  EXPECT_FALSE(meta.contains("test_accuracy")) << meta.dump();
  const Json last = read_json_file(metrics)["epochs"].back();
  EXPECT_EQ(Json::parse(meta["val_accuracy"].get<std::string>()), last["val_accuracy"]);
  EXPECT_EQ(Json::parse(meta["val_loss"].get<std::string>()), last["val_loss"]);
  const CommandResult info = run_cli("info --model " + quote(model));
  ASSERT_EQ(info.exit_code, 0) << info.output;
  char figures[96];
  std::snprintf(figures, sizeof figures, "; validation accuracy %.2f%%, loss %.4f\n",
                last["val_accuracy"].get<double>() * 100.0, last["val_loss"].get<double>());
  EXPECT_TRUE(contains(info.output, figures)) << info.output;
  EXPECT_FALSE(contains(info.output, "test accuracy")) << info.output;
}

// --- checkpoints are models too ---------------------------------------------------------------

// The command's output with the model's path replaced, for comparing two runs on two files.
std::string output_for(const std::string& args, const std::string& model) {
  CommandResult r = run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << args << ": " << r.output;
  for (std::size_t at; (at = r.output.find(model)) != std::string::npos;) {
    r.output.replace(at, model.size(), "MODEL");
  }
  return r.output;
}

// A checkpoint of epoch 1 holds the network of a run trained for 1 epoch (a constant schedule
// does not depend on the run's length): eval gives the same figures and probabilities, predict
// the same classes, and the last checkpoint of the run holds its final model.
TEST(CliCheckpoint, EvalAndPredictOfACheckpointEqualThoseOfTheModelOfItsEpoch) {
  SyntheticData data;
  const auto train = [&](const std::string& epochs, const std::string& out,
                         const std::string& extra) {
    return run_cli("train --data " + quote(data.root) + " --hidden 16 --batch-size 32 " +
                   kTwoThreads + " --batch-norm --schedule constant --epochs " + epochs +
                   " --out " + quote(out) + extra);
  };
  const std::string ck = data.out("ck"), two = data.out("two.safetensors");
  const std::string one = data.out("one.safetensors");
  ASSERT_EQ(train("2", two, " --checkpoint-dir " + quote(ck)).exit_code, 0);
  ASSERT_EQ(train("1", one, "").exit_code, 0);
  const std::string pgm = data.out("digit.pgm");
  {
    std::ofstream out(pgm, std::ios::binary);
    out << "P5\n28 28\n255\n";
    for (std::size_t i = 0; i < kPixels; ++i) out.put(static_cast<char>(i / 28 == 9 ? 230 : 10));
  }
  for (const auto& [checkpoint, model] :
       {std::pair{ck + "/checkpoint-epoch-0001.safetensors", one},
        std::pair{ck + "/checkpoint-epoch-0002.safetensors", two}}) {
    SCOPED_TRACE(checkpoint);
    const auto eval = [&](const std::string& file, const std::string& npy) {
      return output_for("eval --model " + quote(file) + " --data " + quote(data.root) + " " +
                            kTwoThreads + " --json --probabilities " + quote(npy),
                        file);
    };
    EXPECT_EQ(eval(checkpoint, data.out("c.npy")), eval(model, data.out("m.npy")));
    EXPECT_EQ(read_bytes(data.out("c.npy")), read_bytes(data.out("m.npy")));
    EXPECT_EQ(
        output_for("predict --model " + quote(checkpoint) + " --json " + quote(pgm), checkpoint),
        output_for("predict --model " + quote(model) + " --json " + quote(pgm), model));
  }
}

// info reads a checkpoint as a model, and says what else it holds.
TEST(CliCheckpoint, InfoDescribesACheckpoint) {
  SyntheticData data;
  const std::string path = last_checkpoint_of_quick_run(data, data.out("m.safetensors"));
  ASSERT_FALSE(path.empty());
  const CommandResult r = run_cli("info --model " + quote(path));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "architecture: 784-16-10, relu; trained on mnist")) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "checkpoint (version 2) written after epoch 2: the model is its 4 "
                       "'model.' tensors; the other "))
      << r.output;
  EXPECT_TRUE(contains(r.output, "training settings: {\"epochs\":2,")) << r.output;
  const CommandResult j = run_cli("info --model " + quote(path) + " --json");
  ASSERT_EQ(j.exit_code, 0) << j.output;
  const Json info = Json::parse(j.output);
  EXPECT_EQ(info["kind"], "checkpoint");
  EXPECT_EQ(info["architecture"]["hidden"], Json::array({16}));
  EXPECT_EQ(info["parameters"], 784 * 16 + 16 + 16 * 10 + 10);
}

// A damaged checkpoint is one error line naming the file and what is wrong, whichever command
// reads it.
TEST(CliCheckpoint, ADamagedCheckpointIsOneErrorLine) {
  SyntheticData data;
  const std::string path = last_checkpoint_of_quick_run(data, data.out("m.safetensors"));
  ASSERT_FALSE(path.empty());
  const Bytes intact = read_bytes(path);
  Json header = header_json(intact);
  header["__metadata__"].erase("architecture");
  write_bytes(path, with_header(intact, header));
  for (const char* name : {"info", "eval", "predict"}) {
    const std::string command = name;
    SCOPED_TRACE(command);
    const std::string operand = command == "predict" ? " " + quote(data.out("absent.png"))
                                : command == "eval"  ? " --data " + quote(data.root)
                                                     : "";
    expect_one_error_line(run_cli(command + " --model " + quote(path) + operand), 1,
                          {path, "corrupt checkpoint: __metadata__ has no 'architecture' entry"});
  }
  write_bytes(
      path, Bytes(intact.begin(), intact.begin() + static_cast<std::ptrdiff_t>(intact.size() / 2)));
  expect_one_error_line(run_cli("eval --model " + quote(path) + " --data " + quote(data.root)), 1,
                        {path});
}

// --- determinism ------------------------------------------------------------------------------

TEST(CliDeterminism, SameSeedGivesIdenticalModelAndOtherSeedDiffers) {
  SyntheticData data;
  auto train = [&](const std::string& name, const std::string& flags) {
    const std::string out = data.out(name);
    const CommandResult r = run_cli(quick_train_args(data, out, flags));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return read_bytes(out);
  };
  const Bytes a = train("a.safetensors", "--threads 2 --seed 7");
  const Bytes b = train("b.safetensors", "--threads 2 --seed 7");
  const Bytes c = train("c.safetensors", "--threads 2 --seed 8");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(testing::same_model_file(a, b))
      << "two runs with --seed 7 --threads 2 wrote different files";
  ASSERT_FALSE(c.empty());
  // Compare the weights, not the header: the header records the seed itself.
  EXPECT_NE(tensor_data(a), tensor_data(c)) << "--seed 8 gave the same weights as --seed 7";

  const Bytes d = train("d.safetensors", "--threads 1 --seed 7");
  const Bytes e = train("e.safetensors", "--threads 1 --seed 7");
  ASSERT_FALSE(d.empty());
  EXPECT_TRUE(testing::same_model_file(d, e))
      << "two runs with --seed 7 --threads 1 wrote different files";
}

// --- real MNIST end to end --------------------------------------------------------------------

TEST(CliRealData, DefaultTrainingReachesAccuracyAndEvalAgrees) {
  const std::string root = require_real_data();
  ASSERT_FALSE(root.empty());
  TempDir dir;
  const std::string model = dir.file("model.safetensors");
  const std::string metrics_path = dir.file("metrics.json");
  const CommandResult r = run_cli("train --data " + quote(root) + " --out " + quote(model) +
                                      " --metrics-json " + quote(metrics_path) + " " + kTwoThreads,
                                  600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json metrics = read_json_file(metrics_path);
  const double accuracy = metrics["final"]["test_accuracy"].get<double>();
  for (const Json& rec : metrics["epochs"]) {
    std::printf("[   INFO   ] epoch %2d: %.2f s (%.0f samples/s), test accuracy %.4f\n",
                rec["epoch"].get<int>(), rec["seconds"].get<double>(),
                rec["samples_per_second"].get<double>(),
                rec["test_accuracy"].is_number() ? rec["test_accuracy"].get<double>() : -1.0);
  }
  std::printf("[   INFO   ] final test accuracy %.4f, train %.2f s, total %.2f s\n", accuracy,
              metrics["final"]["train_seconds"].get<double>(),
              metrics["final"]["total_seconds"].get<double>());
  // The default recipe (issue: at least 98.0% for seeds 0, 1 and 2; seed 0 here).
  EXPECT_GE(accuracy, 0.980);
  EXPECT_EQ(metrics["final"]["test_loss"].is_number(), true);

  const CommandResult ev = run_cli("eval --model " + quote(model) + " --data " + quote(root) + " " +
                                   kTwoThreads + " --json");
  ASSERT_EQ(ev.exit_code, 0) << ev.output;
  const Json result = Json::parse(ev.output);
  EXPECT_EQ(result["accuracy"].get<double>(), accuracy);
  EXPECT_EQ(result["count"], 10000);
}

// The original program's settings (784-128-10, plain SGD lr 0.1, batch 64, 10 epochs,
// pixels / 255) train as the original did: about 97.5% (97.47% for seed 0). The 97.5% and 98.0%
// targets belong to the default recipe, checked above.
TEST(CliRealData, SeedPresetReachesTheOriginalsAccuracy) {
  const std::string root = require_real_data();
  ASSERT_FALSE(root.empty());
  TempDir dir;
  const std::string metrics_path = dir.file("metrics.json");
  const CommandResult r = run_cli("train --preset seed --quiet --data " + quote(root) + " --out " +
                                      quote(dir.file("seed.safetensors")) + " --metrics-json " +
                                      quote(metrics_path) + " " + kTwoThreads,
                                  600);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json metrics = read_json_file(metrics_path);
  EXPECT_EQ(metrics["settings"]["optimizer"], "sgd");
  EXPECT_EQ(metrics["settings"]["lr"], 0.1);
  EXPECT_EQ(metrics["settings"]["momentum"], 0.0);
  EXPECT_EQ(metrics["settings"]["batch_size"], 64);
  EXPECT_EQ(metrics["settings"]["epochs"], 10);
  EXPECT_EQ(metrics["settings"]["architecture"]["hidden"], Json::array({128}));
  EXPECT_EQ(metrics["settings"]["architecture"]["normalisation"]["mean"], 0.0);
  EXPECT_GE(metrics["final"]["test_accuracy"].get<double>(), 0.970);
}

}  // namespace
}  // namespace nanomlp
