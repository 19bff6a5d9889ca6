#include "nanomlp/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/train/train_state.hpp"

namespace nanomlp {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A learning rate to suggest, to 6 significant digits (1e+06, 100000, 0.005).
std::string format_lr(double lr) {
  std::ostringstream s;
  s << lr;
  return s.str();
}

}  // namespace

namespace {

// Range checks of one setting: the flag, then what it expects in words.
void expect_finite_at_least(const char* flag, double value, double least, const char* expected) {
  if (!(std::isfinite(value) && value >= least)) {
    throw UsageError(std::string(flag) + ": expected " + expected + ", got " +
                     format_number(value));
  }
}

void expect_unit_interval(const char* flag, double value, bool open_right) {
  // [0, 1) or (0, 1]; NaN fails both comparisons.
  const bool ok = open_right ? (value >= 0.0 && value < 1.0) : (value > 0.0 && value <= 1.0);
  if (!ok) {
    throw UsageError(std::string(flag) + ": expected a value in " +
                     (open_right ? "[0, 1)" : "(0, 1]") + ", got " + format_number(value));
  }
}

}  // namespace

void TrainOptions::validate(std::size_t train_count) const {
  if (epochs == 0) throw UsageError("--epochs: expected a positive integer, got 0");
  if (batch_size == 0) throw UsageError("--batch-size: expected a positive integer, got 0");
  if (!(schedule.base_lr > 0.0) || !std::isfinite(schedule.base_lr)) {
    throw UsageError("--lr: expected a positive number, got " + format_number(schedule.base_lr));
  }
  expect_unit_interval("--label-smoothing", label_smoothing, true);
  if (val_split >= train_count) {
    throw UsageError("--val-split: expected fewer than the " + std::to_string(train_count) +
                     " training images, got " + std::to_string(val_split));
  }
  if (early_stop > 0 && val_split == 0) {
    throw UsageError("--early-stop: needs a validation set (--val-split N)");
  }
  // Optimizer settings. A negative weight decay stands for the optimizer's default
  // (OptimizerConfig), so only NaN and infinities are refused here; the CLI refuses an explicit
  // negative --weight-decay. A clip norm of 0 means no clipping.
  expect_unit_interval("--momentum", optimizer.momentum, true);
  if (optimizer.nesterov && optimizer.momentum <= 0.0) {
    throw UsageError("--nesterov: needs --momentum > 0");
  }
  if (!std::isfinite(optimizer.weight_decay)) {
    throw UsageError("--weight-decay: expected a finite number >= 0, got " +
                     format_number(optimizer.weight_decay));
  }
  expect_finite_at_least("--clip-grad-norm", optimizer.clip_grad_norm, 0.0,
                         "a finite positive number");
  // No flags set these (PyTorch's defaults), but a caller of the library may.
  expect_unit_interval("optimizer beta1", optimizer.beta1, true);
  expect_unit_interval("optimizer beta2", optimizer.beta2, true);
  expect_unit_interval("optimizer alpha", optimizer.alpha, true);
  if (!(std::isfinite(optimizer.eps) && optimizer.eps > 0.0)) {
    throw UsageError("optimizer eps: expected a finite positive number, got " +
                     format_number(optimizer.eps));
  }
  make_optimizer(optimizer);  // validates the name
  check_sparse_input_mode(sparse_input);
  validate_schedule(schedule);
  // Schedule settings.
  expect_unit_interval("--gamma", schedule.gamma, false);
  if (schedule.step_epochs < 1) {
    throw UsageError("--step-epochs: expected a positive integer, got " +
                     std::to_string(schedule.step_epochs));
  }
  expect_finite_at_least("--min-lr", schedule.min_lr, 0.0, "a finite number >= 0");
  if (schedule.warmup_steps < 0) {
    throw UsageError("--warmup-epochs: expected >= 0, got " +
                     std::to_string(schedule.warmup_steps) + " warm-up steps");
  }
  if (resume && checkpoint_dir.empty()) {
    throw UsageError("--resume: needs --checkpoint-dir DIR");
  }
}

void TrainOptions::check_sparse_input_mode(const std::string& mode) {
  if (mode != "auto" && mode != "on" && mode != "off") {
    throw UsageError("--sparse-input: expected auto, on or off, got '" + mode + "'");
  }
}

std::string TrainOptions::to_json() const {
  nlohmann::ordered_json j;
  j["epochs"] = epochs;
  j["batch_size"] = batch_size;
  j["seed"] = seed;
  j["init"] = init;
  j["optimizer"] = optimizer.name;
  j["lr"] = schedule.base_lr;
  j["momentum"] = optimizer.momentum;
  j["nesterov"] = optimizer.nesterov;
  j["weight_decay"] = optimizer.weight_decay;
  j["clip_grad_norm"] = optimizer.clip_grad_norm;
  j["beta1"] = optimizer.beta1;
  j["beta2"] = optimizer.beta2;
  j["alpha"] = optimizer.alpha;
  j["eps"] = optimizer.eps;
  j["schedule"] = schedule.name;
  j["warmup_steps"] = schedule.warmup_steps;
  j["min_lr"] = schedule.min_lr;
  j["gamma"] = schedule.gamma;
  j["step_epochs"] = schedule.step_epochs;
  j["pct_start"] = schedule.pct_start;
  j["div_factor"] = schedule.div_factor;
  j["final_div_factor"] = schedule.final_div_factor;
  j["label_smoothing"] = label_smoothing;
  j["val_split"] = val_split;
  j["sparse_input"] = sparse_input;
  j["early_stop"] = early_stop;
  return j.dump();
}

EvalResult evaluate(Network<float>& net, const Dataset& data,
                    const std::vector<std::uint32_t>* indices, bool keep_probabilities,
                    BatchPath* input) {
  const std::size_t n = indices != nullptr ? indices->size() : data.count;
  const std::size_t K = net.architecture().num_classes;
  EvalResult r;
  r.count = n;
  r.confusion.assign(K, std::vector<std::size_t>(K, 0));
  r.predictions.resize(n);
  if (keep_probabilities) r.probabilities.resize(n * K);
  if (n == 0) return r;
  constexpr std::size_t kBatch = 2500;
  std::vector<std::uint32_t> all;
  if (indices == nullptr) {
    all.resize(n);
    std::iota(all.begin(), all.end(), 0u);
    indices = &all;
  }
  DenseBatchPath dense(net.architecture());
  if (input == nullptr) input = &dense;
  std::vector<std::uint8_t> labels(kBatch);
  double loss = 0.0;
  std::size_t correct = 0;
  for (std::size_t start = 0; start < n; start += kBatch) {
    const std::size_t B = std::min(kBatch, n - start);
    input->gather(data, indices->data() + start, B, labels.data());
    const Matrix& z = input->forward(net, /*training=*/false);  // (B, K)
    std::size_t hits = 0;
    loss +=
        kernels::softmax_cross_entropy<float>(z.data(), labels.data(), B, K, 0.0f, nullptr, &hits);
    correct += hits;
    for (std::size_t i = 0; i < B; ++i) {
      const float* zi = z.row(i);
      const auto pred = static_cast<std::uint8_t>(std::max_element(zi, zi + K) - zi);
      r.predictions[start + i] = pred;
      ++r.confusion[labels[i]][pred];
    }
    if (keep_probabilities) {
      kernels::softmax_rows(z.data(), r.probabilities.data() + start * K, B, K);
    }
  }
  r.loss = loss / static_cast<double>(n);
  r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  r.standard_error = std::sqrt(r.accuracy * (1.0 - r.accuracy) / static_cast<double>(n));
  return r;
}

namespace {

// The validation images are drawn once from the seeded generator, before any shuffle; both
// sets are kept in index order.
void split_validation(const TrainOptions& options, std::vector<std::uint32_t>& train_idx,
                      std::vector<std::uint32_t>& val_idx) {
  if (options.val_split == 0) return;
  Rng split_rng(options.seed ^ 0x5eed5eed5eed5eedULL);
  split_rng.shuffle(train_idx);
  val_idx.assign(train_idx.end() - static_cast<std::ptrdiff_t>(options.val_split), train_idx.end());
  train_idx.resize(train_idx.size() - options.val_split);
  std::sort(val_idx.begin(), val_idx.end());
  std::sort(train_idx.begin(), train_idx.end());
}

TrainingError diverged(const TrainOptions& options, std::size_t epoch, std::size_t step,
                       double loss) {
  return TrainingError("training diverged at epoch " + std::to_string(epoch) + ", step " +
                       std::to_string(step + 1) + ": the loss is " +
                       (std::isnan(loss) ? "NaN" : "infinite") +
                       "; try a lower learning rate (--lr " + format_lr(options.schedule.base_lr) +
                       " now, e.g. --lr " + format_lr(options.schedule.base_lr / 10) + ")");
}

// Early stopping (Prechelt 1998, "Early stopping - but when?"): keeps the weights of the best
// validation accuracy; true after `patience` epochs without improvement.
bool early_stop_now(const TrainOptions& options, const EpochRecord& rec, TrainState& state,
                    Network<float>& net) {
  if (options.early_stop == 0) return false;
  if (!state.best_epoch || *rec.val_accuracy > state.best_val_accuracy) {
    state.best_val_accuracy = *rec.val_accuracy;
    state.best_epoch = rec.epoch;
    state.best.take(net);
    return false;
  }
  return rec.epoch - state.best_epoch >= options.early_stop;
}

// Everything one epoch needs besides the network: the rows, the runner, the evaluation inputs.
struct EpochPlan {
  const DataSplit& data;
  const std::vector<std::uint32_t>& base_idx;
  const std::vector<std::uint32_t>& val_idx;
  std::size_t batch_size;
  ScheduleConfig schedule;  // with the run's steps
  bool test_every_epoch;
  EpochRunner& runner;
  BatchPath& val_input;
  BatchPath& test_input;
};

// Shuffles, trains one epoch and evaluates it.
EpochRecord run_epoch(Network<float>& net, Optimizer& optimizer, const TrainOptions& options,
                      const EpochPlan& plan, std::size_t epoch, TrainState& state,
                      std::vector<std::uint32_t>& order, const TrainCallbacks& callbacks) {
  std::copy(plan.base_idx.begin(), plan.base_idx.end(), order.begin());
  state.shuffle_rng.shuffle(order);
  const std::size_t n = order.size(), steps = (n + plan.batch_size - 1) / plan.batch_size;
  const std::size_t report_every = std::max<std::size_t>(1, steps / 50);
  const auto t0 = Clock::now();
  double loss_sum = 0.0, lr = 0.0;
  std::size_t correct = 0, seen = 0;
  auto after_step = [&](std::size_t s, std::size_t nb, double batch_loss, std::size_t hits,
                        double step_lr) {
    lr = step_lr;
    ++state.step;
    loss_sum += batch_loss;
    correct += hits;
    seen += nb;
    if (callbacks.on_progress && ((s + 1) % report_every == 0 || s + 1 == steps)) {
      callbacks.on_progress(s + 1, steps, loss_sum / static_cast<double>(seen),
                            static_cast<double>(correct) / static_cast<double>(seen),
                            seconds_since(t0));
    }
  };
  const Epoch rows{&plan.data.train,
                   order.data(),
                   n,
                   plan.batch_size,
                   &plan.schedule,
                   state.step,
                   static_cast<float>(options.label_smoothing)};
  const EpochOutcome done = plan.runner.run_epoch(net, optimizer, rows, after_step);
  if (done.diverged) throw diverged(options, epoch, done.steps, done.bad_loss);
  EpochRecord rec;
  rec.epoch = epoch;
  rec.seconds = seconds_since(t0);
  rec.lr = lr;
  rec.train_loss = loss_sum / static_cast<double>(std::max<std::size_t>(1, seen));
  rec.train_accuracy =
      static_cast<double>(correct) / static_cast<double>(std::max<std::size_t>(1, seen));
  rec.samples_per_second = static_cast<double>(n) / rec.seconds;
  if (!plan.val_idx.empty()) {
    const EvalResult v = evaluate(net, plan.data.train, &plan.val_idx, false, &plan.val_input);
    rec.val_loss = v.loss;
    rec.val_accuracy = v.accuracy;
  }
  if (plan.test_every_epoch) {
    const EvalResult t = evaluate(net, plan.data.test, nullptr, false, &plan.test_input);
    rec.test_loss = t.loss;
    rec.test_accuracy = t.accuracy;
  }
  return rec;
}

// The plain step over dense floats wherever `method` names nothing.
void fill_plain_defaults(TrainMethod& method, const Architecture& arch) {
  if (!method.runner) {
    method.runner = std::make_unique<PlainEpochRunner>(std::make_unique<DenseBatchPath>(arch));
  }
  if (!method.val_input) method.val_input = std::make_unique<DenseBatchPath>(arch);
  if (!method.test_input) method.test_input = std::make_unique<DenseBatchPath>(arch);
}

}  // namespace

TrainResult train(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                  const TrainCallbacks& callbacks, TrainMethod* method, Checkpoints* checkpoints) {
  options.validate(data.train.count);
  TrainMethod plain;
  if (method == nullptr) method = &plain;
  fill_plain_defaults(*method, net.architecture());

  TrainState state(options.seed);
  std::vector<std::uint32_t> train_idx(data.train.count), val_idx;
  std::iota(train_idx.begin(), train_idx.end(), 0u);
  split_validation(options, train_idx, val_idx);
  // Every epoch shuffles this same base order, so an epoch's batches depend only on the
  // generator state, which a checkpoint restores: a resumed run sees the same batches.
  const std::vector<std::uint32_t> base_idx = train_idx;
  // A batch larger than the training set is the whole set, one short batch per epoch (as a
  // PyTorch DataLoader gives): the same steps, but buffers the set's size, not the flag's
  // (--batch-size 999999999999 would otherwise end in std::bad_alloc).
  const std::size_t B = std::min(options.batch_size, std::max<std::size_t>(1, train_idx.size()));
  const std::size_t steps_per_epoch = (train_idx.size() + B - 1) / B;
  EpochPlan plan{data,
                 base_idx,
                 val_idx,
                 B,
                 options.schedule,
                 options.eval_test_every_epoch.value_or(options.val_split == 0),
                 *method->runner,
                 *method->val_input,
                 *method->test_input};
  plan.schedule.steps_per_epoch = static_cast<std::int64_t>(steps_per_epoch);
  plan.schedule.total_steps = static_cast<std::int64_t>(steps_per_epoch * options.epochs);

  auto optimizer = make_optimizer(options.optimizer);
  net.init(state.init_rng, options.init);
  net.set_rng(&state.dropout_rng);
  optimizer->prepare(net.params());
  TrainResult result;
  result.method = method->description;
  if (options.resume || !options.checkpoint_dir.empty()) {
    if (checkpoints == nullptr) {
      throw std::invalid_argument(
          "train: a checkpoint folder needs a Checkpoints writer "
          "(io/checkpoint.hpp)");
    }
    result.resumed_from_epoch =
        checkpoints->prepare(options, net, *optimizer, state, callbacks.on_message);
  }

  const auto loop_start = Clock::now();
  // A run that early stopping ended before the checkpoint was written stays ended on resume.
  result.stopped_early = options.early_stop > 0 && state.best_epoch > 0 &&
                         state.epoch - state.best_epoch >= options.early_stop;
  for (std::size_t epoch = state.epoch + 1; !result.stopped_early && epoch <= options.epochs;
       ++epoch) {
    const EpochRecord rec =
        run_epoch(net, *optimizer, options, plan, epoch, state, train_idx, callbacks);
    state.epoch = epoch;
    state.records.push_back(rec);
    const bool stop = early_stop_now(options, rec, state, net);
    if (callbacks.on_epoch) callbacks.on_epoch(rec);
    if (!options.checkpoint_dir.empty()) checkpoints->write(options, net, *optimizer, state);
    if (stop) {
      result.stopped_early = true;
      if (callbacks.on_message) {
        callbacks.on_message("early stop: validation accuracy has not improved for " +
                             std::to_string(options.early_stop) + " epochs; keeping epoch " +
                             std::to_string(state.best_epoch));
      }
    }
  }
  if (options.early_stop > 0 && state.best_epoch > 0) {
    state.best.put(net);
    result.best_epoch = state.best_epoch;
  }
  result.train_seconds = seconds_since(loop_start);
  result.epochs = state.records;
  result.test = evaluate(net, data.test, nullptr, false, method->test_input.get());
  return result;
}

}  // namespace nanomlp
