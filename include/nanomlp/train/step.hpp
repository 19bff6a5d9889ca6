// One training step, the whole of backprop in one function: forward, loss, backward, update.
//
//   z  (N, K) = net(x)                                  forward, layer after layer
//   L         = -1/N sum_i log softmax(z_i)[y_i]        cross-entropy (with label smoothing)
//   dz (N, K) = (softmax(z) - onehot(y)) / N             its gradient at the logits
//   grads     = net.backward(dz)                        backward, layer after layer
//   w        <- optimizer(w, dL/dw, lr)                 for every parameter {name, value, grad}
//
// A BatchPath says how the batch's images reach the first layer: as floats (DenseBatchPath,
// here), or without their background pixels (fast/sparse_input.hpp). An EpochRunner runs one
// epoch's steps: the plain one calls plain_step for each batch; a fast one (fast/) may compute
// the same steps its own way and is tested against this one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"

namespace nanomlp {

// How a batch of images reaches the network, forward and backward.
class BatchPath {
 public:
  virtual ~BatchPath() = default;
  // Reads the images idx[0..N) of `data` and their labels (N). next_idx, when not null, holds
  // the N rows of the next batch, which a path may start fetching from memory.
  virtual void gather(const Dataset& data, const std::uint32_t* idx, std::size_t N,
                      std::uint8_t* labels, const std::uint32_t* next_idx = nullptr) = 0;
  // Logits (N, K) of the gathered batch; they live until the next forward.
  virtual const Matrix& forward(Network<float>& net, bool training) = 0;
  // dlogits (N, K) -> the gradients of every parameter of net.
  virtual void backward(Network<float>& net, const Matrix& dlogits) = 0;
};

// The images as normalised floats x (N, D) = scale * pixel + shift (the architecture's), the
// network's own forward and backward.
class DenseBatchPath final : public BatchPath {
 public:
  explicit DenseBatchPath(const Architecture& arch);
  void gather(const Dataset& data, const std::uint32_t* idx, std::size_t N, std::uint8_t* labels,
              const std::uint32_t* next_idx = nullptr) override;
  const Matrix& forward(Network<float>& net, bool training) override;
  void backward(Network<float>& net, const Matrix& dlogits) override;
  // The batch itself, for a caller that has its floats already (gather fills it).
  Matrix& input() { return x_; }

 private:
  float scale_, shift_;
  Matrix x_;  // (N, D)
};

struct StepResult {
  double loss = 0;       // summed over the batch (not averaged): NaN or infinite on divergence
  std::size_t hits = 0;  // correct predictions of the batch
};

// One step on the gathered batch of `batch` with its labels (N): forward, softmax
// cross-entropy (label smoothing eps), backward, optimizer step with learning rate lr over
// params (net.params(), in order). dz is the (N, K) buffer of dL/dz. A step whose loss is not
// finite stops before the backward pass and changes nothing.
StepResult plain_step(Network<float>& net, BatchPath& batch, const std::uint8_t* labels,
                      float label_smoothing, Optimizer& optimizer,
                      const std::vector<Param<float>>& params, double lr, Matrix& dz);

// What each step reports to the trainer: step index in the epoch, rows, summed loss, hits,
// learning rate.
using AfterStep = std::function<void(std::size_t, std::size_t, double, std::size_t, double)>;

// The rows of one epoch, in order, and how to step through them.
struct Epoch {
  const Dataset* data = nullptr;
  const std::uint32_t* order = nullptr;  // (n) rows of data, shuffled
  std::size_t n = 0;
  std::size_t batch_size = 0;  // B; the last batch may be shorter
  const ScheduleConfig* schedule = nullptr;
  std::int64_t first_step = 0;  // the schedule's step at the epoch's first batch
  float label_smoothing = 0.0f;
};

struct EpochOutcome {
  std::size_t steps = 0;  // steps taken
  bool diverged = false;  // a step's loss was NaN or infinite: it stopped the epoch
  double bad_loss = 0;    // that loss
};

// Runs the steps of one epoch, calling after_step after each.
class EpochRunner {
 public:
  virtual ~EpochRunner() = default;
  virtual EpochOutcome run_epoch(Network<float>& net, Optimizer& optimizer, const Epoch& epoch,
                                 const AfterStep& after_step) = 0;
};

// plain_step over every batch of the epoch, read through a BatchPath.
class PlainEpochRunner final : public EpochRunner {
 public:
  explicit PlainEpochRunner(std::unique_ptr<BatchPath> batch) : batch_(std::move(batch)) {}
  EpochOutcome run_epoch(Network<float>& net, Optimizer& optimizer, const Epoch& epoch,
                         const AfterStep& after_step) override;

 private:
  std::unique_ptr<BatchPath> batch_;
  Matrix dz_;                         // (B, K)
  std::vector<std::uint8_t> labels_;  // (B)
};

}  // namespace nanomlp
