// Training the one-hidden-layer network (the original's 784-128-10) on several threads.
// Thread p owns a stretch of pixels K_p: those rows of W1 (D, H), their gradient and optimizer
// state, in memory of its own, and the images' pixels K_p, which it encodes itself. The batch's
// rows are split too (R_p), for everything after the first layer:
//
//   encode    S_p = the pixels K_p of every image of the batch, without background (sparse.hpp)
//   forward   y_p (N, H) = S_p W1_p + shift 1 1^T W1_p           (the pixels' share of x W1)
//                                                                                  [barrier]
//   rows R_p  pre = b1 + y_0 + y_1 + ...;  a = act(pre);  z = a W2 + b2;  dz = d loss / dz
//             dW2_p = a^T dz;  db2_p = 1^T dz;  dpre = act'(pre) * (dz W2^T);  db1_p = 1^T dpre
//                                                                                  [barrier]
//   update    dW2 = dW2_0 + dW2_1 + ... (and db2, db1, the loss), the same order on every
//             thread; dW1_p = S_p^T dpre + shift 1 db1 over all rows; each thread steps W1_p
//             and its own copy of b1, W2 and b2 (the same numbers on every thread).
//
// So every thread does 1/P of the sparse work (per pixel) and of the rest (per row), and the
// weights never move between cores: only the partial outputs y_p rows (N/P x H from each other
// thread), dpre rows and the small partial gradients do. Splitting the batch instead, with
// every thread reading all of W1, moved the 400 KB of weights between the cores' caches at
// every step and ran slower than one thread on the 2-core development machine.
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
  // Pixels per part at least. Not measured (the development machine has 2 cores): a bound so
  // that the work every part repeats at each step (barriers, its (N, H) partial output) stays
  // small next to its share of the pixels.
  static constexpr std::size_t kMinPixelsPerPart = 64;

  // How many parts a run can use: 0 unless the network is Linear, activation, Linear (no batch
  // norm, no dropout), the input is read sparse, at least two threads work, and gradients are
  // not clipped (their global norm would need every part's gradients at one place).
  static int parts_for(const Architecture& arch, const OptimizerConfig& optimizer,
                       bool sparse_input, int threads);

  // Parts for `arch`, stepped by optimizers configured like `config`. Each thread allocates its
  // own part, so that no two parts share a cache line or a prefetcher's reach. The pixels are
  // cut so that each part gets the same share of the ink of `ink_of` (of its first 10,000
  // images), or the same number of pixels without it.
  SplitStep(const Architecture& arch, const OptimizerConfig& config, int parts,
            const Dataset* ink_of = nullptr);

  // The first pixel of each part, then D: parts + 1 numbers.
  const std::vector<std::size_t>& pixel_cuts() const { return cuts_; }
  ~SplitStep();
  SplitStep(const SplitStep&) = delete;
  SplitStep& operator=(const SplitStep&) = delete;

  int parts() const { return static_cast<int>(parts_.size()); }

  // Copies the network's weights and the optimizer's state and step count into the parts.
  void load(Network<float>& net, Optimizer& optimizer);
  // Copies them back: after store(), net and optimizer are those of a run that took the same
  // steps on one thread (up to the order of the sums over parts).
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
  struct Part;
  Architecture arch_;
  std::vector<std::unique_ptr<Part>> parts_;
  std::vector<std::size_t> cuts_;  // (parts + 1) part p owns pixels [cuts_[p], cuts_[p + 1])
};

}  // namespace nanomlp
