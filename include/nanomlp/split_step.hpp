// Training the one-hidden-layer network (the original's 784-128-10) on several threads by
// splitting its hidden units between them: model parallelism. Thread p owns a panel of hidden
// units [h0, h1): those columns of W1 and b1, those rows of W2, their gradients and optimizer
// state, kept in memory of its own. A step then moves only activations between the cores:
//
//   encode    each thread encodes its share of the batch's row blocks (nanomlp/sparse.hpp)
//                                                                                  [barrier]
//   forward   pre_p (N, Hp) = S W1_p + b1_p;  a_p = act(pre_p);  z_p (N, K) = a_p W2_p
//                                                                                  [barrier]
//   loss      z = b2 + z_0 + z_1 + ... (the same order on every thread);  dz = d loss / dz
//   backward  dW2_p = a_p^T dz;  db2 = 1^T dz;  da_p = dz W2_p^T;  dpre_p = act'(pre_p) * da_p
//             dW1_p = S^T dpre_p + shift 1 db1_p;  db1_p = 1^T dpre_p
//   update    each thread steps its own panel with its own optimizer (the updates are
//             element-wise, so this is the optimizer's step on the whole network).
//
// Every thread computes the loss and dz itself (N x K numbers, cheaper than a third barrier),
// so all of them see the same values and b2 stays the same in every panel.
//
// Why not split the batch instead: every thread would then update all of W1, and on the 2-core
// development machine moving the 400 KB of weights between the cores at every step cost more
// than the split saved (0.137 s per epoch on one thread, 0.20 s on two).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nanomlp/data.hpp"
#include "nanomlp/network.hpp"
#include "nanomlp/optim.hpp"
#include "nanomlp/sparse.hpp"

namespace nanomlp {

class SplitStep {
 public:
  // Hidden units per panel at least: one vector of 16 floats.
  static constexpr std::size_t kMinPanelWidth = 16;

  // How many panels a run can use: 0 unless the network is Linear, activation, Linear (no batch
  // norm, no dropout), the input is read sparse, at least two threads work, and gradients are
  // not clipped (their global norm would need every panel's gradients at one place).
  static int parts_for(const Architecture& arch, const OptimizerConfig& optimizer,
                       bool sparse_input, int threads);

  // Panels for `net`, stepped by optimizers configured like `config`. Each thread allocates its
  // own panel, so that no two panels share a cache line or a prefetcher's reach.
  SplitStep(const Architecture& arch, const OptimizerConfig& config, int parts);
  ~SplitStep();
  SplitStep(const SplitStep&) = delete;
  SplitStep& operator=(const SplitStep&) = delete;

  int parts() const { return static_cast<int>(panels_.size()); }

  // Copies the network's weights and the optimizer's state and step count into the panels.
  void load(Network<float>& net, Optimizer& optimizer);
  // Copies them back: after store(), net and optimizer are those of a run that took the same
  // steps on one thread (up to the order of the sums in z).
  void store(Network<float>& net, Optimizer& optimizer);

  // Called on the calling thread after each step's loss is known: step, rows, summed loss of
  // the batch, correct predictions, learning rate.
  using StepFn = std::function<void(std::size_t, std::size_t, double, std::size_t, double)>;

  struct Outcome {
    std::size_t steps = 0;  // steps taken
    double bad_loss = 0;    // the loss that stopped the run early (NaN or infinite), if any
  };

  // Trains on the rows idx[0..n) of `data` in batches of B, ceil(n / B) steps, the first with
  // the schedule's step `first_step`. Stops before updating at a step whose loss is not finite.
  Outcome run(const Dataset& data, const std::uint32_t* idx, std::size_t n, std::size_t B,
              const ScheduleConfig& schedule, std::int64_t first_step, float label_smoothing,
              const StepFn& after_step);

 private:
  struct Panel;
  Architecture arch_;
  std::vector<std::unique_ptr<Panel>> panels_;
  SparseBatch batch_[2];  // step s encodes into batch_[s % 2] while no thread reads it
};

}  // namespace nanomlp
