#include "nanomlp/fast/split_step.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp {
namespace {

// The parameters in the order Network::params() lists them for Linear, activation, Linear.
// The head holds all four (of W1 only its rows); the other parts hold their rows of W1 only.
enum ParamIndex : std::size_t { kW1, kB1, kW2, kB2, kParams };

// Copies a part's share of parameter i between the whole tensor and the part's: rows
// [k0, k0 + rows) of W1 (D, H), all of b1, W2 and b2.
void copy_part(std::size_t i, Matrix& whole, Matrix& part, std::size_t k0, bool into_part) {
  float* w = i == kW1 ? whole.row(k0) : whole.data();
  if (into_part) {
    std::copy(w, w + part.size(), part.data());
  } else {
    std::copy(part.data(), part.data() + part.size(), w);
  }
}

}  // namespace

struct SplitStep::Part {
  Part(const Architecture& arch, const OptimizerConfig& config, std::size_t first,
       std::size_t pixels, bool head)
      : k0(first),
        W1(pixels, arch.hidden[0]),
        dW1(pixels, arch.hidden[0]),
        zero_bias(1, arch.hidden[0]),
        optimizer(make_optimizer(config)),
        params{{"W1", &W1, &dW1}} {
    zero_bias.fill(0.0f);
    if (head) {
      const std::size_t H = arch.hidden[0], K = arch.num_classes;
      b1.resize(1, H);
      db1.resize(1, H);
      W2.resize(H, K);
      dW2.resize(H, K);
      b2.resize(1, K);
      db2.resize(1, K);
      act = make_activation<float>(arch.activation);
      params.push_back({"b1", &b1, &db1});
      params.push_back({"W2", &W2, &dW2});
      params.push_back({"b2", &b2, &db2});
    }
    optimizer->prepare(params);
  }

  // Every part.
  std::size_t k0;    // pixels [k0, k0 + W1.rows())
  Matrix W1, dW1;    // (Dp, H) rows k0.. of the whole W1, and its gradient
  Matrix zero_bias;  // (1, H) zeros: b1 is added once, in the head's share
  SparseBatch x[2];  // (N, Dp) this part's pixels of batches s (even, odd s)
  Matrix y;          // (N, H) S_p W1_p + shift 1 1^T W1_p (+ b1 in the head's), read by the head
  std::unique_ptr<Optimizer> optimizer;
  std::vector<Param<float>> params;  // W1 (this part's rows), then b1, W2, b2 for the head
  // Steps whose y this part has handed to the head (in this run); a line of its own.
  alignas(64) std::atomic<std::size_t> y_steps{0};

  // The head only (from a cache line of its own, away from y_steps).
  alignas(64) Matrix b1, W2, b2;     // (1, H), (H, K), (1, K)
  Matrix db1, dW2, db2;              // their gradients, the same shapes
  Matrix a, z, dz, da;               // (N, H) (N, K) (N, K) (N, H); pre is y
  Matrix dpre;                       // (N, H) read by every part
  std::vector<std::uint8_t> labels;  // (N)
  std::unique_ptr<Layer<float>> act;
};

bool SplitStep::computes(Network<float>& net, const Optimizer& optimizer) {
  const auto& layers = net.layers();
  if (layers.size() != 3 || !optimizer.elementwise()) return false;
  const bool linear_ends = dynamic_cast<const Dense<float>*>(layers[0].get()) != nullptr &&
                           dynamic_cast<const Dense<float>*>(layers[2].get()) != nullptr;
  const auto act = make_activation<float>(net.architecture().activation);
  return linear_ends && std::string(layers[1]->type()) == act->type();
}

int SplitStep::parts_for(std::size_t D, int threads) {
  const auto most = static_cast<int>(D / kMinPixelsPerPart);
  const int parts = std::min({threads, most, ThreadPool::kMaxParts});
  return parts >= 2 ? parts : 0;
}

EpochOutcome SplitEpochRunner::run_epoch(Network<float>& net, Optimizer& optimizer,
                                         const Epoch& epoch, const AfterStep& after_step) {
  split_.load(net, optimizer);
  const SplitStep::Outcome done =
      split_.run(*epoch.data, epoch.order, epoch.n, epoch.batch_size, *epoch.schedule,
                 epoch.first_step, epoch.label_smoothing, after_step);
  split_.store(net, optimizer);
  const std::size_t steps = (epoch.n + epoch.batch_size - 1) / epoch.batch_size;
  return {done.steps, done.steps < steps, done.bad_loss};
}

double SplitStep::head_share(const Architecture& arch, double ink, std::size_t parts) {
  const auto H = static_cast<double>(arch.hidden[0]), K = static_cast<double>(arch.num_classes);
  const auto D = static_cast<double>(arch.input_dim);
  const double r = H * (3.0 * K + 16.0) / (1.8 * H * ink + 25.0 * D);
  return std::max(0.0, (1.0 + r) / static_cast<double>(parts) - r);
}

namespace {

// Cuts pixels [0, D) into stretches of the given shares of the total weight (at least `least`
// pixels each): the work of a part follows its inked pixels (encoding, forward and weight
// gradient alike), and MNIST's lower half holds more ink than its upper half (with an even cut
// the part with the lower half ran longer: bench/README.md, "Behind the thresholds").
std::vector<std::size_t> cut_pixels(const std::vector<double>& weight,
                                    const std::vector<double>& shares, std::size_t least) {
  const std::size_t D = weight.size(), P = shares.size();
  double total = 0.0;
  for (double w : weight) total += w;
  std::vector<std::size_t> cuts(P + 1, D);
  cuts[0] = 0;
  double running = 0.0, goal = total * shares[0];
  for (std::size_t k = 0, p = 1; k < D && p < P; ++k) {
    running += weight[k];
    while (p < P && running >= goal) {
      cuts[p] = k + 1;
      goal += total * shares[p++];
    }
  }
  for (std::size_t p = 1; p < P; ++p) {
    cuts[p] = std::clamp(cuts[p], cuts[p - 1] + least, D - (P - p) * least);
  }
  return cuts;
}

}  // namespace

SplitStep::SplitStep(Network<float>& net, const Optimizer& optimizer, int parts,
                     const Dataset* ink_of)
    : arch_(net.architecture()) {
  const Architecture& arch = arch_;
  if (!computes(net, optimizer) || parts < 2 || parts != parts_for(arch.input_dim, parts)) {
    throw std::invalid_argument("SplitStep: " + std::to_string(parts) + " parts for " +
                                arch.describe());
  }
  const OptimizerConfig& config = optimizer.config();
  parts_.resize(static_cast<std::size_t>(parts));
  const std::size_t D = arch.input_dim, P = parts_.size();
  // Weight of a pixel: 1 (its share of the per-pixel work) plus how often it is inked.
  std::vector<double> weight(D, 1.0);
  double ink = static_cast<double>(D) / 5.0;  // inked pixels per image; MNIST's are 19%
  if (ink_of != nullptr && D == kImagePixels && ink_of->count > 0) {
    const std::size_t images = std::min<std::size_t>(ink_of->count, 10000);
    std::size_t inked = 0;
    for (std::size_t i = 0; i < images; ++i) {
      const std::uint8_t* img = ink_of->image(i);
      for (std::size_t k = 0; k < D; ++k) {
        weight[k] += img[k] != 0 ? 1.0 : 0.0;
        inked += img[k] != 0 ? 1 : 0;
      }
    }
    ink = static_cast<double>(inked) / static_cast<double>(images);
  }
  const double head = head_share(arch, ink, P);
  std::vector<double> shares(P, (1.0 - head) / static_cast<double>(P - 1));
  shares[0] = head;
  cuts_ = cut_pixels(weight, shares, kMinPixelsPerPart);
  // Each thread allocates its own part (glibc's malloc gives each thread an arena of its own),
  // so that the small tensors of different parts do not share cache lines.
  ThreadPool::global().run(parts, [&](int part) {
    const auto p = static_cast<std::size_t>(part);
    parts_[p] = std::make_unique<Part>(arch, config, cuts_[p], cuts_[p + 1] - cuts_[p], p == 0);
  });
}

SplitStep::~SplitStep() = default;

void SplitStep::load(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  if (!computes(net, optimizer) || params.size() != kParams ||
      params[kW1].value->cols() != arch_.hidden[0] ||
      params[kW1].value->rows() != arch_.input_dim) {
    throw std::invalid_argument("SplitStep::load: the network is not " + arch_.describe());
  }
  optimizer.prepare(params);
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  for (auto& part : parts_) {
    const std::size_t n = part->params.size();  // a prefix of W1, b1, W2, b2
    for (std::size_t i = 0; i < n; ++i) {
      copy_part(i, *params[i].value, *part->params[i].value, part->k0, true);
    }
    // Slot j of a part is slot kind j / n of its parameter j % n.
    const std::vector<Optimizer::Slot> mine = part->optimizer->slots();
    for (std::size_t j = 0; j < mine.size(); ++j) {
      copy_part(j % n, *whole[j / n * kParams + j % n].value, *mine[j].value, part->k0, true);
    }
    part->optimizer->set_steps(optimizer.steps());
  }
}

void SplitStep::store(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  for (auto& part : parts_) {
    const std::size_t n = part->params.size();
    for (std::size_t i = 0; i < n; ++i) {
      copy_part(i, *params[i].value, *part->params[i].value, part->k0, false);
    }
    const std::vector<Optimizer::Slot> mine = part->optimizer->slots();
    for (std::size_t j = 0; j < mine.size(); ++j) {
      copy_part(j % n, *whole[j / n * kParams + j % n].value, *mine[j].value, part->k0, false);
    }
  }
  optimizer.set_steps(parts_.front()->optimizer->steps());
}

// What the parts of one run() share: its arguments, the two hand-over counters, and how it
// ends. The counters and the stop flag sit on cache lines of their own, apart from the
// read-only arguments every part reads at each step.
struct SplitStep::Run {
  Run(const Dataset& d, const std::uint32_t* rows, std::size_t count, std::size_t batch,
      const ScheduleConfig& sched, std::int64_t first, float smoothing, const StepFn& after,
      const Architecture& arch)
      : data(d),
        idx(rows),
        n(count),
        B(batch),
        steps((count + batch - 1) / batch),
        schedule(sched),
        first_step(first),
        label_smoothing(smoothing),
        after_step(after),
        scale(arch.input_scale()),
        shift(arch.input_shift()) {}

  const Dataset& data;
  const std::uint32_t* idx;  // (n) the rows of data, in training order
  std::size_t n, B, steps;
  const ScheduleConfig& schedule;
  std::int64_t first_step;
  float label_smoothing;
  const StepFn& after_step;
  float scale, shift;  // the input normalisation: x = scale u + shift

  alignas(64) std::atomic<std::size_t> dpre_steps{0};  // steps whose dpre the head handed over
  // Set when the run ends early (a loss that is not finite, a throw): every part leaves at its
  // next wait, or the head at once.
  alignas(64) std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // the first throw of any part
  Outcome outcome;           // written by the head only

  bool stopped() const { return stop.load(std::memory_order_acquire); }
  void fail() {
    if (!failed.exchange(true)) error = std::current_exception();
    stop.store(true, std::memory_order_release);
  }
};

SplitStep::Outcome SplitStep::run(const Dataset& data, const std::uint32_t* idx, std::size_t n,
                                  std::size_t B, const ScheduleConfig& schedule,
                                  std::int64_t first_step, float label_smoothing,
                                  const StepFn& after_step) {
  ThreadPool& pool = ThreadPool::global();
  const int P = parts();
  // The parts wait for each other: each needs a thread of its own.
  if (pool.max_parts() < P || ThreadPool::inside_job()) {
    throw std::logic_error("SplitStep::run: " + std::to_string(P) +
                           " parts need as many idle threads");
  }
  if (B == 0 || n == 0) return {};
  Run run(data, idx, n, B, schedule, first_step, label_smoothing, after_step, arch_);
  run.outcome.steps = run.steps;
  for (auto& part : parts_) part->y_steps.store(0, std::memory_order_relaxed);
  pool.run(P, [&](int part) { run_part(run, static_cast<std::size_t>(part)); });
  if (run.error) std::rethrow_exception(run.error);
  return run.outcome;
}

// Part p's whole run: its first batch, then at each step its share of the forward pass and
// the rest of the step of a worker or of the head, until the last step or a stop.
void SplitStep::run_part(Run& run, std::size_t p) {
  Part& me = *parts_[p];
  try {
    encode(run, me, 0);
    for (std::size_t s = 0; s < run.steps; ++s) {
      forward_share(run, me, p == 0, s);
      const double lr = learning_rate(run.schedule, run.first_step + static_cast<std::int64_t>(s));
      if (!(p > 0 ? worker_step(run, me, s, lr) : head_step(run, s, lr))) break;
    }
  } catch (...) {
    run.fail();
  }
}

// This part's pixels of batch s, into x[s % 2] (the part still needs the other batch).
void SplitStep::encode(Run& run, Part& me, std::size_t s) {
  const std::size_t start = s * run.B, N = std::min(run.B, run.n - start);
  const std::uint32_t* rows = run.idx + start;
  const bool next_full = N == run.B && start + 2 * run.B <= run.n;
  SparseBatch& x = me.x[s % 2];
  kernels::sparse_reshape(x, N, me.W1.rows(), run.shift);
  for (std::size_t b = 0; b < x.blocks(); ++b) {
    kernels::sparse_encode_block(x, b, run.data.images.data() + me.k0, arch_.input_dim, rows,
                                 run.scale, next_full ? rows + run.B : nullptr);
  }
}

// y_p (N, H) = S_p W1_p + shift 1 1^T W1_p: this part's share of the first layer, and the bias
// b1 in the head's.
void SplitStep::forward_share(Run& run, Part& me, bool head, std::size_t s) {
  const SparseBatch& x = me.x[s % 2];
  const std::size_t H = arch_.hidden[0];
  me.y.resize(std::min(run.B, run.n - s * run.B), H);
  const float* bias = head ? me.b1.data() : me.zero_bias.data();
  for (std::size_t b = 0; b < x.blocks(); ++b) {
    kernels::sparse_forward_block(x, b, me.W1.data(), bias, me.y.row(x.block_begin[b]), H);
  }
}

// A worker hands y_p over, encodes the next batch while the head works through the rows, waits
// for dpre, then updates its rows of W1. False when the run stopped instead.
bool SplitStep::worker_step(Run& run, Part& me, std::size_t s, double lr) {
  me.y_steps.store(s + 1, std::memory_order_release);
  if (s + 1 < run.steps) encode(run, me, s + 1);
  spin_until([&] { return run.dpre_steps.load(std::memory_order_acquire) > s || run.stopped(); });
  if (run.dpre_steps.load(std::memory_order_acquire) <= s) return false;
  // dW1_p (Dp, H) = S_p^T dpre + shift 1 db1, over every row of the batch.
  const Part& head = *parts_.front();
  kernels::sparse_weight_grad(me.x[s % 2], head.dpre.data(), arch_.hidden[0], 0, me.W1.rows(),
                              me.dW1.data(), nullptr);
  me.optimizer->step(me.params, lr);
  return true;
}

// The head's rows: pre (N, H) = y_0 + y_1 + ..., summed in part order into y_0;
// a = act(pre);  z (N, K) = a W2 + b2;  the summed loss of the batch into `loss`, and dz.
// False when the run stopped while the head waited for the workers' y_p.
bool SplitStep::head_rows(Run& run, std::size_t s, double* loss, std::size_t* hits) {
  Part& me = *parts_.front();
  for (std::size_t q = 1; q < parts_.size(); ++q) {
    const Part& worker = *parts_[q];
    spin_until([&] { return worker.y_steps.load(std::memory_order_acquire) > s || run.stopped(); });
  }
  if (run.stopped()) return false;
  const std::size_t start = s * run.B, N = me.y.rows(), H = arch_.hidden[0];
  const std::size_t K = arch_.num_classes;
  Matrix& pre = me.y;
  for (std::size_t q = 1; q < parts_.size(); ++q) {
    const float* yq = parts_[q]->y.data();
    float* out = pre.data();
    for (std::size_t j = 0; j < N * H; ++j) out[j] += yq[j];
  }
  me.act->forward(pre, me.a, true);
  me.z.resize(N, K);
  me.dz.resize(N, K);
  me.labels.resize(N);
  for (std::size_t i = 0; i < N; ++i) me.labels[i] = run.data.labels[run.idx[start + i]];
  kernels::gemm<float>(false, false, N, K, H, 1.0f, me.a.data(), H, me.W2.data(), K, 0.0f,
                       me.z.data(), K);
  kernels::add_bias_rows(me.z.data(), me.b2.data(), N, K);
  *loss = kernels::softmax_cross_entropy<float>(me.z.data(), me.labels.data(), N, K,
                                                run.label_smoothing, me.dz.data(), hits);
  return true;
}

// The head's step after its share of the forward pass: the rows, dpre for the workers, the
// output layer's gradients, the caller's after_step, its own rows of W1 and b1, W2 and b2, and
// its pixels of the next batch. False when the run ends at this step.
bool SplitStep::head_step(Run& run, std::size_t s, double lr) {
  Part& me = *parts_.front();
  double loss = 0.0;
  std::size_t hits = 0;
  if (!head_rows(run, s, &loss, &hits)) return false;
  if (!std::isfinite(loss)) {  // stop before any part updates
    run.outcome = {s, loss};
    run.stop.store(true, std::memory_order_release);
    return false;
  }
  const std::size_t N = me.y.rows(), H = arch_.hidden[0], K = arch_.num_classes;
  // da (N, H) = dz W2^T;  dpre = act'(da): what the workers wait for.
  me.da.resize(N, H);
  kernels::gemm<float>(false, true, N, H, K, 1.0f, me.dz.data(), K, me.W2.data(), K, 0.0f,
                       me.da.data(), H);
  me.act->backward(me.da, &me.dpre);
  run.dpre_steps.store(s + 1, std::memory_order_release);
  // dW2 (H, K) = a^T dz;  db2 = 1^T dz.
  kernels::gemm<float>(true, false, H, K, N, 1.0f, me.a.data(), H, me.dz.data(), K, 0.0f,
                       me.dW2.data(), K);
  kernels::sum_rows(me.dz.data(), me.db2.data(), N, K);
  try {
    run.after_step(s, N, loss, hits, lr);
  } catch (...) {
    run.fail();  // this step still completes on every part, then the run ends
  }
  // dW1_0 = S_0^T dpre + shift 1 db1 and db1 = 1^T dpre, in one pass over dpre.
  kernels::sparse_weight_grad(me.x[s % 2], me.dpre.data(), H, 0, me.W1.rows(), me.dW1.data(),
                              me.db1.data());
  me.optimizer->step(me.params, lr);
  if (run.stopped()) return false;
  if (s + 1 < run.steps) encode(run, me, s + 1);
  return true;
}

}  // namespace nanomlp
