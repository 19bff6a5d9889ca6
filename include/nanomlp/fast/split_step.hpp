// Training the one-hidden-layer network (the original's 784-128-10) on several threads.
// Thread p owns a stretch of pixels K_p: those rows of W1 (D, H), their gradient and optimizer
// state, in memory of its own, and the images' pixels K_p, which it encodes itself. Part 0, the
// head, also owns b1, W2 and b2 and takes every row of the batch through the rest of the step:
//
//   every part  encode   S_p = the pixels K_p of every image of the batch, without background
//                        (sparse.hpp); done one step ahead, while the part would otherwise wait
//               forward  y_p (N, H) = S_p W1_p + shift 1 1^T W1_p    (its share of x W1)
//                        plus b1 in the head's y_0                    [workers hand y_p over]
//   the head    rows     pre = y_0 + y_1 + ...;  a = act(pre);  z = a W2 + b2;  the loss
//                        dpre = act'(pre) * (dz W2^T)                     [hands dpre over]
//                        dW2 = a^T dz;  db2 = 1^T dz;  db1 = 1^T dpre;  steps b1, W2, b2
//   every part  update   dW1_p = S_p^T dpre + shift 1 db1;  steps W1_p
//
// The parts hand each other two things per step, each through one counter: the workers' y_p
// to the head, the head's dpre to the workers. No part waits for all the others at a barrier:
// while the head works through the rows, each worker encodes its pixels of the next batch,
// and the head gets a smaller stretch of pixels to make up for its rows (head_share()). The
// weights never move between cores; only y_p and dpre do, (N, H) each. The head's rows phase
// is the one-thread step's, on the same shapes.
//
// Splitting the batch instead, with every thread reading all of W1, moved the 400 KB of weights
// between the cores' caches at every step and ran slower than one thread on the 2-core
// development machine. Splitting the rows' phase over the parts too (each part taking N/P rows,
// then summing the parts' dW2, db2 and db1) cost two barriers per step and ran slower than one
// head (bench/README.md, "Behind the thresholds").
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/fast/sparse.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"
#include "nanomlp/train/step.hpp"

namespace nanomlp {

class SplitStep {
 public:
  // Pixels per part at least. Not measured (the development machine has 2 cores): a bound so
  // that the work every part repeats at each step (waiting, its (N, H) partial output) stays
  // small next to its share of the pixels.
  static constexpr std::size_t kMinPixelsPerPart = 64;

  // Whether this step computes `net`: its built layers are exactly Linear, the architecture's
  // activation, Linear (what the parts compute), and the optimizer updates each element from
  // its own gradient and state (Optimizer::elementwise(); a clipping norm would need every
  // part's gradients at one place).
  static bool computes(Network<float>& net, const Optimizer& optimizer);
  // How many parts `threads` threads can use for D pixels: 0 if fewer than two.
  static int parts_for(std::size_t D, int threads);

  // Parts for `net`, which this step must compute (computes()), each stepped by an optimizer
  // configured like `optimizer`; throws std::invalid_argument otherwise, or when `parts` is not
  // what parts_for() allows. Each thread allocates its own part, so that no two parts share a
  // cache line or a prefetcher's reach. The pixels are cut by their weight, 1 plus the number
  // of the first 10,000 images of `ink_of` that ink them (all equal without it): the head gets
  // head_share() of the total, the other parts equal shares of the rest.
  SplitStep(Network<float>& net, const Optimizer& optimizer, int parts,
            const Dataset* ink_of = nullptr);

  // The head's share of the pixels' work, for images with `ink` inked pixels on average. Its
  // rows phase costs r times the per-pixel work of a step (encoding, forward, weight gradient
  // and update of every pixel), so each of P parts should take (1 + r) / P of that work and
  // the head (1 + r) / P - r of it in pixels. Per image, the rows cost about H (3K + 16)
  // multiply-adds (three products with the K-wide output layer, the activation, the softmax
  // and copies), the pixels about 1.8 H per inked pixel (forward and weight gradient) and 25
  // per pixel (encoding): weights from timing the default step's phases (bench/README.md,
  // "Behind the thresholds"), which give a head share of 0.446 on two threads.
  static double head_share(const Architecture& arch, double ink, std::size_t parts);

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

  // Called on the calling thread (the head's) after each step's loss is known, while the other
  // parts update their weights: step, rows, summed loss of the batch, correct predictions,
  // learning rate. If it throws, every part still completes that step, then run() rethrows.
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
  struct Run;
  // The pieces of run(): what part p does over the whole run, and its steps.
  void run_part(Run& run, std::size_t p);
  void encode(Run& run, Part& me, std::size_t s);
  void forward_share(Run& run, Part& me, bool head, std::size_t s);
  bool worker_step(Run& run, Part& me, std::size_t s, double lr);
  bool head_step(Run& run, std::size_t s, double lr);
  bool head_rows(Run& run, std::size_t s, double* loss, std::size_t* hits);

  Architecture arch_;
  std::vector<std::unique_ptr<Part>> parts_;
  std::vector<std::size_t> cuts_;  // (parts + 1) part p owns pixels [cuts_[p], cuts_[p + 1])
};

// The split step as train()'s EpochRunner (fast/plan.hpp picks it): each epoch loads the
// network and the optimizer into the parts, runs, and stores them back.
class SplitEpochRunner final : public EpochRunner {
 public:
  SplitEpochRunner(Network<float>& net, const Optimizer& optimizer, int parts,
                   const Dataset* ink_of)
      : split_(net, optimizer, parts, ink_of) {}
  EpochOutcome run_epoch(Network<float>& net, Optimizer& optimizer, const Epoch& epoch,
                         const AfterStep& after_step) override;
  SplitStep& split() { return split_; }

 private:
  SplitStep split_;
};

}  // namespace nanomlp
