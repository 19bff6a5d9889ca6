// Optimizers and learning-rate schedules: the first steps of every optimizer checked against an
// independent double-precision reference written from the update equations of PyTorch's
// torch.optim documentation (plus one hand-computed number each), gradient clipping as
// torch.nn.utils.clip_grad_norm_, and every schedule against its definition (OneCycleLR's
// phases as torch.optim.lr_scheduler computes them).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/optim/optim.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;
using testing::message_of;

using Vec = std::vector<double>;

// --- An independent reference: torch.optim's pseudo-code, in double. ---------------------------
//
// SGD:      g += wd w;  b = g (t = 1) or mu b + g;  g = g + mu b (nesterov) or b;  w -= lr g
// Adam:     g += wd w;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//           w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
// AdamW:    w -= lr wd w;  then Adam without the L2 term
// RMSprop:  g += wd w;  v = a v + (1-a) g^2;  s = g / (sqrt(v) + eps);
//           b = mu b + s, w -= lr b (mu > 0) or w -= lr s
class Reference {
 public:
  Reference(std::string name, double momentum, bool nesterov, double beta1, double beta2,
            double alpha, double eps, double weight_decay)
      : name_(std::move(name)),
        mu_(momentum),
        nesterov_(nesterov),
        b1_(beta1),
        b2_(beta2),
        alpha_(alpha),
        eps_(eps),
        wd_(weight_decay) {}

  void step(std::vector<Vec>& w, const std::vector<Vec>& grads, double lr) {
    if (m_.empty()) {
      for (const auto& p : w) {
        m_.emplace_back(p.size(), 0.0);
        v_.emplace_back(p.size(), 0.0);
        b_.emplace_back(p.size(), 0.0);
      }
    }
    ++t_;
    for (std::size_t i = 0; i < w.size(); ++i) {
      for (std::size_t k = 0; k < w[i].size(); ++k) update(w[i][k], grads[i][k], i, k, lr);
    }
  }

 private:
  void update(double& w, double g, std::size_t i, std::size_t k, double lr) {
    double& m = m_[i][k];
    double& v = v_[i][k];
    double& b = b_[i][k];
    const auto t = static_cast<double>(t_);
    if (name_ == "sgd") {
      g += wd_ * w;
      if (mu_ != 0.0) {
        b = t_ == 1 ? g : mu_ * b + g;
        g = nesterov_ ? g + mu_ * b : b;
      }
      w -= lr * g;
    } else if (name_ == "adam" || name_ == "adamw") {
      if (name_ == "adamw") {
        w -= lr * wd_ * w;
      } else {
        g += wd_ * w;
      }
      m = b1_ * m + (1 - b1_) * g;
      v = b2_ * v + (1 - b2_) * g * g;
      const double m_hat = m / (1 - std::pow(b1_, t));
      const double v_hat = v / (1 - std::pow(b2_, t));
      w -= lr * m_hat / (std::sqrt(v_hat) + eps_);
    } else if (name_ == "rmsprop") {
      g += wd_ * w;
      v = alpha_ * v + (1 - alpha_) * g * g;
      const double s = g / (std::sqrt(v) + eps_);
      if (mu_ > 0.0) {
        b = mu_ * b + s;
        w -= lr * b;
      } else {
        w -= lr * s;
      }
    } else {
      ADD_FAILURE() << "reference has no optimizer " << name_;
    }
  }

  std::string name_;
  double mu_;
  bool nesterov_;
  double b1_, b2_, alpha_, eps_, wd_;
  std::int64_t t_ = 0;
  std::vector<Vec> m_, v_, b_;
};

// --- Fixture: two parameters (a 1x3 weight and a 2x2 one), three steps of known gradients. ----

constexpr float kW0[] = {0.5f, -1.25f, 2.0f};
constexpr float kW1[] = {0.75f, -0.5f, 1.5f, -2.0f};
// Gradients of each step, different every step (and of both signs, one tiny).
constexpr float kG0[3][3] = {{0.1f, -0.2f, 0.3f}, {-0.4f, 0.05f, 0.2f}, {0.3f, 0.3f, -0.1f}};
constexpr float kG1[3][4] = {
    {0.25f, 1.0f, -0.5f, 0.001f}, {-0.125f, 0.5f, 0.75f, -0.3f}, {0.6f, -0.9f, 0.05f, 0.2f}};

struct Params {
  Matrix w0{1, 3}, g0{1, 3}, w1{2, 2}, g1{2, 2};
  Params() {
    std::copy(std::begin(kW0), std::end(kW0), w0.data());
    std::copy(std::begin(kW1), std::end(kW1), w1.data());
  }
  std::vector<Param<float>> list() { return {{"0.weight", &w0, &g0}, {"1.weight", &w1, &g1}}; }
  void set_grads(int step) {
    std::copy(std::begin(kG0[step]), std::end(kG0[step]), g0.data());
    std::copy(std::begin(kG1[step]), std::end(kG1[step]), g1.data());
  }
};

std::vector<Vec> initial_weights() {
  return {Vec(std::begin(kW0), std::end(kW0)), Vec(std::begin(kW1), std::end(kW1))};
}
std::vector<Vec> grads_of(int step) {
  // The float values the optimizer sees, widened exactly.
  return {Vec(std::begin(kG0[step]), std::end(kG0[step])),
          Vec(std::begin(kG1[step]), std::end(kG1[step]))};
}

// Runs three steps of the optimizer of `config` and of the reference; the weights must agree to
// 1e-6 after every step.
void expect_matches_reference(const OptimizerConfig& config, double lr) {
  auto opt = make_optimizer(config);
  Reference ref(config.name, config.momentum, config.nesterov, config.beta1, config.beta2,
                config.alpha, config.eps, opt->weight_decay());
  Params p;
  auto params = p.list();
  std::vector<Vec> w = initial_weights();
  for (int step = 0; step < 3; ++step) {
    p.set_grads(step);
    opt->step(params, lr);
    ref.step(w, grads_of(step), lr);
    for (std::size_t k = 0; k < 3; ++k) {
      EXPECT_NEAR(p.w0.data()[k], w[0][k], 1e-6) << "param 0[" << k << "] after step " << step + 1;
    }
    for (std::size_t k = 0; k < 4; ++k) {
      EXPECT_NEAR(p.w1.data()[k], w[1][k], 1e-6) << "param 1[" << k << "] after step " << step + 1;
    }
  }
  EXPECT_EQ(opt->steps(), 3);
}

// One step of a fresh optimizer on the fixture; returns weight 0 of parameter 0 (0.5, g 0.1).
double first_weight_after(const OptimizerConfig& config, double lr, int steps = 1) {
  auto opt = make_optimizer(config);
  Params p;
  auto params = p.list();
  for (int s = 0; s < steps; ++s) {
    p.set_grads(s);
    opt->step(params, lr);
  }
  return p.w0.data()[0];
}

OptimizerConfig named(const std::string& name) {
  OptimizerConfig c;
  c.name = name;
  return c;
}

// --- SGD -----------------------------------------------------------------------------------------

TEST(Sgd, PlainMatchesReference) {
  expect_matches_reference(named("sgd"), 0.1);
  // By hand: w = 0.5 - 0.1 * 0.1 = 0.49.
  EXPECT_NEAR(first_weight_after(named("sgd"), 0.1), 0.49, 1e-7);
}

TEST(Sgd, MomentumMatchesReference) {
  OptimizerConfig c = named("sgd");
  c.momentum = 0.9;
  expect_matches_reference(c, 0.1);
  // By hand: step 1: b = g = 0.1, w = 0.5 - 0.01 = 0.49;
  // step 2: g = -0.4, b = 0.9 * 0.1 - 0.4 = -0.31, w = 0.49 + 0.031 = 0.521.
  EXPECT_NEAR(first_weight_after(c, 0.1, 1), 0.49, 1e-7);
  EXPECT_NEAR(first_weight_after(c, 0.1, 2), 0.521, 1e-7);
}

TEST(Sgd, NesterovMatchesReference) {
  OptimizerConfig c = named("sgd");
  c.momentum = 0.9;
  c.nesterov = true;
  expect_matches_reference(c, 0.1);
  // By hand: b = g = 0.1, step direction g + mu b = 0.19, w = 0.5 - 0.019 = 0.481;
  // step 2: b = 0.09 - 0.4 = -0.31, direction -0.4 - 0.279 = -0.679, w = 0.481 + 0.0679.
  EXPECT_NEAR(first_weight_after(c, 0.1, 1), 0.481, 1e-7);
  EXPECT_NEAR(first_weight_after(c, 0.1, 2), 0.5489, 1e-7);
}

TEST(Sgd, WeightDecayMatchesReference) {
  OptimizerConfig c = named("sgd");
  c.weight_decay = 0.1;
  expect_matches_reference(c, 0.1);
  c.momentum = 0.5;
  expect_matches_reference(c, 0.05);
  // By hand: g = 0.1 + 0.1 * 0.5 = 0.15, w = 0.5 - 0.015 = 0.485.
  c.momentum = 0.0;
  EXPECT_NEAR(first_weight_after(c, 0.1), 0.485, 1e-7);
}

TEST(Sgd, DefaultWeightDecayIsZero) {
  EXPECT_EQ(make_optimizer(named("sgd"))->weight_decay(), 0.0);
  EXPECT_EQ(make_optimizer(named("adam"))->weight_decay(), 0.0);
  EXPECT_EQ(make_optimizer(named("rmsprop"))->weight_decay(), 0.0);
  EXPECT_EQ(make_optimizer(named("adamw"))->weight_decay(), 0.01);
  OptimizerConfig c = named("adamw");
  c.weight_decay = 0.0;  // an explicit 0 is kept, not replaced by the default
  EXPECT_EQ(make_optimizer(c)->weight_decay(), 0.0);
}

// --- Adam and AdamW ------------------------------------------------------------------------------

TEST(Adam, DefaultsMatchReference) {
  expect_matches_reference(named("adam"), 1e-3);
  expect_matches_reference(named("adam"), 0.01);
  // By hand: the first step has m_hat = g and v_hat = g^2, so every weight moves by
  // lr g / (|g| + eps) = lr sign(g) (up to eps): 0.5 - 0.01 = 0.49.
  EXPECT_NEAR(first_weight_after(named("adam"), 0.01), 0.49, 1e-7);
  Params p;
  auto params = p.list();
  p.set_grads(0);
  make_optimizer(named("adam"))->step(params, 0.01);
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_NEAR(p.w0.data()[k], kW0[k] - 0.01 * (kG0[0][k] > 0 ? 1 : -1), 1e-6);
  }
}

TEST(Adam, NonDefaultBetasAndL2WeightDecayMatchReference) {
  OptimizerConfig c = named("adam");
  c.beta1 = 0.8;
  c.beta2 = 0.95;
  c.eps = 1e-6;
  expect_matches_reference(c, 0.01);
  c.weight_decay = 0.1;  // L2: added to the gradient, then normalised with it
  expect_matches_reference(c, 0.01);
  // By hand: with L2 the first step is still lr * sign(g + wd w): g = 0.1 + 0.05 > 0 -> 0.49.
  EXPECT_NEAR(first_weight_after(c, 0.01), 0.49, 1e-6);
}

TEST(AdamW, DecoupledDecayDefaultMatchesReference) {
  expect_matches_reference(named("adamw"), 0.01);
  // By hand: w = 0.5 (1 - lr 0.01) - lr sign(g) = 0.49995 - 0.01 = 0.48995.
  EXPECT_NEAR(first_weight_after(named("adamw"), 0.01), 0.48995, 1e-7);
  OptimizerConfig c = named("adamw");
  c.weight_decay = 0.5;
  c.beta1 = 0.5;
  expect_matches_reference(c, 0.05);
  // By hand: 0.5 (1 - 0.05 * 0.5) - 0.05 = 0.4875 - 0.05 = 0.4375.
  EXPECT_NEAR(first_weight_after(c, 0.05), 0.4375, 1e-6);
}

// --- RMSprop -------------------------------------------------------------------------------------

TEST(RmsProp, DefaultsMatchReference) {
  expect_matches_reference(named("rmsprop"), 0.01);
  // By hand: v = 0.01 g^2, sqrt(v) = 0.1 |g|, so the first step is lr * 10 sign(g):
  // 0.5 - 0.01 * 10 = 0.4.
  EXPECT_NEAR(first_weight_after(named("rmsprop"), 0.01), 0.4, 1e-6);
}

TEST(RmsProp, MomentumAndWeightDecayMatchReference) {
  OptimizerConfig c = named("rmsprop");
  c.momentum = 0.9;
  expect_matches_reference(c, 0.01);
  // By hand: step 1 as without momentum (b = 10): w = 0.4. Step 2: g = -0.4,
  // v = 0.99 * 0.0001 + 0.01 * 0.16 = 0.001699, g / sqrt(v) = -9.704277,
  // b = 9 - 9.704277 = -0.704277, w = 0.4 + 0.00704277 = 0.40704277 (eps shifts it by 1e-7).
  EXPECT_NEAR(first_weight_after(c, 0.01, 1), 0.4, 1e-6);
  EXPECT_NEAR(first_weight_after(c, 0.01, 2), 0.4070430, 1e-6);
  c.alpha = 0.9;
  c.weight_decay = 0.01;
  c.eps = 1e-4;
  expect_matches_reference(c, 0.005);
}

// --- Gradient clipping ---------------------------------------------------------------------------

TEST(ClipGradNorm, ScalesAllGradientsByMaxOverNormAndReturnsPreClipNorm) {
  OptimizerConfig c = named("sgd");
  c.clip_grad_norm = 1.0;
  auto opt = make_optimizer(c);
  Matrix w0(1, 2), g0(1, 2), w1(1, 1), g1(1, 1);
  // Global norm over both parameters: sqrt(3^2 + 0^2 + 4^2) = 5.
  g0.data()[0] = 3.0f;
  g0.data()[1] = 0.0f;
  g1.data()[0] = 4.0f;
  std::vector<Param<float>> params{{"a", &w0, &g0}, {"b", &w1, &g1}};
  const double norm = opt->step(params, 1.0);
  EXPECT_NEAR(norm, 5.0, 1e-12);
  const double scale = 1.0 / (5.0 + 1e-6);  // clip_grad_norm_: max_norm / (norm + 1e-6)
  EXPECT_NEAR(g0.data()[0], 3.0 * scale, 1e-6);
  EXPECT_EQ(g0.data()[1], 0.0f);
  EXPECT_NEAR(g1.data()[0], 4.0 * scale, 1e-6);
  // The update used the clipped gradients: w = 0 - 1 * g.
  EXPECT_NEAR(w0.data()[0], -3.0 * scale, 1e-6);
  EXPECT_NEAR(w1.data()[0], -4.0 * scale, 1e-6);
  // By hand: 3 / 5.000001 = 0.59999988.
  EXPECT_NEAR(g0.data()[0], 0.59999988, 1e-7);
}

TEST(ClipGradNorm, BelowTheMaximumLeavesGradientsUnchanged) {
  OptimizerConfig c = named("sgd");
  c.clip_grad_norm = 1.0;
  auto opt = make_optimizer(c);
  Matrix w(1, 2), g(1, 2);
  g.data()[0] = 0.3f;
  g.data()[1] = -0.4f;
  std::vector<Param<float>> params{{"a", &w, &g}};
  EXPECT_NEAR(opt->step(params, 0.5), 0.5, 1e-7);
  EXPECT_EQ(g.data()[0], 0.3f);
  EXPECT_EQ(g.data()[1], -0.4f);
  EXPECT_NEAR(w.data()[0], -0.15, 1e-7);
  EXPECT_NEAR(w.data()[1], 0.2, 1e-7);
}

TEST(ClipGradNorm, OffReturnsZeroAndLeavesGradientsUnchanged) {
  auto opt = make_optimizer(named("sgd"));
  Matrix w(1, 1), g(1, 1);
  g.data()[0] = 100.0f;
  std::vector<Param<float>> params{{"a", &w, &g}};
  EXPECT_EQ(opt->step(params, 0.1), 0.0);
  EXPECT_EQ(g.data()[0], 100.0f);
}

TEST(ClipGradNorm, AppliesBeforeAdamSeesTheGradient) {
  // Adam's moments must hold the clipped gradient: exp_avg = (1 - b1) g_clipped.
  OptimizerConfig c = named("adam");
  c.clip_grad_norm = 0.5;
  auto opt = make_optimizer(c);
  Matrix w(1, 2), g(1, 2);
  g.data()[0] = 6.0f;
  g.data()[1] = 8.0f;
  std::vector<Param<float>> params{{"a", &w, &g}};
  EXPECT_NEAR(opt->step(params, 0.01), 10.0, 1e-9);
  auto slots = opt->slots();
  ASSERT_EQ(slots[0].name, "exp_avg.0");
  EXPECT_NEAR(slots[0].value->data()[0], 0.1 * 6.0 * 0.5 / (10.0 + 1e-6), 1e-7);
  EXPECT_NEAR(slots[0].value->data()[1], 0.1 * 8.0 * 0.5 / (10.0 + 1e-6), 1e-7);
}

// --- Names ---------------------------------------------------------------------------------------

TEST(OptimizerNames, UnknownNameThrowsUsageErrorListingTheValidOnes) {
  EXPECT_THAT(optimizer_names(), ::testing::ElementsAre("sgd", "adam", "adamw", "rmsprop"));
  const std::string msg = message_of<UsageError>([] { make_optimizer(named("lion")); });
  EXPECT_THAT(msg, HasSubstr("lion"));
  for (const char* name : {"sgd", "adam", "adamw", "rmsprop"}) EXPECT_THAT(msg, HasSubstr(name));
  for (const auto& name : optimizer_names()) EXPECT_NE(make_optimizer(named(name)), nullptr);
  EXPECT_THROW(make_optimizer(named("SGD")), UsageError);  // names are case-sensitive
  EXPECT_THROW(make_optimizer(named("")), UsageError);
}

TEST(ScheduleNames, UnknownNameThrowsUsageErrorListingTheValidOnes) {
  EXPECT_THAT(schedule_names(), ::testing::ElementsAre("constant", "step", "cosine", "onecycle"));
  ScheduleConfig s;
  s.name = "exponential";
  const std::string msg = message_of<UsageError>([&] { validate_schedule(s); });
  EXPECT_THAT(msg, HasSubstr("exponential"));
  for (const char* name : {"constant", "step", "cosine", "onecycle"}) {
    EXPECT_THAT(msg, HasSubstr(name));
  }
  for (const auto& name : schedule_names()) {
    s.name = name;
    EXPECT_NO_THROW(validate_schedule(s)) << name;
  }
}

// --- Slots ---------------------------------------------------------------------------------------

std::vector<std::string> slot_names_of(Optimizer& opt) {
  std::vector<std::string> names;
  for (const auto& s : opt.slots()) names.push_back(s.name);
  return names;
}

TEST(OptimizerSlots, NamedBySlotThenParameterIndex) {
  using ::testing::ElementsAre;
  Params p;
  auto params = p.list();
  OptimizerConfig c = named("sgd");
  auto sgd = make_optimizer(c);
  sgd->prepare(params);
  EXPECT_TRUE(sgd->slots().empty());
  c.momentum = 0.9;
  auto momentum = make_optimizer(c);
  momentum->prepare(params);
  EXPECT_THAT(slot_names_of(*momentum), ElementsAre("momentum_buffer.0", "momentum_buffer.1"));
  auto adam = make_optimizer(named("adam"));
  adam->prepare(params);
  EXPECT_THAT(slot_names_of(*adam),
              ElementsAre("exp_avg.0", "exp_avg.1", "exp_avg_sq.0", "exp_avg_sq.1"));
  auto adamw = make_optimizer(named("adamw"));
  adamw->prepare(params);
  EXPECT_EQ(slot_names_of(*adamw), slot_names_of(*adam));
  auto rms = make_optimizer(named("rmsprop"));
  rms->prepare(params);
  EXPECT_THAT(slot_names_of(*rms), ElementsAre("square_avg.0", "square_avg.1"));
  c.name = "rmsprop";
  auto rms_momentum = make_optimizer(c);
  rms_momentum->prepare(params);
  EXPECT_THAT(slot_names_of(*rms_momentum), ElementsAre("square_avg.0", "square_avg.1",
                                                        "momentum_buffer.0", "momentum_buffer.1"));
  // Each slot has its parameter's shape, zero before the first step.
  for (const auto& slot : adam->slots()) {
    const Matrix& shape_of = slot.name.back() == '0' ? p.w0 : p.w1;
    EXPECT_EQ(slot.value->rows(), shape_of.rows()) << slot.name;
    EXPECT_EQ(slot.value->cols(), shape_of.cols()) << slot.name;
    for (float v : *slot.value) EXPECT_EQ(v, 0.0f) << slot.name;
  }
}

TEST(OptimizerSlots, HoldTheStateOfTheirParameter) {
  // After one Adam step, exp_avg.i = (1 - b1) g_i and exp_avg_sq.i = (1 - b2) g_i^2.
  Params p;
  auto params = p.list();
  auto adam = make_optimizer(named("adam"));
  p.set_grads(0);
  adam->step(params, 0.001);
  auto slots = adam->slots();
  ASSERT_EQ(slots.size(), 4u);
  for (std::size_t k = 0; k < 3; ++k) {
    EXPECT_NEAR(slots[0].value->data()[k], 0.1 * kG0[0][k], 1e-7);
    const double v2 = 0.001 * kG0[0][k] * kG0[0][k];  // 1 - b2 is 0.001, not 1.0f - 0.999f
    EXPECT_NEAR(slots[2].value->data()[k], v2, 1e-6 * v2);
  }
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_NEAR(slots[1].value->data()[k], 0.1 * kG1[0][k], 1e-7);
    const double v3 = 0.001 * kG1[0][k] * kG1[0][k];  // 1 - b2 is 0.001, not 1.0f - 0.999f
    EXPECT_NEAR(slots[3].value->data()[k], v3, 1e-6 * v3);
  }
}

TEST(OptimizerSlots, RestoringSlotsAndStepsContinuesTheRunExactly) {
  // What a checkpoint does: copy the slots and the step count into a fresh optimizer.
  for (const char* name : {"sgd", "adam", "adamw", "rmsprop"}) {
    OptimizerConfig c = named(name);
    c.momentum = std::string(name) == "adam" || std::string(name) == "adamw" ? 0.0 : 0.9;
    Params a, b;
    auto pa = a.list(), pb = b.list();
    auto whole = make_optimizer(c), first = make_optimizer(c), second = make_optimizer(c);
    for (int s = 0; s < 3; ++s) {
      a.set_grads(s);
      whole->step(pa, 0.01);
    }
    for (int s = 0; s < 2; ++s) {
      b.set_grads(s);
      first->step(pb, 0.01);
    }
    second->prepare(pb);
    auto from = first->slots(), to = second->slots();
    ASSERT_EQ(from.size(), to.size()) << name;
    for (std::size_t i = 0; i < from.size(); ++i) *to[i].value = *from[i].value;
    second->set_steps(first->steps());
    b.set_grads(2);
    second->step(pb, 0.01);
    for (std::size_t k = 0; k < 3; ++k) EXPECT_EQ(a.w0.data()[k], b.w0.data()[k]) << name;
    for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(a.w1.data()[k], b.w1.data()[k]) << name;
  }
}

// --- Schedules -----------------------------------------------------------------------------------

ScheduleConfig schedule(const std::string& name, double lr) {
  ScheduleConfig s;
  s.name = name;
  s.base_lr = lr;
  return s;
}

// Same step twice, in any order, gives the same value.
void expect_pure(const ScheduleConfig& s) {
  std::vector<double> first;
  for (std::int64_t t : {0, 7, 50, 3, 99, 20}) first.push_back(learning_rate(s, t));
  std::size_t i = 0;
  for (std::int64_t t : {0, 7, 50, 3, 99, 20}) {
    EXPECT_EQ(learning_rate(s, t), first[i++]) << s.name << " step " << t;
  }
  for (std::int64_t t : {20, 99, 3, 50, 7, 0}) EXPECT_EQ(learning_rate(s, t), first[--i]) << s.name;
}

TEST(Schedule, ConstantIsBaseLrAtEveryStep) {
  ScheduleConfig s = schedule("constant", 0.05);
  s.total_steps = 100;
  for (std::int64_t t : {0, 1, 50, 99, 1000}) EXPECT_EQ(learning_rate(s, t), 0.05);
  expect_pure(s);
}

TEST(Schedule, StepMultipliesByGammaEveryStepEpochs) {
  ScheduleConfig s = schedule("step", 0.1);
  s.gamma = 0.1;
  s.step_epochs = 2;
  s.steps_per_epoch = 10;
  s.total_steps = 60;
  EXPECT_NEAR(learning_rate(s, 0), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate(s, 19), 0.1, 1e-15);  // last step of epoch 2
  EXPECT_NEAR(learning_rate(s, 20), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(s, 39), 0.01, 1e-15);
  EXPECT_NEAR(learning_rate(s, 40), 0.001, 1e-15);
  s.gamma = 0.5;
  s.step_epochs = 1;
  EXPECT_NEAR(learning_rate(s, 35), 0.1 * 0.125, 1e-15);
  expect_pure(s);
}

TEST(Schedule, CosineWithWarmup) {
  ScheduleConfig s = schedule("cosine", 0.1);
  s.min_lr = 0.001;
  s.warmup_steps = 10;
  s.total_steps = 100;
  EXPECT_NEAR(learning_rate(s, 0), 0.1 * 1 / 10, 1e-15);
  EXPECT_NEAR(learning_rate(s, 4), 0.1 * 5 / 10, 1e-15);
  EXPECT_NEAR(learning_rate(s, 9), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate(s, 10), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate(s, 55), 0.001 + (0.1 - 0.001) / 2, 1e-15);  // half way down
  // The definition between those points: min + (lr - min) (1 + cos(pi (t - w) / (T - w))) / 2.
  for (std::int64_t t = 10; t < 100; ++t) {
    const double ref = 0.001 + (0.1 - 0.001) * (1 + std::cos(M_PI * (t - 10) / 90.0)) / 2;
    EXPECT_NEAR(learning_rate(s, t), ref, 1e-15) << t;
    if (t > 10) {
      EXPECT_LT(learning_rate(s, t), learning_rate(s, t - 1)) << t;
    }
  }
  EXPECT_NEAR(learning_rate(s, 99), 0.001, 1e-4);
  EXPECT_GT(learning_rate(s, 99), 0.001);
  EXPECT_NEAR(learning_rate(s, 100), 0.001, 1e-15);
  expect_pure(s);
}

TEST(Schedule, CosineWithoutWarmupStartsAtBaseLr) {
  ScheduleConfig s = schedule("cosine", 0.2);
  s.total_steps = 50;
  EXPECT_NEAR(learning_rate(s, 0), 0.2, 1e-15);
  EXPECT_NEAR(learning_rate(s, 25), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate(s, 50), 0.0, 1e-15);
}

// torch.optim.lr_scheduler.OneCycleLR.get_lr (anneal_strategy='cos', three_phase=False), with
// last_epoch = step.
double onecycle_reference(double max_lr, std::int64_t total_steps, double pct_start,
                          double div_factor, double final_div_factor, std::int64_t step) {
  const double initial_lr = max_lr / div_factor;
  const double min_lr = initial_lr / final_div_factor;
  struct Phase {
    double end_step, start_lr, end_lr;
  };
  const Phase phases[2] = {
      {pct_start * static_cast<double>(total_steps) - 1, initial_lr, max_lr},
      {static_cast<double>(total_steps) - 1, max_lr, min_lr},
  };
  auto cos_anneal = [](double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(M_PI * pct) + 1);
  };
  const auto step_num = static_cast<double>(step);
  double start_step = 0;
  for (int i = 0; i < 2; ++i) {
    if (step_num <= phases[i].end_step || i == 1) {
      const double pct = (step_num - start_step) / (phases[i].end_step - start_step);
      return cos_anneal(phases[i].start_lr, phases[i].end_lr, pct);
    }
    start_step = phases[i].end_step;
  }
  return 0;
}

TEST(Schedule, OneCycleMatchesPytorchOneCycleLR) {
  ScheduleConfig s = schedule("onecycle", 0.1);
  s.total_steps = 100;  // pct_start 0.3, div_factor 25, final_div_factor 1e4 (defaults)
  // By hand: starts at max_lr / 25 = 0.004, peaks at step 0.3 * 100 - 1 = 29, ends (step 99)
  // at 0.004 / 1e4 = 4e-7.
  EXPECT_NEAR(learning_rate(s, 0), 0.004, 1e-15);
  EXPECT_NEAR(learning_rate(s, 29), 0.1, 1e-15);
  EXPECT_NEAR(learning_rate(s, 99), 4e-7, 1e-15);
  EXPECT_LT(learning_rate(s, 28), 0.1);
  EXPECT_LT(learning_rate(s, 30), 0.1);
  for (std::int64_t t = 0; t < 100; ++t) {
    EXPECT_NEAR(learning_rate(s, t), onecycle_reference(0.1, 100, 0.3, 25, 1e4, t), 1e-15) << t;
  }
  expect_pure(s);

  // Non-default settings, and a phase boundary that is not a whole step (0.25 * 37 - 1 = 8.25).
  ScheduleConfig o = schedule("onecycle", 0.5);
  o.total_steps = 37;
  o.pct_start = 0.25;
  o.div_factor = 10;
  o.final_div_factor = 100;
  EXPECT_NEAR(learning_rate(o, 0), 0.05, 1e-15);
  EXPECT_NEAR(learning_rate(o, 36), 0.0005, 1e-15);
  for (std::int64_t t = 0; t < 37; ++t) {
    EXPECT_NEAR(learning_rate(o, t), onecycle_reference(0.5, 37, 0.25, 10, 100, t), 1e-14) << t;
  }
  // The peak (step 8.25) falls between steps: step 9 (0.49910) is the highest of the run, just
  // above step 8 (0.49898), and no step reaches max_lr.
  double highest = 0;
  std::int64_t argmax = -1;
  for (std::int64_t t = 0; t < 37; ++t) {
    if (learning_rate(o, t) > highest) {
      highest = learning_rate(o, t);
      argmax = t;
    }
  }
  EXPECT_EQ(argmax, 9);
  EXPECT_LT(highest, 0.5);
  expect_pure(o);
}

}  // namespace
}  // namespace nanomlp
