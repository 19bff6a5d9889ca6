#include "nanomlp/fast/plan.hpp"

#include <algorithm>
#include <cstdio>

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/sparse_input.hpp"
#include "nanomlp/fast/split_step.hpp"

namespace nanomlp {
namespace {

std::unique_ptr<BatchPath> make_input(bool sparse, const Architecture& arch) {
  if (sparse) return std::make_unique<SparseBatchPath>(arch);
  return std::make_unique<DenseBatchPath>(arch);
}

std::string percent(double share) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f%%", 100.0 * share);
  return text;
}

// Nonzero pixels among the first kDensitySampleImages images of data, and those images' pixels.
struct InkSample {
  std::size_t inked = 0, pixels = 0;
};

InkSample ink_sample(const Dataset& data) {
  InkSample ink;
  ink.pixels = std::min(data.count, kDensitySampleImages) * kImagePixels;
  const auto end = data.images.begin() + static_cast<std::ptrdiff_t>(ink.pixels);
  ink.inked = static_cast<std::size_t>(
      std::count_if(data.images.begin(), end, [](std::uint8_t u) { return u != 0; }));
  return ink;
}

// The "auto" rule of use_sparse_input(), on a sample already taken. Compared as counts:
// inked <= most * pixels.
bool sparse_pays(const InkSample& ink, std::size_t width, bool split) {
  if (width > kSparseInputMaxWidth || ink.pixels == 0) return false;
  const double most = split ? kSparseInputMaxDensitySplit : kSparseInputMaxDensity;
  return static_cast<double>(ink.inked) <= most * static_cast<double>(ink.pixels);
}

bool use_sparse(const InkSample& ink, const std::string& mode, std::size_t width, bool split) {
  TrainOptions::check_sparse_input_mode(mode);
  return mode == "auto" ? sparse_pays(ink, width, split) : mode == "on";
}

// Why the input is read as it is, in words.
std::string input_reason(const InkSample& ink, const std::string& mode, std::size_t width,
                         bool split) {
  if (mode != "auto") return "--sparse-input " + mode;
  if (width > kSparseInputMaxWidth) {
    return "first layer " + std::to_string(width) + " wide, sparse up to " +
           std::to_string(kSparseInputMaxWidth);
  }
  const double share =
      ink.pixels == 0 ? 0.0 : static_cast<double>(ink.inked) / static_cast<double>(ink.pixels);
  return percent(share) + " of pixels inked, sparse up to " +
         percent(split ? kSparseInputMaxDensitySplit : kSparseInputMaxDensity);
}

// Why the split step does not train, in words ("" when it can).
std::string no_split_reason(Network<float>& net, const Optimizer& optimizer, int threads) {
  if (!optimizer.elementwise()) return "the optimizer is not element-wise (--clip-grad-norm)";
  if (!SplitStep::computes(net, optimizer)) return "not Linear, activation, Linear";
  if (SplitStep::parts_for(net.architecture().input_dim, threads) == 0) {
    return std::to_string(threads) + " thread" + (threads == 1 ? "" : "s");
  }
  return "";
}

}  // namespace

double ink_density(const Dataset& data) {
  const InkSample ink = ink_sample(data);
  if (ink.pixels == 0) return 0.0;
  return static_cast<double>(ink.inked) / static_cast<double>(ink.pixels);
}

bool use_sparse_input(const Dataset& data, const std::string& mode, std::size_t width, bool split) {
  TrainOptions::check_sparse_input_mode(mode);
  // The sample is taken only when "auto" needs it.
  return mode == "auto" ? sparse_pays(ink_sample(data), width, split) : mode == "on";
}

TrainMethod plan_training(Network<float>& net, const TrainOptions& options, const DataSplit& data,
                          int threads) {
  options.validate(data.train.count);
  const Architecture& arch = net.architecture();
  const auto optimizer = make_optimizer(options.optimizer);
  const std::string no_split = no_split_reason(net, *optimizer, threads);
  const int parts = no_split.empty() ? SplitStep::parts_for(arch.input_dim, threads) : 0;
  const std::size_t width = arch.first_width();
  // One scan of each set's first images serves every decision below.
  const InkSample train_ink = ink_sample(data.train);
  const bool sparse = use_sparse(train_ink, options.sparse_input, width, parts > 0);
  TrainMethod method;
  method.val_input = make_input(sparse_pays(train_ink, width, false), arch);
  method.test_input = make_input(sparse_pays(ink_sample(data.test), width, false), arch);
  const std::string input = std::string(sparse ? "sparse" : "dense") + " input (" +
                            input_reason(train_ink, options.sparse_input, width, parts > 0) + ")";
  if (sparse && parts > 0) {
    method.runner = std::make_unique<SplitEpochRunner>(net, *optimizer, parts, &data.train);
    method.description = "split step on " + std::to_string(parts) + " threads, " + input;
  } else {
    method.runner = std::make_unique<PlainEpochRunner>(make_input(sparse, arch));
    const std::string why = no_split.empty() ? "the split step needs sparse input" : no_split;
    method.description = "plain step (" + why + "), " + input;
  }
  return method;
}

std::unique_ptr<BatchPath> plan_input(const Architecture& arch, const Dataset& data) {
  return make_input(use_sparse_input(data, "auto", arch.first_width()), arch);
}

TrainResult train_planned(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                          const TrainCallbacks& callbacks, Checkpoints* checkpoints) {
  TrainMethod method = plan_training(net, options, data, ThreadPool::global().max_parts());
  return train(net, data, options, callbacks, &method, checkpoints);
}

}  // namespace nanomlp
