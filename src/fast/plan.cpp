#include "nanomlp/fast/plan.hpp"

#include <algorithm>
#include <cstdio>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/sparse_input.hpp"
#include "nanomlp/fast/split_step.hpp"

namespace nanomlp {
namespace {

std::size_t first_width(const Architecture& arch) {
  return arch.hidden.empty() ? arch.num_classes : arch.hidden[0];
}

std::unique_ptr<BatchPath> make_input(bool sparse, const Architecture& arch) {
  if (sparse) return std::make_unique<SparseBatchPath>(arch);
  return std::make_unique<DenseBatchPath>(arch);
}

std::string percent(double share) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f%%", 100.0 * share);
  return text;
}

// Why the input is read as it is, in words.
std::string input_reason(const Dataset& data, const std::string& mode, std::size_t width,
                         bool split) {
  if (mode != "auto") return "--sparse-input " + mode;
  if (width > kSparseInputMaxWidth) {
    return "first layer " + std::to_string(width) + " wide, sparse up to " +
           std::to_string(kSparseInputMaxWidth);
  }
  return percent(ink_density(data)) + " of pixels inked, sparse up to " +
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

namespace {

// Nonzero pixels among the first n of data.
std::size_t inked_pixels(const Dataset& data, std::size_t n) {
  const auto end = data.images.begin() + static_cast<std::ptrdiff_t>(n);
  return static_cast<std::size_t>(
      std::count_if(data.images.begin(), end, [](std::uint8_t u) { return u != 0; }));
}

}  // namespace

double ink_density(const Dataset& data) {
  const std::size_t n = std::min(data.count, kDensitySampleImages) * kImagePixels;
  if (n == 0) return 0.0;
  return static_cast<double>(inked_pixels(data, n)) / static_cast<double>(n);
}

bool use_sparse_input(const Dataset& data, const std::string& mode, std::size_t width, bool split) {
  if (mode == "on") return true;
  if (mode == "off") return false;
  if (mode != "auto") {
    throw UsageError("--sparse-input: expected auto, on or off, got '" + mode + "'");
  }
  if (width > kSparseInputMaxWidth) return false;
  const std::size_t n = std::min(data.count, kDensitySampleImages) * kImagePixels;
  if (n == 0) return false;
  const double most = split ? kSparseInputMaxDensitySplit : kSparseInputMaxDensity;
  return static_cast<double>(inked_pixels(data, n)) <= most * static_cast<double>(n);
}

TrainMethod plan_training(Network<float>& net, const TrainOptions& options, const DataSplit& data,
                          int threads) {
  options.validate(data.train.count);
  const Architecture& arch = net.architecture();
  const auto optimizer = make_optimizer(options.optimizer);
  const std::string no_split = no_split_reason(net, *optimizer, threads);
  const int parts = no_split.empty() ? SplitStep::parts_for(arch.input_dim, threads) : 0;
  const std::size_t width = first_width(arch);
  const bool sparse = use_sparse_input(data.train, options.sparse_input, width, parts > 0);
  TrainMethod method;
  method.val_input = make_input(use_sparse_input(data.train, "auto", width), arch);
  method.test_input = make_input(use_sparse_input(data.test, "auto", width), arch);
  const std::string input = std::string(sparse ? "sparse" : "dense") + " input (" +
                            input_reason(data.train, options.sparse_input, width, parts > 0) + ")";
  if (sparse && parts > 0) {
    method.runner = std::make_unique<SplitEpochRunner>(arch, options.optimizer, parts, &data.train);
    method.description = "split step on " + std::to_string(parts) + " threads, " + input;
  } else {
    method.runner = std::make_unique<PlainEpochRunner>(make_input(sparse, arch));
    const std::string why = no_split.empty() ? "the split step needs sparse input" : no_split;
    method.description = "plain step (" + why + "), " + input;
  }
  return method;
}

std::unique_ptr<BatchPath> plan_input(const Architecture& arch, const Dataset& data) {
  return make_input(use_sparse_input(data, "auto", first_width(arch)), arch);
}

TrainResult train_planned(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                          const TrainCallbacks& callbacks) {
  TrainMethod method = plan_training(net, options, data, ThreadPool::global().max_parts());
  return train(net, data, options, callbacks, &method);
}

}  // namespace nanomlp
