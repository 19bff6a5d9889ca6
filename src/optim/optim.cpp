#include "nanomlp/optim/optim.hpp"

#include <algorithm>
#include <cmath>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"

namespace nanomlp {
namespace {

// Below this many parameters the update is cheaper than waking a second thread.
constexpr std::size_t kParallelMinParameters = std::size_t{1} << 20;

// SGD with momentum and Nesterov (Sutskever et al. 2013, in PyTorch's form):
//   g = grad + wd w;  b = mu b + g (b = g on the first step);
//   g = g + mu b (Nesterov) or g = b;  w -= lr g
class Sgd final : public Optimizer {
 public:
  using Optimizer::Optimizer;

 protected:
  std::vector<std::string> slot_names() const override {
    if (config_.momentum == 0.0) return {};
    return {"momentum_buffer"};
  }
  void update(std::size_t i, std::size_t begin, std::size_t end, Matrix& w, const Matrix& grad,
              double lr) override {
    const float wd = static_cast<float>(weight_decay());
    const float mu = static_cast<float>(config_.momentum);
    const float rate = static_cast<float>(lr);
    float* p = w.data();
    const float* g0 = grad.data();
    if (mu == 0.0f) {
      for (std::size_t k = begin; k < end; ++k) p[k] -= rate * (g0[k] + wd * p[k]);
      return;
    }
    float* b = state_[0][i].data();
    const bool first = steps_ == 0;
    for (std::size_t k = begin; k < end; ++k) {
      const float g = g0[k] + wd * p[k];
      b[k] = first ? g : mu * b[k] + g;
      p[k] -= rate * (config_.nesterov ? g + mu * b[k] : b[k]);
    }
  }
};

// Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019, Algorithm 2):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
// Adam adds wd w to g (L2); AdamW first shrinks w by (1 - lr wd) (decoupled decay).
class Adam final : public Optimizer {
 public:
  Adam(OptimizerConfig config, bool decoupled)
      : Optimizer(std::move(config)), decoupled_(decoupled) {}

 protected:
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  void update(std::size_t i, std::size_t begin, std::size_t end, Matrix& w, const Matrix& grad,
              double lr) override {
    const double t = static_cast<double>(steps_ + 1);
    const double b1 = config_.beta1, b2 = config_.beta2;
    const float bc1 = static_cast<float>(1.0 - std::pow(b1, t));
    const float sqrt_bc2 = static_cast<float>(std::sqrt(1.0 - std::pow(b2, t)));
    const float wd = static_cast<float>(weight_decay());
    const float rate = static_cast<float>(lr), eps = static_cast<float>(config_.eps);
    // 1 - beta is formed in double, as PyTorch does: 1.0f - 0.999f would cancel to
    // 0.00099998713 (1.3e-5 relative error in every second-moment update).
    const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2);
    const float c1 = static_cast<float>(1.0 - b1), c2 = static_cast<float>(1.0 - b2);
    float* p = w.data();
    float* m = state_[0][i].data();
    float* v = state_[1][i].data();
    const float* g0 = grad.data();
    for (std::size_t k = begin; k < end; ++k) {
      float g = g0[k];
      if (decoupled_) {
        p[k] *= 1.0f - rate * wd;
      } else {
        g += wd * p[k];
      }
      m[k] = fb1 * m[k] + c1 * g;
      v[k] = fb2 * v[k] + c2 * g * g;
      p[k] -= (rate / bc1) * m[k] / (std::sqrt(v[k]) / sqrt_bc2 + eps);
    }
  }

 private:
  bool decoupled_;
};

// RMSProp (Hinton, Lecture 6e; PyTorch's form, not centred):
//   v = a v + (1 - a) g^2;  b = mu b + g / (sqrt(v) + eps);  w -= lr b   (b = g/(..) if mu = 0)
class RmsProp final : public Optimizer {
 public:
  using Optimizer::Optimizer;

 protected:
  std::vector<std::string> slot_names() const override {
    if (config_.momentum == 0.0) return {"square_avg"};
    return {"square_avg", "momentum_buffer"};
  }
  void update(std::size_t i, std::size_t begin, std::size_t end, Matrix& w, const Matrix& grad,
              double lr) override {
    const float a = static_cast<float>(config_.alpha), eps = static_cast<float>(config_.eps);
    const float one_minus_a = static_cast<float>(1.0 - config_.alpha);  // in double, as Adam's
    const float mu = static_cast<float>(config_.momentum);
    const float wd = static_cast<float>(weight_decay()), rate = static_cast<float>(lr);
    float* p = w.data();
    float* v = state_[0][i].data();
    float* b = mu != 0.0f ? state_[1][i].data() : nullptr;
    const float* g0 = grad.data();
    for (std::size_t k = begin; k < end; ++k) {
      const float g = g0[k] + wd * p[k];
      v[k] = a * v[k] + one_minus_a * g * g;
      const float step = g / (std::sqrt(v[k]) + eps);
      if (b != nullptr) {
        b[k] = mu * b[k] + step;
        p[k] -= rate * b[k];
      } else {
        p[k] -= rate * step;
      }
    }
  }
};

}  // namespace

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names{"sgd", "adam", "adamw", "rmsprop"};
  return names;
}

Optimizer::Optimizer(OptimizerConfig config) : config_(std::move(config)) {}

double Optimizer::weight_decay() const {
  if (config_.weight_decay >= 0.0) return config_.weight_decay;
  return config_.name == "adamw" ? 0.01 : 0.0;
}

void Optimizer::prepare(const std::vector<Param<float>>& params) {
  const std::size_t slots = slot_names().size();
  if (state_.size() == slots && (slots == 0 || state_[0].size() == params.size())) return;
  state_.assign(slots, {});
  for (auto& slot : state_) {
    for (const auto& p : params) slot.emplace_back(p.value->rows(), p.value->cols());
  }
}

std::vector<Optimizer::Slot> Optimizer::slots() {
  std::vector<Slot> out;
  const auto names = slot_names();
  for (std::size_t s = 0; s < state_.size(); ++s) {
    for (std::size_t i = 0; i < state_[s].size(); ++i) {
      out.push_back({names[s] + "." + std::to_string(i), &state_[s][i]});
    }
  }
  return out;
}

double Optimizer::step(const std::vector<Param<float>>& params, double lr) {
  prepare(params);
  double norm = 0.0;
  if (config_.clip_grad_norm > 0.0) {
    // Global L2 norm over all gradients, accumulated in double for a stable sum.
    double sq = 0.0;
    for (const auto& p : params) {
      for (float g : *p.grad) sq += static_cast<double>(g) * g;
    }
    norm = std::sqrt(sq);
    if (norm > config_.clip_grad_norm) {
      // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6).
      const float scale = static_cast<float>(config_.clip_grad_norm / (norm + 1e-6));
      for (const auto& p : params) {
        for (float& g : *p.grad) g *= scale;
      }
    }
  }
  // Every update is element-wise, so splitting each tensor into contiguous slices, one per
  // thread, gives the same result as one thread. Small networks stay on the calling thread.
  std::size_t total = 0;
  for (const auto& p : params) total += p.value->size();
  ThreadPool& pool = ThreadPool::global();
  const int parts = total >= kParallelMinParameters ? pool.max_parts() : 1;
  pool.run(parts, [&](int part) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      const std::size_t n = params[i].value->size();
      const std::size_t begin =
          n * static_cast<std::size_t>(part) / static_cast<std::size_t>(parts);
      const std::size_t end =
          n * static_cast<std::size_t>(part + 1) / static_cast<std::size_t>(parts);
      if (begin < end) update(i, begin, end, *params[i].value, *params[i].grad, lr);
    }
  });
  ++steps_;
  return norm;
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config) {
  if (config.name == "sgd") return std::make_unique<Sgd>(config);
  if (config.name == "adam") return std::make_unique<Adam>(config, false);
  if (config.name == "adamw") return std::make_unique<Adam>(config, true);
  if (config.name == "rmsprop") return std::make_unique<RmsProp>(config);
  throw UsageError("--optimizer: expected one of " + join_names(optimizer_names()) + ", got '" +
                   config.name + "'");
}

const std::vector<std::string>& schedule_names() {
  static const std::vector<std::string> names{"constant", "step", "cosine", "onecycle"};
  return names;
}

void validate_schedule(const ScheduleConfig& s) {
  if (std::find(schedule_names().begin(), schedule_names().end(), s.name) ==
      schedule_names().end()) {
    throw UsageError("--schedule: expected one of " + join_names(schedule_names()) + ", got '" +
                     s.name + "'");
  }
}

double learning_rate(const ScheduleConfig& s, std::int64_t step) {
  const double lr = s.base_lr;
  if (s.name == "step") {
    const std::int64_t epoch = step / std::max<std::int64_t>(1, s.steps_per_epoch);
    return lr *
           std::pow(s.gamma, static_cast<double>(epoch / std::max<std::int64_t>(1, s.step_epochs)));
  }
  if (s.name == "cosine") {
    if (step < s.warmup_steps) {
      return lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
    }
    const double span =
        static_cast<double>(std::max<std::int64_t>(1, s.total_steps - s.warmup_steps));
    const double progress = std::min(1.0, static_cast<double>(step - s.warmup_steps) / span);
    return s.min_lr + 0.5 * (lr - s.min_lr) * (1.0 + std::cos(M_PI * progress));
  }
  if (s.name == "onecycle") {
    // OneCycleLR's two phases, with phase ends at step pct_start*total - 1 and total - 1.
    const double initial = lr / s.div_factor;
    const double final_lr = initial / s.final_div_factor;
    const double up_end = s.pct_start * static_cast<double>(s.total_steps) - 1.0;
    const double down_end = static_cast<double>(s.total_steps) - 1.0;
    const double t = static_cast<double>(step);
    auto cos_anneal = [](double from, double to, double pct) {
      return to + (from - to) / 2.0 * (std::cos(M_PI * pct) + 1.0);
    };
    if (t <= up_end) return cos_anneal(initial, lr, up_end > 0 ? t / up_end : 1.0);
    const double pct = (t - up_end) / std::max(1e-12, down_end - up_end);
    return cos_anneal(lr, final_lr, std::min(1.0, pct));
  }
  return lr;
}

}  // namespace nanomlp
