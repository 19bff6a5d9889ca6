// Optimizers and learning-rate schedules. Optimizer state is indexed by parameter order, as in
// PyTorch's optimizer state dict; each update follows the equations of PyTorch's documentation
// for torch.optim (the defaults are PyTorch's too). A schedule is a pure function of the step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

struct OptimizerConfig {
  std::string name = "sgd";  // one of optimizer_names()
  double momentum = 0.0;     // SGD and RMSProp
  bool nesterov = false;     // SGD
  double beta1 = 0.9;        // Adam, AdamW
  double beta2 = 0.999;      // Adam, AdamW
  double alpha = 0.99;       // RMSProp smoothing constant
  double eps = 1e-8;         // Adam, AdamW, RMSProp
  // L2 penalty added to the gradient (SGD, Adam, RMSProp) or decoupled decay (AdamW,
  // Loshchilov & Hutter 2019). < 0 means the optimizer's default (0; 0.01 for AdamW).
  double weight_decay = -1.0;
  double clip_grad_norm = 0.0;  // > 0: rescale gradients whose global L2 norm exceeds it
};

const std::vector<std::string>& optimizer_names();  // sgd, adam, adamw, rmsprop

class Optimizer {
 public:
  explicit Optimizer(OptimizerConfig config);
  virtual ~Optimizer() = default;

  // One update of every parameter with learning rate lr. Gradient clipping, when set, happens
  // first (torch.nn.utils.clip_grad_norm_). Returns the gradient norm before clipping when
  // clipping is on, else 0.
  double step(const std::vector<Param<float>>& params, double lr);

  const OptimizerConfig& config() const { return config_; }
  // Whether step() updates each element from its own gradient and state alone, so that a fast
  // path may update slices of a parameter apart (fast/split_step.hpp). True for every update
  // rule here; not with clipping, whose global norm needs every gradient.
  virtual bool elementwise() const { return config_.clip_grad_norm <= 0.0; }
  double weight_decay() const;
  std::int64_t steps() const { return steps_; }

  // The state for checkpoints: the step count and every slot tensor, in a fixed order.
  struct Slot {
    std::string name;  // e.g. "exp_avg.3"
    Matrix* value;
  };
  std::vector<Slot> slots();
  void set_steps(std::int64_t steps) { steps_ = steps; }
  // Allocates the slots for these parameters (done by the first step() otherwise).
  void prepare(const std::vector<Param<float>>& params);

 protected:
  // Updates elements [begin, end) of parameter `index` (w and g have the parameter's shape).
  virtual void update(std::size_t index, std::size_t begin, std::size_t end, Matrix& w,
                      const Matrix& g, double lr) = 0;
  virtual std::vector<std::string> slot_names() const = 0;

  // state_[s][i]: slot s of parameter i, same shape as the parameter.
  std::vector<std::vector<Matrix>> state_;
  OptimizerConfig config_;
  std::int64_t steps_ = 0;  // completed steps; t = steps_ + 1 inside update()
};

// Throws UsageError listing the valid names for an unknown one.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config);

struct ScheduleConfig {
  std::string name = "constant";  // one of schedule_names()
  double base_lr = 0.1;
  std::int64_t total_steps = 0;  // steps of the whole run
  std::int64_t steps_per_epoch = 1;
  // step: multiply by gamma every step_epochs epochs.
  double gamma = 0.1;
  std::int64_t step_epochs = 5;
  // cosine: linear warm-up over warmup_steps, then half a cosine down to min_lr.
  std::int64_t warmup_steps = 0;
  double min_lr = 0.0;
  // one-cycle (Smith & Topin 2018, as torch.optim.lr_scheduler.OneCycleLR with cosine
  // annealing): from base_lr / div_factor up to base_lr over pct_start of the run, then down to
  // base_lr / (div_factor * final_div_factor).
  double pct_start = 0.3;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
};

const std::vector<std::string>& schedule_names();  // constant, step, cosine, onecycle

// The learning rate for the 0-based step. Pure: no state, same answer for the same step.
double learning_rate(const ScheduleConfig& s, std::int64_t step);

// Throws UsageError listing the valid names for an unknown schedule.
void validate_schedule(const ScheduleConfig& s);

}  // namespace nanomlp
