#include "nanomlp/split_step.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <string>

#include "nanomlp/kernels.hpp"
#include "nanomlp/thread_pool.hpp"

namespace nanomlp {
namespace {

// The parameters in the order Network::params() lists them for Linear, activation, Linear.
enum ParamIndex : std::size_t { kW1, kB1, kW2, kB2, kParams };

// Copies a part's share of parameter i between the whole tensor and the part's: rows
// [k0, k0 + rows) of W1 (D, H), all of b1, W2 and b2 (every part keeps a copy).
void copy_part(std::size_t i, Matrix& whole, Matrix& part, std::size_t k0, bool into_part) {
  float* w = i == kW1 ? whole.row(k0) : whole.data();
  if (into_part) {
    std::copy(w, w + part.size(), part.data());
  } else {
    std::copy(part.data(), part.data() + part.size(), w);
  }
}

// sum (same shape) += part.
void add(const Matrix& part, Matrix& sum) {
  for (std::size_t j = 0; j < sum.size(); ++j) sum.data()[j] += part.data()[j];
}

}  // namespace

struct SplitStep::Part {
  Part(const Architecture& arch, const OptimizerConfig& config, std::size_t first,
       std::size_t pixels)
      : k0(first),
        W1(pixels, arch.hidden[0]),
        b1(1, arch.hidden[0]),
        W2(arch.hidden[0], arch.num_classes),
        b2(1, arch.num_classes),
        dW1(pixels, arch.hidden[0]),
        db1(1, arch.hidden[0]),
        dW2(arch.hidden[0], arch.num_classes),
        db2(1, arch.num_classes),
        zero_bias(1, arch.hidden[0]),
        dW2_part(arch.hidden[0], arch.num_classes),
        db2_part(1, arch.num_classes),
        db1_part(1, arch.hidden[0]),
        act(make_activation<float>(arch.activation)),
        optimizer(make_optimizer(config)),
        params{{"W1", &W1, &dW1}, {"b1", &b1, &db1}, {"W2", &W2, &dW2}, {"b2", &b2, &db2}} {
    zero_bias.fill(0.0f);
    optimizer->prepare(params);
  }

  std::size_t k0;                    // pixels [k0, k0 + W1.rows())
  Matrix W1;                         // (Dp, H) rows k0.. of the whole W1
  Matrix b1, W2, b2;                 // (1, H), (H, K), (1, K): the same in every part
  Matrix dW1, db1, dW2, db2;         // their gradients, the same shapes
  SparseBatch x;                     // (N, Dp) this part's pixels of the batch
  Matrix zero_bias;                  // (1, H) zeros: b1 is added once, after the sum
  Matrix y;                          // (N, H) S_p W1_p + shift 1 1^T W1_p, read by every part
  Matrix pre, a, z, dz, da, dpre;    // rows R_p: (Np, H) (Np, H) (Np, K) (Np, K) (Np, H) (Np, H)
  Matrix dpre_all;                   // (N, H) dpre of every row: this part's, then the others'
  Matrix dW2_part, db2_part;         // (H, K), (1, K) sums over rows R_p, read by every part
  Matrix db1_part;                   // (1, H) likewise
  double loss = 0;                   // summed over rows R_p, read by every part
  std::size_t hits = 0;              // likewise
  std::vector<std::uint8_t> labels;  // (Np)
  std::unique_ptr<Layer<float>> act;
  std::unique_ptr<Optimizer> optimizer;
  std::vector<Param<float>> params;  // W1 (this part's rows), b1, W2, b2
};

int SplitStep::parts_for(const Architecture& arch, const OptimizerConfig& optimizer,
                         bool sparse_input, int threads) {
  if (!sparse_input || threads < 2 || arch.hidden.size() != 1 || arch.batch_norm ||
      arch.dropout > 0.0 || optimizer.clip_grad_norm > 0.0) {
    return 0;
  }
  const auto most = static_cast<int>(arch.input_dim / kMinPixelsPerPart);
  const int parts = std::min({threads, most, ThreadPool::kMaxParts});
  return parts >= 2 ? parts : 0;
}

namespace {

// Cuts pixels [0, D) into P stretches of equal weight (at least `least` pixels each): the work
// of a part follows its inked pixels (encoding, forward and weight gradient alike), and
// MNIST's lower half holds more ink than its upper half (measured: the part with pixels
// [392, 784) took 2-4 us longer per step).
std::vector<std::size_t> cut_pixels(const std::vector<double>& weight, std::size_t P,
                                    std::size_t least) {
  const std::size_t D = weight.size();
  double total = 0.0;
  for (double w : weight) total += w;
  std::vector<std::size_t> cuts(P + 1, D);
  cuts[0] = 0;
  double running = 0.0;
  for (std::size_t k = 0, p = 1; k < D && p < P; ++k) {
    running += weight[k];
    while (p < P && running >= total * static_cast<double>(p) / static_cast<double>(P)) {
      cuts[p++] = k + 1;
    }
  }
  for (std::size_t p = 1; p < P; ++p) {
    cuts[p] = std::clamp(cuts[p], cuts[p - 1] + least, D - (P - p) * least);
  }
  return cuts;
}

}  // namespace

SplitStep::SplitStep(const Architecture& arch, const OptimizerConfig& config, int parts,
                     const Dataset* ink_of)
    : arch_(arch) {
  if (parts_for(arch, config, true, parts) != parts) {
    throw std::invalid_argument("SplitStep: " + std::to_string(parts) + " parts for " +
                                arch.describe());
  }
  parts_.resize(static_cast<std::size_t>(parts));
  const std::size_t D = arch.input_dim, P = parts_.size();
  // Weight of a pixel: 1 (its share of the per-pixel work) plus how often it is inked.
  std::vector<double> weight(D, 1.0);
  if (ink_of != nullptr && D == kImagePixels) {
    const std::size_t images = std::min<std::size_t>(ink_of->count, 10000);
    for (std::size_t i = 0; i < images; ++i) {
      const std::uint8_t* img = ink_of->image(i);
      for (std::size_t k = 0; k < D; ++k) weight[k] += img[k] != 0 ? 1.0 : 0.0;
    }
  }
  cuts_ = cut_pixels(weight, P, kMinPixelsPerPart);
  // Each thread allocates its own part (glibc's malloc gives each thread an arena of its own),
  // so that the small tensors of different parts do not share cache lines.
  ThreadPool::global().run(parts, [&](int part) {
    const auto p = static_cast<std::size_t>(part);
    parts_[p] = std::make_unique<Part>(arch, config, cuts_[p], cuts_[p + 1] - cuts_[p]);
  });
}

SplitStep::~SplitStep() = default;

void SplitStep::load(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  if (params.size() != kParams || params[kW1].value->cols() != arch_.hidden[0] ||
      params[kW1].value->rows() != arch_.input_dim) {
    throw std::invalid_argument("SplitStep::load: the network is not " + arch_.describe());
  }
  optimizer.prepare(params);
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  for (auto& part : parts_) {
    for (std::size_t i = 0; i < kParams; ++i) {
      copy_part(i, *params[i].value, *part->params[i].value, part->k0, true);
    }
    const std::vector<Optimizer::Slot> mine = part->optimizer->slots();
    for (std::size_t j = 0; j < mine.size(); ++j) {
      copy_part(j % kParams, *whole[j].value, *mine[j].value, part->k0, true);
    }
    part->optimizer->set_steps(optimizer.steps());
  }
}

void SplitStep::store(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  // Every part holds the same b1, W2 and b2 (and their state); the first one's are written back.
  for (auto& part : parts_) {
    const bool first = part == parts_.front();
    for (std::size_t i = 0; i < kParams; ++i) {
      if (i == kW1 || first)
        copy_part(i, *params[i].value, *part->params[i].value, part->k0, false);
    }
    const std::vector<Optimizer::Slot> mine = part->optimizer->slots();
    for (std::size_t j = 0; j < mine.size(); ++j) {
      if (j % kParams == kW1 || first) {
        copy_part(j % kParams, *whole[j].value, *mine[j].value, part->k0, false);
      }
    }
  }
  optimizer.set_steps(parts_.front()->optimizer->steps());
}

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
  Outcome outcome;
  if (B == 0 || n == 0) return outcome;
  const std::size_t D = arch_.input_dim, H = arch_.hidden[0], K = arch_.num_classes;
  const float scale = arch_.input_scale(), shift = arch_.input_shift();
  const std::size_t steps = (n + B - 1) / B;

  SpinBarrier barrier(P);
  outcome.steps = steps;          // written by part 0 only
  std::atomic<bool> stop{false};  // a callback threw: every part leaves at the next barrier
  std::exception_ptr error;
  pool.run(P, [&](int part) {
    const auto p = static_cast<std::size_t>(part), parts = static_cast<std::size_t>(P);
    Part& me = *parts_[p];
    const std::size_t Dp = me.W1.rows();
    for (std::size_t s = 0; s < steps; ++s) {
      const std::size_t start = s * B, N = std::min(B, n - start);
      const std::size_t r0 = N * p / parts, r1 = N * (p + 1) / parts, Np = r1 - r0;
      const std::uint32_t* rows = idx + start;
      const bool next_full = N == B && start + 2 * B <= n;

      // This part's pixels of the batch, and their share of the first layer's output:
      // y_p (N, H) = S_p W1_p + shift 1 1^T W1_p.
      kernels::sparse_reshape(me.x, N, Dp, shift);
      me.y.resize(N, H);
      for (std::size_t b = 0; b < me.x.blocks(); ++b) {
        kernels::sparse_encode_block(me.x, b, data.images.data() + me.k0, D, rows, scale,
                                     next_full ? rows + B : nullptr);
        kernels::sparse_forward_block(me.x, b, me.W1.data(), me.zero_bias.data(),
                                      me.y.row(me.x.block_begin[b]), H);
      }
      barrier.arrive_and_wait();
      if (stop.load(std::memory_order_relaxed)) break;

      // Rows R_p = [r0, r1): pre (Np, H) = b1 + y_0 + y_1 + ..., summed in part order.
      me.pre.resize(Np, H);
      for (std::size_t i = 0; i < Np; ++i) {
        float* out = me.pre.row(i);
        std::copy(me.b1.data(), me.b1.data() + H, out);
        for (const auto& q : parts_) {
          const float* yq = q->y.row(r0 + i);
          for (std::size_t h = 0; h < H; ++h) out[h] += yq[h];
        }
      }
      // a = act(pre);  z (Np, K) = a W2 + b2;  the loss and dz of these rows.
      me.act->forward(me.pre, me.a, true);
      me.z.resize(Np, K);
      me.dz.resize(Np, K);
      me.labels.resize(Np);
      for (std::size_t i = 0; i < Np; ++i) me.labels[i] = data.labels[rows[r0 + i]];
      me.hits = 0;
      me.loss = 0.0;
      if (Np > 0) {
        kernels::gemm<float>(false, false, Np, K, H, 1.0f, me.a.data(), H, me.W2.data(), K, 0.0f,
                             me.z.data(), K);
        kernels::add_bias_rows(me.z.data(), me.b2.data(), Np, K);
        me.loss = kernels::softmax_cross_entropy<float>(me.z.data(), me.labels.data(), Np, K,
                                                        label_smoothing, me.dz.data(), &me.hits);
        // The kernel divides by the rows it was given; the batch mean divides by N.
        const float rescale = static_cast<float>(Np) / static_cast<float>(N);
        if (rescale != 1.0f) {
          for (float& v : me.dz) v *= rescale;
        }
        // dW2_p (H, K) = a^T dz;  db2_p = 1^T dz;  da (Np, H) = dz W2^T;  dpre = act'(da).
        kernels::gemm<float>(true, false, H, K, Np, 1.0f, me.a.data(), H, me.dz.data(), K, 0.0f,
                             me.dW2_part.data(), K);
        kernels::sum_rows(me.dz.data(), me.db2_part.data(), Np, K);
        me.da.resize(Np, H);
        kernels::gemm<float>(false, true, Np, H, K, 1.0f, me.dz.data(), K, me.W2.data(), K, 0.0f,
                             me.da.data(), H);
        me.act->backward(me.da, &me.dpre);
        kernels::sum_rows(me.dpre.data(), me.db1_part.data(), Np, H);
      } else {
        me.dW2_part.fill(0.0f);
        me.db2_part.fill(0.0f);
        me.db1_part.fill(0.0f);
      }
      me.dpre_all.resize(N, H);
      std::copy(me.dpre.data(), me.dpre.data() + Np * H, me.dpre_all.row(r0));
      barrier.arrive_and_wait();

      // The batch's loss, and the gradients of the shared tensors, summed in part order: every
      // part computes the same numbers, so all of them stop at the same step and keep equal
      // copies of b1, W2 and b2.
      double loss = 0.0;
      std::size_t hits = 0;
      me.dW2.fill(0.0f);
      me.db2.fill(0.0f);
      me.db1.fill(0.0f);
      for (std::size_t q = 0; q < parts; ++q) {
        const Part& other = *parts_[q];
        loss += other.loss;
        hits += other.hits;
        add(other.dW2_part, me.dW2);
        add(other.db2_part, me.db2);
        add(other.db1_part, me.db1);
        if (q != p) {  // the other parts' rows of dpre
          const std::size_t q0 = N * q / parts, q1 = N * (q + 1) / parts;
          std::copy(other.dpre_all.row(q0), other.dpre_all.row(q1), me.dpre_all.row(q0));
        }
      }
      if (!std::isfinite(loss)) {
        if (part == 0) outcome = {s, loss};
        break;
      }
      const double lr = learning_rate(schedule, first_step + static_cast<std::int64_t>(s));
      if (part == 0) {
        try {
          after_step(s, N, loss, hits, lr);
        } catch (...) {
          error = std::current_exception();
          stop.store(true, std::memory_order_relaxed);
          continue;  // to the next barrier, where the other parts learn of it
        }
      }
      // dW1_p (Dp, H) = S_p^T dpre + shift 1 db1, over every row of the batch.
      kernels::sparse_weight_grad(me.x, me.dpre_all.data(), H, 0, Dp, me.dW1.data(), nullptr);
      me.optimizer->step(me.params, lr);
    }
  });
  if (error) std::rethrow_exception(error);
  return outcome;
}

}  // namespace nanomlp
