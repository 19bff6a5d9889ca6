// One plan: which input encoding and which step train() uses, and why. Every threshold of the
// fast paths' choice is here, named once; bench/README.md has the measurements behind them.
//
//   input  sparse (fast/sparse_input.hpp) when --sparse-input on, or auto and the first layer is
//          at most kSparseInputMaxWidth wide and at most kSparseInputMaxDensity of the pixels
//          are inked (kSparseInputMaxDensitySplit when the split step trains); else dense.
//   step   the split step (fast/split_step.hpp) when the input is sparse, two or more threads
//          work and SplitStep::computes() the built network; else the plain step.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

// The sparse first layer pays at most this share of inked pixels (MNIST 19%, Fashion-MNIST
// 49%) and at most this width: its cost per inked pixel grows with the width, and so does the
// GEMM's efficiency (bench/README.md, "Behind the thresholds", has the timings).
inline constexpr double kSparseInputMaxDensity = 0.35;
inline constexpr std::size_t kSparseInputMaxWidth = 256;
// With the split step, whose parts each encode their own pixels, up to this share.
inline constexpr double kSparseInputMaxDensitySplit = 0.6;
// The density is measured on this many images from the start of the set.
inline constexpr std::size_t kDensitySampleImages = 1000;

// The share of nonzero pixels in the first kDensitySampleImages images (0 for no images).
double ink_density(const Dataset& data);

// Whether to read `data` sparse into a first layer `width` wide, for mode "on", "off" or
// "auto" (`split`: whether the split step would train). Throws UsageError naming
// --sparse-input for any other mode.
bool use_sparse_input(const Dataset& data, const std::string& mode, std::size_t width,
                      bool split = false);

// The method train() should use for `net` with these options and data on `threads` threads:
// the runner, the evaluation inputs, and a one-line description that says why. Validates the
// options first (TrainOptions::validate).
TrainMethod plan_training(Network<float>& net, const TrainOptions& options, const DataSplit& data,
                          int threads);

// How evaluation should read `data` for a network of `arch`: sparse when "auto" says so.
std::unique_ptr<BatchPath> plan_input(const Architecture& arch, const Dataset& data);

// train() with plan_training()'s method on the global thread pool's threads, keeping
// checkpoints in `checkpoints` (see train()).
TrainResult train_planned(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                          const TrainCallbacks& callbacks = {}, Checkpoints* checkpoints = nullptr);

}  // namespace nanomlp
