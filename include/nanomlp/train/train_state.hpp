// Everything a training run carries from epoch to epoch, and where its checkpoints go: the
// trainer and the checkpoint files (io/checkpoint.hpp) share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nanomlp/core/rng.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

// A copy of everything a network saves: parameters then buffers, and the batch-norm counters.
// Early stopping keeps the best epoch in one; resuming moves checkpoint weights through one.
struct WeightsSnapshot {
  std::vector<Matrix> tensors;
  std::vector<std::int64_t> counters;

  bool empty() const { return tensors.empty(); }
  void take(Network<float>& net) {
    tensors.clear();
    counters.clear();
    for (auto& p : net.params()) tensors.push_back(*p.value);
    for (auto& b : net.buffers()) tensors.push_back(*b.value);
    for (auto& layer : net.layers()) {
      for (auto& c : layer->counters()) counters.push_back(*c.second);
    }
  }
  void put(Network<float>& net) const {
    std::size_t i = 0;
    for (auto& p : net.params()) *p.value = tensors[i++];
    for (auto& b : net.buffers()) *b.value = tensors[i++];
    std::size_t k = 0;
    for (auto& layer : net.layers()) {
      for (auto& c : layer->counters()) *c.second = counters[k++];
    }
  }
};

struct TrainState {
  // Separate streams, so that e.g. adding dropout does not change the shuffle order.
  explicit TrainState(std::uint64_t seed)
      : init_rng(seed),
        shuffle_rng(seed * 0x9e3779b97f4a7c15ULL + 1),
        dropout_rng(seed * 0x9e3779b97f4a7c15ULL + 2) {}

  Rng init_rng;
  Rng shuffle_rng;
  Rng dropout_rng;
  std::size_t epoch = 0;  // epochs completed
  std::int64_t step = 0;  // optimizer steps completed (the schedule's position)
  std::vector<EpochRecord> records;
  std::size_t best_epoch = 0;
  double best_val_accuracy = 0.0;
  WeightsSnapshot best;  // the best epoch's weights, when early stopping is on
};

// Where train() keeps its checkpoints, when options.checkpoint_dir is set: io/checkpoint.hpp's
// CheckpointFiles writes them as safetensors files.
class Checkpoints {
 public:
  virtual ~Checkpoints() = default;
  // Before training starts. Without resume: makes ready a place that holds no checkpoints yet
  // (nothing is overwritten by a new run). With resume: restores net, optimizer and state from
  // the newest checkpoint, after checking that it is intact and that its architecture and
  // settings are this run's. Returns the epoch resumed from.
  virtual std::size_t prepare(const TrainOptions& options, Network<float>& net,
                              Optimizer& optimizer, TrainState& state,
                              const std::function<void(const std::string&)>& on_message) = 0;
  // After each epoch.
  virtual void write(const TrainOptions& options, Network<float>& net, Optimizer& optimizer,
                     const TrainState& state) = 0;
};

}  // namespace nanomlp
