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

// Copies panel [h0, h0 + Hp) of parameter i between the whole tensor and the panel's: columns
// of W1 (D, H) and b1 (1, H), rows of W2 (H, K), all of b2 (1, K).
void copy_part(std::size_t i, Matrix& whole, Matrix& part, std::size_t h0, bool into_part) {
  auto copy = [into_part](float* w, float* p, std::size_t n) {
    if (into_part) {
      std::copy(w, w + n, p);
    } else {
      std::copy(p, p + n, w);
    }
  };
  switch (i) {
    case kW1:
    case kB1:
      for (std::size_t r = 0; r < whole.rows(); ++r) {
        copy(whole.row(r) + h0, part.row(r), part.cols());
      }
      break;
    case kW2:
      copy(whole.row(h0), part.data(), part.size());
      break;
    default:
      copy(whole.data(), part.data(), part.size());
  }
}

}  // namespace

struct SplitStep::Panel {
  Panel(const Architecture& arch, const OptimizerConfig& config, std::size_t first,
        std::size_t width)
      : h0(first),
        Hp(width),
        W1(arch.input_dim, width),
        b1(1, width),
        W2(width, arch.num_classes),
        b2(1, arch.num_classes),
        dW1(arch.input_dim, width),
        db1(1, width),
        dW2(width, arch.num_classes),
        db2(1, arch.num_classes),
        act(make_activation<float>(arch.activation)),
        optimizer(make_optimizer(config)),
        params{{"W1", &W1, &dW1}, {"b1", &b1, &db1}, {"W2", &W2, &dW2}, {"b2", &b2, &db2}} {
    optimizer->prepare(params);
  }

  std::size_t h0, Hp;                // hidden units [h0, h0 + Hp)
  Matrix W1, b1;                     // (D, Hp), (1, Hp)
  Matrix W2, b2;                     // (Hp, K), (1, K): b2 is the same in every panel
  Matrix dW1, db1;                   // (D, Hp), (1, Hp)
  Matrix dW2, db2;                   // (Hp, K), (1, K)
  Matrix pre, a;                     // (N, Hp) first layer before and after the activation
  Matrix z_part;                     // (N, K) a W2 of this panel: the one matrix other threads read
  Matrix z, dz;                      // (N, K) logits and their gradient, the same on every thread
  Matrix da, dpre;                   // (N, Hp)
  std::vector<std::uint8_t> labels;  // (N)
  std::unique_ptr<Layer<float>> act;
  std::unique_ptr<Optimizer> optimizer;
  std::vector<Param<float>> params;  // W1, b1, W2, b2 as Network::params() orders them
};

int SplitStep::parts_for(const Architecture& arch, const OptimizerConfig& optimizer,
                         bool sparse_input, int threads) {
  if (!sparse_input || threads < 2 || arch.hidden.size() != 1 || arch.batch_norm ||
      arch.dropout > 0.0 || optimizer.clip_grad_norm > 0.0) {
    return 0;
  }
  const auto widest = static_cast<int>(arch.hidden[0] / kMinPanelWidth);
  const int parts = std::min({threads, widest, ThreadPool::kMaxParts});
  return parts >= 2 ? parts : 0;
}

SplitStep::SplitStep(const Architecture& arch, const OptimizerConfig& config, int parts)
    : arch_(arch) {
  if (parts_for(arch, config, true, parts) != parts) {
    throw std::invalid_argument("SplitStep: " + std::to_string(parts) + " panels for " +
                                arch.describe());
  }
  panels_.resize(static_cast<std::size_t>(parts));
  const std::size_t H = arch.hidden[0], P = panels_.size();
  // Each thread allocates its own panel (glibc's malloc gives each thread an arena of its
  // own), so that the small tensors of different panels do not share cache lines.
  ThreadPool::global().run(parts, [&](int part) {
    const auto p = static_cast<std::size_t>(part);
    const std::size_t h0 = H * p / P, h1 = H * (p + 1) / P;
    panels_[p] = std::make_unique<Panel>(arch, config, h0, h1 - h0);
  });
}

SplitStep::~SplitStep() = default;

void SplitStep::load(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  if (params.size() != kParams || params[kW1].value->cols() != arch_.hidden[0]) {
    throw std::invalid_argument("SplitStep::load: the network is not " + arch_.describe());
  }
  optimizer.prepare(params);
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  for (auto& panel : panels_) {
    for (std::size_t i = 0; i < kParams; ++i) {
      copy_part(i, *params[i].value, *panel->params[i].value, panel->h0, true);
    }
    const std::vector<Optimizer::Slot> part = panel->optimizer->slots();
    for (std::size_t j = 0; j < part.size(); ++j) {
      copy_part(j % kParams, *whole[j].value, *part[j].value, panel->h0, true);
    }
    panel->optimizer->set_steps(optimizer.steps());
  }
}

void SplitStep::store(Network<float>& net, Optimizer& optimizer) {
  std::vector<Param<float>> params = net.params();
  const std::vector<Optimizer::Slot> whole = optimizer.slots();
  // Every panel holds the same b2 (and its state); the first one's is written back.
  for (auto& panel : panels_) {
    const bool first = panel == panels_.front();
    for (std::size_t i = 0; i < kParams; ++i) {
      if (i != kB2 || first) {
        copy_part(i, *params[i].value, *panel->params[i].value, panel->h0, false);
      }
    }
    const std::vector<Optimizer::Slot> part = panel->optimizer->slots();
    for (std::size_t j = 0; j < part.size(); ++j) {
      if (j % kParams != kB2 || first) {
        copy_part(j % kParams, *whole[j].value, *part[j].value, panel->h0, false);
      }
    }
  }
  optimizer.set_steps(panels_.front()->optimizer->steps());
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
                           " panels need as many idle threads");
  }
  Outcome outcome;
  if (B == 0 || n == 0) return outcome;
  const std::size_t D = arch_.input_dim, K = arch_.num_classes;
  const float scale = arch_.input_scale(), shift = arch_.input_shift();
  const std::size_t steps = (n + B - 1) / B;
  kernels::sparse_reshape(batch_[0], std::min(B, n), D, shift);

  SpinBarrier barrier(P);
  outcome.steps = steps;          // written by part 0 only
  std::atomic<bool> stop{false};  // a callback threw: every part leaves at the next barrier
  std::exception_ptr error;
  pool.run(P, [&](int part) {
    Panel& me = *panels_[static_cast<std::size_t>(part)];
    const std::size_t Hp = me.Hp;
    for (std::size_t s = 0; s < steps; ++s) {
      const std::size_t start = s * B, N = std::min(B, n - start);
      const std::uint32_t* rows = idx + start;
      SparseBatch& x = batch_[s % 2];
      const std::size_t blocks = x.blocks();
      const auto p = static_cast<std::size_t>(part), parts = static_cast<std::size_t>(P);
      for (std::size_t b = blocks * p / parts; b < blocks * (p + 1) / parts; ++b) {
        kernels::sparse_encode_block(x, b, data.images.data(), rows, scale);
      }
      barrier.arrive_and_wait();
      if (stop.load(std::memory_order_relaxed)) break;
      // Nobody reads the other batch now (everyone has finished step s - 1), and everyone
      // will have passed the next barrier, after this, before encoding into it.
      if (part == 0 && s + 1 < steps) {
        kernels::sparse_reshape(batch_[(s + 1) % 2], std::min(B, n - start - B), D, shift);
      }

      // Forward: pre (N, Hp) = S W1 + b1;  a = act(pre);  z_part (N, K) = a W2.
      me.pre.resize(N, Hp);
      for (std::size_t b = 0; b < blocks; ++b) {
        kernels::sparse_forward_block(x, b, me.W1.data(), me.b1.data(),
                                      me.pre.row(x.block_begin[b]), Hp);
      }
      me.act->forward(me.pre, me.a, true);
      me.z_part.resize(N, K);
      kernels::gemm<float>(false, false, N, K, Hp, 1.0f, me.a.data(), Hp, me.W2.data(), K, 0.0f,
                           me.z_part.data(), K);
      barrier.arrive_and_wait();

      // Loss: z (N, K) = b2 + the panels' parts, summed in panel order on every thread.
      me.z.resize(N, K);
      me.dz.resize(N, K);
      for (std::size_t i = 0; i < N; ++i) {
        float* zi = me.z.row(i);
        std::copy(me.b2.data(), me.b2.data() + K, zi);
        for (const auto& q : panels_) {
          const float* zq = q->z_part.row(i);
          for (std::size_t k = 0; k < K; ++k) zi[k] += zq[k];
        }
      }
      me.labels.resize(N);
      for (std::size_t i = 0; i < N; ++i) me.labels[i] = data.labels[rows[i]];
      std::size_t hits = 0;
      const double loss = kernels::softmax_cross_entropy<float>(
          me.z.data(), me.labels.data(), N, K, label_smoothing, me.dz.data(), &hits);
      // Every part computed the same loss, so all of them stop at the same step.
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

      // Backward: dW2 (Hp, K) = a^T dz;  db2 = 1^T dz;  da (N, Hp) = dz W2^T.
      kernels::gemm<float>(true, false, Hp, K, N, 1.0f, me.a.data(), Hp, me.dz.data(), K, 0.0f,
                           me.dW2.data(), K);
      kernels::sum_rows(me.dz.data(), me.db2.data(), N, K);
      me.da.resize(N, Hp);
      kernels::gemm<float>(false, true, N, Hp, K, 1.0f, me.dz.data(), K, me.W2.data(), K, 0.0f,
                           me.da.data(), Hp);
      me.act->backward(me.da, &me.dpre);
      // dW1 (D, Hp) = S^T dpre + shift 1 db1;  db1 = 1^T dpre.
      kernels::sparse_weight_grad(x, me.dpre.data(), Hp, 0, D, me.dW1.data(), me.db1.data());
      me.optimizer->step(me.params, lr);
    }
  });
  if (error) std::rethrow_exception(error);
  return outcome;
}

}  // namespace nanomlp
