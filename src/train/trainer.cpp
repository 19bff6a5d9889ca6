#include "nanomlp/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/split_step.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/train/train_state.hpp"

namespace nanomlp {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::size_t first_width(const Architecture& arch) {
  return arch.hidden.empty() ? arch.num_classes : arch.hidden[0];
}

// The inputs of a batch in the form the first layer reads fastest: normalised floats (B, D),
// or the images without their background (nanomlp/nn/sparse.hpp), which for MNIST skips four
// pixels in five.
class BatchInput {
 public:
  BatchInput(bool sparse, const Architecture& arch)
      : sparse_(sparse),
        scale_(arch.input_scale()),
        shift_(arch.input_shift()),
        first_width_(first_width(arch)) {}

  // Reads the images idx[0..B) and their labels. next_idx, when not null, holds the B rows of
  // the next batch, whose images the sparse encoder fetches from memory a step ahead.
  void gather(const Dataset& data, const std::uint32_t* idx, std::size_t B, std::uint8_t* labels,
              const std::uint32_t* next_idx = nullptr) {
    const std::size_t D = kImagePixels;
    for (std::size_t i = 0; i < B; ++i) labels[i] = data.labels[idx[i]];
    ThreadPool& pool = ThreadPool::global();
    if (sparse_) {
      kernels::sparse_reshape(sparse_x_, B, D, shift_);
      const bool parallel = kernels::sparse_parallel(B, first_width_);
      pool.for_slices(sparse_x_.blocks(), parallel, [&](std::size_t begin, std::size_t end) {
        for (std::size_t b = begin; b < end; ++b) {
          kernels::sparse_encode_block(sparse_x_, b, data.images.data(), D, idx, scale_, next_idx);
        }
      });
      return;
    }
    dense_x_.resize(B, D);
    // Rows are independent: split them over the pool (a tenth of the default step otherwise).
    pool.for_slices(B, B * D >= 32768, [&](std::size_t begin, std::size_t end) {
      for (std::size_t i = begin; i < end; ++i) {
        // The images are picked at random from 47 MB: fetch the one after next while
        // converting this one, so that its 13 cache lines arrive in the shadow of the work.
        if (i + 2 < end) {
          const std::uint8_t* ahead = data.image(idx[i + 2]);
          for (std::size_t b = 0; b < D; b += 64) __builtin_prefetch(ahead + b);
        }
        kernels::u8_to_float(data.image(idx[i]), dense_x_.row(i), D, scale_, shift_);
      }
    });
  }

  // Logits (B, K) of the gathered batch.
  const Matrix& forward(Network<float>& net, bool training) {
    return sparse_ ? net.forward(sparse_x_, training) : net.forward(dense_x_, training);
  }

 private:
  bool sparse_;
  float scale_, shift_;
  std::size_t first_width_;  // H of the first layer
  Matrix dense_x_;           // (B, D)
  SparseBatch sparse_x_;     // (B, D)
};

// A learning rate to suggest, to 6 significant digits (1e+06, 100000, 0.005).
std::string format_lr(double lr) {
  std::ostringstream s;
  s << lr;
  return s.str();
}

}  // namespace

bool use_sparse_input(const Dataset& data, const std::string& mode, std::size_t width, bool split) {
  if (mode == "on") return true;
  if (mode == "off") return false;
  if (mode != "auto") {
    throw UsageError("--sparse-input: expected auto, on or off, got '" + mode + "'");
  }
  if (width > kSparseInputMaxWidth) return false;
  // The first images tell the density well enough.
  const std::size_t n = std::min<std::size_t>(data.count, 1000) * kImagePixels;
  if (n == 0) return false;
  const auto nonzero = static_cast<std::size_t>(
      std::count_if(data.images.begin(), data.images.begin() + static_cast<std::ptrdiff_t>(n),
                    [](std::uint8_t u) { return u != 0; }));
  const double most = split ? kSparseInputMaxDensitySplit : kSparseInputMaxDensity;
  return static_cast<double>(nonzero) <= most * static_cast<double>(n);
}

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
  make_optimizer(optimizer);                     // validates the name
  use_sparse_input(Dataset{}, sparse_input, 0);  // validates the mode
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
                    const std::vector<std::uint32_t>* indices, bool keep_probabilities) {
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
  BatchInput input(use_sparse_input(data, "auto", first_width(net.architecture())),
                   net.architecture());
  Matrix p;
  std::vector<std::uint8_t> labels(kBatch);
  double loss = 0.0;
  std::size_t correct = 0;
  for (std::size_t start = 0; start < n; start += kBatch) {
    const std::size_t B = std::min(kBatch, n - start);
    input.gather(data, indices->data() + start, B, labels.data());
    const Matrix& z = input.forward(net, /*training=*/false);  // (B, K)
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

TrainResult train(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                  const TrainCallbacks& callbacks) {
  options.validate(data.train.count);
  const Architecture& arch = net.architecture();
  const std::size_t K = arch.num_classes;

  TrainState state(options.seed);
  // The validation images are drawn once from the seeded generator, before any shuffle.
  std::vector<std::uint32_t> train_idx(data.train.count);
  std::iota(train_idx.begin(), train_idx.end(), 0u);
  std::vector<std::uint32_t> val_idx;
  if (options.val_split > 0) {
    Rng split_rng(options.seed ^ 0x5eed5eed5eed5eedULL);
    split_rng.shuffle(train_idx);
    val_idx.assign(train_idx.end() - static_cast<std::ptrdiff_t>(options.val_split),
                   train_idx.end());
    train_idx.resize(train_idx.size() - options.val_split);
    std::sort(val_idx.begin(), val_idx.end());
    std::sort(train_idx.begin(), train_idx.end());
  }
  const std::size_t n_train = train_idx.size();
  // Every epoch shuffles this same base order, so an epoch's batches depend only on the
  // generator state, which a checkpoint restores: a resumed run sees the same batches.
  const std::vector<std::uint32_t> base_idx = train_idx;
  // A batch larger than the training set is the whole set, one short batch per epoch (as a
  // PyTorch DataLoader gives): the same steps, but buffers the set's size, not the flag's
  // (--batch-size 999999999999 would otherwise end in std::bad_alloc).
  const std::size_t B = std::min(options.batch_size, std::max<std::size_t>(1, n_train));
  const std::size_t steps_per_epoch = (n_train + B - 1) / B;

  ScheduleConfig schedule = options.schedule;
  schedule.steps_per_epoch = static_cast<std::int64_t>(steps_per_epoch);
  schedule.total_steps = static_cast<std::int64_t>(steps_per_epoch * options.epochs);
  auto optimizer = make_optimizer(options.optimizer);
  const bool test_every_epoch = options.eval_test_every_epoch.value_or(options.val_split == 0);

  net.init(state.init_rng, options.init);
  net.set_rng(&state.dropout_rng);
  std::vector<Param<float>> params = net.params();
  optimizer->prepare(params);

  TrainResult result;
  if (options.resume || !options.checkpoint_dir.empty()) {
    result.resumed_from_epoch =
        prepare_checkpoints(options, net, *optimizer, state, callbacks.on_message);
  }

  // Buffers of the step, allocated once: nothing allocates inside the loop once warm.
  // With several threads, the one-hidden-layer network read sparse splits its pixels between
  // them, one thread taking every row through the output layer (nanomlp/fast/split_step.hpp); the
  // other networks split each product.
  const int split_parts =
      SplitStep::parts_for(arch, options.optimizer, true, ThreadPool::global().max_parts());
  const bool sparse =
      use_sparse_input(data.train, options.sparse_input, first_width(arch), split_parts > 0);
  BatchInput input(sparse, arch);
  Matrix dz(B, K);  // (B, K)
  std::vector<std::uint8_t> labels(B);
  std::unique_ptr<SplitStep> split;
  if (sparse && split_parts > 0) {
    split = std::make_unique<SplitStep>(arch, options.optimizer, split_parts, &data.train);
  }

  const auto loop_start = Clock::now();
  // A run that early stopping ended before the checkpoint was written stays ended on resume.
  if (options.early_stop > 0 && state.best_epoch > 0 &&
      state.epoch - state.best_epoch >= options.early_stop) {
    result.stopped_early = true;
  }
  for (std::size_t epoch = state.epoch + 1; !result.stopped_early && epoch <= options.epochs;
       ++epoch) {
    std::copy(base_idx.begin(), base_idx.end(), train_idx.begin());
    state.shuffle_rng.shuffle(train_idx);
    const auto t0 = Clock::now();
    double loss_sum = 0.0;
    std::size_t correct = 0, seen = 0;
    const std::size_t report_every = std::max<std::size_t>(1, steps_per_epoch / 50);
    double lr = 0.0;
    // Bookkeeping after each step, whichever way it was computed.
    auto after_step = [&](std::size_t s, std::size_t nb, double batch_loss, std::size_t hits,
                          double step_lr) {
      lr = step_lr;
      ++state.step;
      loss_sum += batch_loss;
      correct += hits;
      seen += nb;
      if (callbacks.on_progress && ((s + 1) % report_every == 0 || s + 1 == steps_per_epoch)) {
        callbacks.on_progress(s + 1, steps_per_epoch, loss_sum / static_cast<double>(seen),
                              static_cast<double>(correct) / static_cast<double>(seen),
                              seconds_since(t0));
      }
    };
    auto diverged = [&](std::size_t s, double batch_loss) {
      return TrainingError(
          "training diverged at epoch " + std::to_string(epoch) + ", step " +
          std::to_string(s + 1) + ": the loss is " + (std::isnan(batch_loss) ? "NaN" : "infinite") +
          "; try a lower learning rate (--lr " + format_lr(options.schedule.base_lr) +
          " now, e.g. --lr " + format_lr(options.schedule.base_lr / 10) + ")");
    };
    if (split) {
      split->load(net, *optimizer);
      const SplitStep::Outcome done =
          split->run(data.train, train_idx.data(), n_train, B, schedule, state.step,
                     static_cast<float>(options.label_smoothing), after_step);
      split->store(net, *optimizer);
      if (done.steps < steps_per_epoch) throw diverged(done.steps, done.bad_loss);
    } else {
      for (std::size_t s = 0; s < steps_per_epoch; ++s) {
        const std::size_t start = s * B;
        const std::size_t nb = std::min(B, n_train - start);
        if (arch.batch_norm && nb < 2) continue;  // batch statistics need two samples
        const bool next_full = nb == B && start + 2 * B <= n_train;
        input.gather(data.train, train_idx.data() + start, nb, labels.data(),
                     next_full ? train_idx.data() + start + B : nullptr);
        const Matrix& z = input.forward(net, /*training=*/true);  // (nb, K)
        dz.resize(nb, K);
        std::size_t hits = 0;
        const double batch_loss = kernels::softmax_cross_entropy<float>(
            z.data(), labels.data(), nb, K, static_cast<float>(options.label_smoothing), dz.data(),
            &hits);
        if (!std::isfinite(batch_loss)) throw diverged(s, batch_loss);
        net.backward(dz);
        const double step_lr = learning_rate(schedule, state.step);
        optimizer->step(params, step_lr);
        after_step(s, nb, batch_loss, hits, step_lr);
      }
    }
    EpochRecord rec;
    rec.epoch = epoch;
    rec.seconds = seconds_since(t0);
    rec.lr = lr;
    rec.train_loss = loss_sum / static_cast<double>(std::max<std::size_t>(1, seen));
    rec.train_accuracy =
        static_cast<double>(correct) / static_cast<double>(std::max<std::size_t>(1, seen));
    rec.samples_per_second = static_cast<double>(n_train) / rec.seconds;
    if (!val_idx.empty()) {
      const EvalResult v = evaluate(net, data.train, &val_idx);
      rec.val_loss = v.loss;
      rec.val_accuracy = v.accuracy;
    }
    if (test_every_epoch) {
      const EvalResult t = evaluate(net, data.test);
      rec.test_loss = t.loss;
      rec.test_accuracy = t.accuracy;
    }
    state.epoch = epoch;
    state.records.push_back(rec);
    bool stop = false;
    if (options.early_stop > 0) {
      // Keep the weights of the best validation accuracy; stop after `patience` epochs
      // without improvement (Prechelt 1998, "Early stopping - but when?").
      if (!state.best_epoch || *rec.val_accuracy > state.best_val_accuracy) {
        state.best_val_accuracy = *rec.val_accuracy;
        state.best_epoch = epoch;
        state.best.take(net);
      } else if (epoch - state.best_epoch >= options.early_stop) {
        stop = true;
      }
    }
    if (callbacks.on_epoch) callbacks.on_epoch(rec);
    if (!options.checkpoint_dir.empty()) {
      write_checkpoint(options, net, *optimizer, state);
    }
    if (stop) {
      result.stopped_early = true;
      if (callbacks.on_message) {
        callbacks.on_message("early stop: validation accuracy has not improved for " +
                             std::to_string(options.early_stop) + " epochs; keeping epoch " +
                             std::to_string(state.best_epoch));
      }
      break;
    }
  }
  if (options.early_stop > 0 && state.best_epoch > 0) {
    state.best.put(net);
    result.best_epoch = state.best_epoch;
  }
  result.train_seconds = seconds_since(loop_start);
  result.epochs = state.records;
  result.test = evaluate(net, data.test, nullptr, false);
  return result;
}

}  // namespace nanomlp
