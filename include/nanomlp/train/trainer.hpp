// The training loop: shuffled mini-batches, forward, fused softmax-cross-entropy, backward,
// optimizer step; evaluation; validation split, early stopping and checkpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"
#include "nanomlp/train/step.hpp"

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
  // (fast/sparse_input.hpp), "off" as dense floats, "auto" as fast/plan.hpp decides.
  std::string sparse_input = "auto";

  // Throws UsageError naming the flag for an invalid value.
  void validate(std::size_t train_count) const;
  // Throws UsageError naming --sparse-input unless mode is auto, on or off.
  static void check_sparse_input_mode(const std::string& mode);
  std::string to_json() const;
};

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

// Evaluates in inference mode over the given rows of `data` (all rows if indices is null),
// reading the images through `input` (a DenseBatchPath if null; fast/plan.hpp picks one).
EvalResult evaluate(Network<float>& net, const Dataset& data,
                    const std::vector<std::uint32_t>* indices = nullptr,
                    bool keep_probabilities = false, BatchPath* input = nullptr);

struct TrainResult {
  std::vector<EpochRecord> epochs;
  EvalResult test;
  std::size_t best_epoch = 0;  // with early stopping: the epoch whose weights were kept
  bool stopped_early = false;
  double train_seconds = 0;  // the epoch loop (training and per-epoch evaluation)
  std::size_t resumed_from_epoch = 0;
  std::string method;  // TrainMethod::description
};

// How train() computes: who runs each epoch's steps and how evaluation reads the images.
// fast/plan.hpp's plan_training() picks a fast one and says why; without one, train() takes
// the plain step over dense floats.
struct TrainMethod {
  std::unique_ptr<EpochRunner> runner;    // null: PlainEpochRunner over a DenseBatchPath
  std::unique_ptr<BatchPath> val_input;   // the validation images; null: DenseBatchPath
  std::unique_ptr<BatchPath> test_input;  // the test images; null: DenseBatchPath
  std::string description = "plain step, dense input";
};

struct TrainCallbacks {
  std::function<void(const EpochRecord&)> on_epoch;
  // Called about 50 times per epoch: batches done, batches in the epoch, running loss and
  // accuracy of the epoch so far, seconds since the epoch started.
  std::function<void(std::size_t, std::size_t, double, double, double)> on_progress;
  std::function<void(const std::string&)> on_message;
};

class Checkpoints;  // train_state.hpp

// Initialises (or, with resume, restores) the network and trains it, the way `method` says
// (the plain step if null), keeping checkpoints in `checkpoints` (needed when
// options.checkpoint_dir is set: std::invalid_argument otherwise). Throws TrainingError on a
// NaN or infinite loss, naming the epoch and step.
TrainResult train(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                  const TrainCallbacks& callbacks = {}, TrainMethod* method = nullptr,
                  Checkpoints* checkpoints = nullptr);

}  // namespace nanomlp
