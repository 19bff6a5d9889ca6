// The training loop: shuffled mini-batches, forward, fused softmax-cross-entropy, backward,
// optimizer step; evaluation; validation split, early stopping and checkpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"

namespace nanomlp {

struct TrainOptions {
  std::size_t epochs = 10;
  std::size_t batch_size = 64;
  std::uint64_t seed = 0;
  std::string init = "auto";
  OptimizerConfig optimizer;  // plain SGD by default
  ScheduleConfig schedule;    // constant lr 0.1 by default; steps are filled in by train()
  double label_smoothing = 0.0;
  std::size_t val_split = 0;   // images held out of the training set for validation
  std::size_t early_stop = 0;  // patience in epochs (needs val_split); 0 = off
  // Evaluate the test set after every epoch. Unset: yes without a validation split, no with
  // one (the test set is then reported only at the end).
  std::optional<bool> eval_test_every_epoch;
  std::string checkpoint_dir;  // empty: no checkpoints
  bool resume = false;
  // How the first layer reads the images: "on" without their background pixels
  // (nanomlp/nn/sparse.hpp), "off" as dense floats, "auto" sparse when the data is sparse enough.
  std::string sparse_input = "auto";

  // Throws UsageError naming the flag for an invalid value.
  void validate(std::size_t train_count) const;
  std::string to_json() const;
};

// The sparse input path pays when at most this share of the pixels is inked (MNIST 19%,
// Fashion-MNIST 49%) and the first layer is at most this wide: its cost per inked pixel grows
// with the width, the GEMM's efficiency too (measured with 2 threads, 784-H-10 at batch 64:
// H = 128 and 256 are 1.6x and 1.6x faster sparse, H = 512 is 1.06x slower, and the
// 784-1024-1024-10 network at batch 256 is 1.1x slower; on Fashion-MNIST, 784-256-128-10 is
// 1.3x slower sparse on 2 threads).
inline constexpr double kSparseInputMaxDensity = 0.35;
inline constexpr std::size_t kSparseInputMaxWidth = 256;
// When the split step trains the network (one hidden layer, 2+ threads, split_step.hpp), the
// sparse path pays up to this share: on Fashion-MNIST, 784-128-10 at batch 64 trains at 0.12 s
// per epoch sparse against 0.32 s dense on 2 threads (784-256-10: 0.28 s against 0.49 s), and
// at the same speed either way on 1 thread.
inline constexpr double kSparseInputMaxDensitySplit = 0.6;

// Whether to read `data` sparse into a first layer `width` wide, for mode "on", "off" or
// "auto" (by the density of the first 1,000 images and the width; `split` says whether the
// split step would train the network). Throws UsageError naming --sparse-input for any other
// mode.
bool use_sparse_input(const Dataset& data, const std::string& mode, std::size_t width,
                      bool split = false);

struct EpochRecord {
  std::size_t epoch = 0;                      // 1-based
  double lr = 0;                              // learning rate at the epoch's last step
  double train_loss = 0, train_accuracy = 0;  // running averages over the epoch's batches
  std::optional<double> val_loss, val_accuracy;
  std::optional<double> test_loss, test_accuracy;
  double seconds = 0;  // the training pass only
  double samples_per_second = 0;
};

struct EvalResult {
  double loss = 0;            // mean cross-entropy
  double accuracy = 0;        // fraction
  double standard_error = 0;  // sqrt(p (1 - p) / n), binomial
  std::size_t count = 0;
  std::vector<std::vector<std::size_t>> confusion;  // [true][predicted]
  std::vector<std::uint8_t> predictions;            // (count)
  std::vector<float> probabilities;                 // (count, K) when asked for
};

// Evaluates in inference mode over the given rows of `data` (all rows if indices is null).
EvalResult evaluate(Network<float>& net, const Dataset& data,
                    const std::vector<std::uint32_t>* indices = nullptr,
                    bool keep_probabilities = false);

struct TrainResult {
  std::vector<EpochRecord> epochs;
  EvalResult test;
  std::size_t best_epoch = 0;  // with early stopping: the epoch whose weights were kept
  bool stopped_early = false;
  double train_seconds = 0;  // the epoch loop (training and per-epoch evaluation)
  std::size_t resumed_from_epoch = 0;
};

struct TrainCallbacks {
  std::function<void(const EpochRecord&)> on_epoch;
  // Called about 50 times per epoch: batches done, batches in the epoch, running loss and
  // accuracy of the epoch so far, seconds since the epoch started.
  std::function<void(std::size_t, std::size_t, double, double, double)> on_progress;
  std::function<void(const std::string&)> on_message;
};

// Throws IoError naming the folder when checkpoint_dir exists and takes no new file (read-only,
// no permission), so that the run stops before its first epoch, not after it. train() checks
// this itself; a command calls it earlier to fail before it loads the data.
void check_checkpoint_dir(const std::string& checkpoint_dir);

// Initialises (or, with resume, restores) the network and trains it. Throws TrainingError on a
// NaN or infinite loss, naming the epoch and step.
TrainResult train(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                  const TrainCallbacks& callbacks = {});

}  // namespace nanomlp
