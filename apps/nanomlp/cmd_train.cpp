// nanomlp train: load the data, build the network, train, report, write the model.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <utility>

#include "commands.hpp"
#include "nanomlp/app/report.hpp"
#include "nanomlp/app/training.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/core/version.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/checkpoint.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/train/metrics.hpp"
#include "nanomlp/train/presets.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp::cli {
namespace {

struct TrainFlags {
  std::optional<std::string> data;
  std::string dataset = "mnist";
  std::string preset;
  std::string hidden;
  std::string activation;
  std::string init;
  double dropout = 0;
  bool batch_norm = false;
  bool normalize = false;
  std::size_t epochs = 0;
  std::size_t batch_size = 0;
  double lr = 0;
  std::string optimizer;
  double momentum = 0;
  bool nesterov = false;
  double weight_decay = 0;
  double clip_grad_norm = 0;
  std::string schedule;
  double warmup_epochs = 0;
  std::size_t step_epochs = 0;
  double gamma = 0;
  double min_lr = 0;
  double label_smoothing = 0;
  std::size_t val_split = 0;
  std::size_t early_stop = 0;
  bool eval_test_every_epoch = false;
  std::uint64_t seed = 0;
  int threads = 0;
  std::string out = "model.safetensors";
  std::string metrics_json;
  std::string report;
  std::string checkpoint_dir;
  bool resume = false;
  std::string sparse_input = "auto";
  bool quiet = false;
};

std::vector<std::size_t> parse_widths(const std::string& text) {
  std::vector<std::size_t> widths;
  std::stringstream ss(text);
  std::string item;
  auto fail = [&] {
    throw UsageError("--hidden: expected comma-separated positive integers such as 512,256, got '" +
                     text + "'");
  };
  while (std::getline(ss, item, ',')) {
    if (item.empty() || item.find_first_not_of("0123456789") != std::string::npos) fail();
    if (item.size() > 7) fail();
    const std::size_t w = std::stoul(item);
    if (w == 0) {
      throw UsageError("--hidden: widths must be positive, got 0 in '" + text + "'");
    }
    widths.push_back(w);
  }
  if (text.empty() || text.back() == ',') fail();
  return widths;
}

// The recipes (README "Recipes" gives the figures each reached).
// - seed: exactly the original NumPy program: 784-128-10, plain SGD lr 0.1, batch 64, 10 epochs,
//   pixels / 255.
// - default: the same 784-128-10 network and 10 epochs, trained well: standardised inputs,
//   SGD with Nesterov momentum 0.9 (Sutskever et al. 2013), weight decay 5e-4, a one-epoch
//   linear warm-up then cosine decay (Loshchilov & Hutter 2017).
// - best: the strongest MLP that trains in under 5 minutes on 2 cores without augmentation:
//   784-1024-1024-10 with batch norm and dropout, the same optimizer and schedule, label
//   smoothing (Szegedy et al. 2016), more epochs.
// Peak resident memory of this process so far, in MiB (Linux reports ru_maxrss in KiB).
double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::string pct(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", fraction * 100.0);
  return buf;
}

void print_epoch(const EpochRecord& r, std::size_t epochs) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "epoch %2zu/%zu  lr %.4g  train loss %.4f acc %s", r.epoch,
                        epochs, r.lr, r.train_loss, pct(r.train_accuracy).c_str());
  std::string line(buf, static_cast<std::size_t>(n));
  if (r.val_loss) {
    std::snprintf(buf, sizeof buf, "  val loss %.4f acc %s", *r.val_loss,
                  pct(*r.val_accuracy).c_str());
    line += buf;
  }
  if (r.test_loss) {
    std::snprintf(buf, sizeof buf, "  test loss %.4f acc %s", *r.test_loss,
                  pct(*r.test_accuracy).c_str());
    line += buf;
  }
  std::snprintf(buf, sizeof buf, "  %.2f s  %.0f samples/s", r.seconds, r.samples_per_second);
  line += buf;
  std::cout << line << std::endl;
}

// Numeric flags whose explicit value the library cannot tell from a default: TrainOptions uses
// a negative weight decay for "the optimizer's default" and a clip norm of 0 for "no clipping";
// the warm-up is a CLI setting in epochs. --threads is checked by CLI11 (add_threads_option); the
// other ranges are TrainOptions::validate's and Architecture::validate's.
template <typename Given>
void check_explicit_values(const Given& given, const TrainFlags& f, std::size_t epochs) {
  if (given("--weight-decay") && !(std::isfinite(f.weight_decay) && f.weight_decay >= 0.0)) {
    throw UsageError("--weight-decay: expected a finite number >= 0, got " +
                     format_number(f.weight_decay));
  }
  if (given("--clip-grad-norm") && !(std::isfinite(f.clip_grad_norm) && f.clip_grad_norm > 0.0)) {
    throw UsageError("--clip-grad-norm: expected a finite positive number, got " +
                     format_number(f.clip_grad_norm));
  }
  if (given("--warmup-epochs") &&
      !(f.warmup_epochs >= 0.0 && f.warmup_epochs <= static_cast<double>(epochs))) {
    throw UsageError("--warmup-epochs: expected a number of epochs from 0 to the run's " +
                     std::to_string(epochs) + " (--epochs), got " + format_number(f.warmup_epochs));
  }
}

// A flag the chosen optimizer or schedule would ignore is a mistake, not a no-op. Only flags
// given on the command line count: a preset's values (momentum 0.9, a one-epoch warm-up) ride
// along unused when --optimizer or --schedule picks one that has no use for them.
template <typename Given>
void check_flag_combinations(const Given& given, const TrainFlags& f, const TrainOptions& opt) {
  const std::string& optimizer = opt.optimizer.name;
  auto optimizer_rule = [&](const char* flag, std::initializer_list<const char*> users,
                            const char* users_text) {
    if (!given(flag)) return;
    for (const char* u : users) {
      if (optimizer == u) return;
    }
    throw UsageError(std::string(flag) + " applies to " + users_text + " only (got --optimizer " +
                     optimizer + ")");
  };
  optimizer_rule("--momentum", {"sgd", "rmsprop"}, "sgd and rmsprop");
  optimizer_rule("--nesterov", {"sgd"}, "sgd");

  const std::string& schedule = opt.schedule.name;
  const std::string origin =
      given("--schedule")
          ? ""
          : ", the " + (f.preset.empty() ? std::string("default") : f.preset) + " preset's";
  auto schedule_rule = [&](const char* flag, const char* user) {
    if (!given(flag) || schedule == user) return;
    throw UsageError(std::string(flag) + " applies to --schedule " + user +
                     " only (got --schedule " + schedule + origin + ")");
  };
  schedule_rule("--gamma", "step");
  schedule_rule("--step-epochs", "step");
  schedule_rule("--min-lr", "cosine");
  schedule_rule("--warmup-epochs", "cosine");
}

// Refuses, before anything is allocated, a network whose parameters cannot fit in memory
// (`--hidden 9999999` otherwise ends in std::bad_alloc). The estimate counts the parameters
// (Network::num_params: weights, biases, batch-norm scales and shifts), their gradients and the
// optimizer's state (sgd: a momentum buffer if momentum > 0; rmsprop: the square average, plus
// a momentum buffer; adam, adamw: two moments), 4-byte floats each, and refuses more than half
// of the physical memory (sysconf). It leaves out the batch's activations and the data, so it
// only refuses the hopeless. Counted in double, so that no width overflows it.
void check_network_fits(const Architecture& arch, const OptimizerConfig& optimizer) {
  double params = 0;
  double in = static_cast<double>(arch.input_dim);
  std::string shape = std::to_string(arch.input_dim);
  for (std::size_t h : arch.hidden) {
    const double width = static_cast<double>(h);
    params += in * width + width + (arch.batch_norm ? 2 * width : 0);
    in = width;
    shape += "-" + std::to_string(h);
  }
  params += in * static_cast<double>(arch.num_classes) + static_cast<double>(arch.num_classes);
  shape += "-" + std::to_string(arch.num_classes);
  const bool momentum = optimizer.momentum > 0;
  double slots = 0;
  if (optimizer.name == "sgd") slots = momentum ? 1 : 0;
  if (optimizer.name == "rmsprop") slots = momentum ? 2 : 1;
  if (optimizer.name == "adam" || optimizer.name == "adamw") slots = 2;
  const double bytes = params * (2 + slots) * sizeof(float);

  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return;  // unknown: let the allocation decide
  const double memory = static_cast<double>(pages) * static_cast<double>(page_size);
  if (bytes <= memory / 2) return;
  auto show = [](double n) {
    if (n < 1e18) return with_thousands(static_cast<std::size_t>(n));
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", n);
    return std::string(buf);
  };
  throw UsageError("--hidden: a " + shape + " network needs " + show(bytes) +
                   " bytes for its parameters, gradients and " + optimizer.name +
                   " state, more than half of this machine's " + show(memory) +
                   " bytes of memory; expected smaller or fewer hidden layers");
}

// Every output is probed before the data is read: a read-only folder is one line, not the end
// of a run. The temporaries a killed earlier run left beside them go, with a line each.
void check_outputs(const TrainFlags& f) {
  std::vector<std::string> removed = check_output_path("--out", f.out);
  for (const auto& [flag, path] :
       {std::pair{"--metrics-json", &f.metrics_json}, std::pair{"--report", &f.report}}) {
    if (path->empty()) continue;
    for (std::string& p : check_output_path(flag, *path)) removed.push_back(std::move(p));
  }
  check_checkpoint_dir(f.checkpoint_dir);
  if (f.quiet) return;
  for (const std::string& p : removed) {
    std::printf("removed %s, left by an interrupted write\n", p.c_str());
  }
}

// What a finished run hands to its --metrics-json document.
struct RunRecord {
  const TrainFlags& flags;
  const TrainOptions& options;
  const Architecture& arch;
  const DataSplit& data;
  const TrainResult& result;
  const SafeTensors& saved;  // the model file as written to --out
};

// The --metrics-json document (README "Command-line reference"): settings, epochs, final, and
// the model it belongs to, which `nanomlp report` checks.
nlohmann::ordered_json metrics_document(const RunRecord& run, double load_seconds,
                                        double total_seconds) {
  const TrainResult& result = run.result;
  nlohmann::ordered_json j;
  j["settings"] = nlohmann::json::parse(run.options.to_json());
  j["settings"]["architecture"] = nlohmann::json::parse(run.arch.to_json());
  j["settings"]["dataset"] = run.data.name;
  j["settings"]["data_dir"] = run.data.dir;
  j["settings"]["threads"] = kernels::num_threads();
  j["settings"]["preset"] = run.flags.preset.empty() ? "default" : run.flags.preset;
  j["settings"]["plan"] = result.method;
  j["epochs"] = result.epochs;
  j["final"] = {{"test_accuracy", result.test.accuracy},
                {"test_loss", result.test.loss},
                {"test_standard_error", result.test.standard_error},
                {"best_epoch", result.best_epoch},
                {"stopped_early", result.stopped_early},
                {"train_seconds", result.train_seconds},
                {"load_seconds", load_seconds},
                {"total_seconds", total_seconds},
                {"peak_rss_mb", peak_rss_mb()}};
  j["final"]["confusion"] = result.test.confusion;
  j["model"] = metrics_model_entry(run.saved);
  return j;
}

// The run's settings: the preset, then every flag given on top of it.
template <typename Given>
Preset settings_from_flags(const Given& given, const TrainFlags& f) {
  Preset run = make_preset(f.preset);
  if (given("--hidden")) run.arch.hidden = parse_widths(f.hidden);
  if (given("--activation")) run.arch.activation = f.activation;
  if (given("--dropout")) run.arch.dropout = f.dropout;
  if (given("--batch-norm")) run.arch.batch_norm = f.batch_norm;
  if (given("--normalize") || given("--no-normalize")) run.normalize = f.normalize;
  if (given("--init")) run.options.init = f.init;
  if (given("--epochs")) run.options.epochs = f.epochs;
  if (given("--batch-size")) run.options.batch_size = f.batch_size;
  if (given("--optimizer")) {
    run.options.optimizer.name = f.optimizer;
    if (!given("--lr")) run.options.schedule.base_lr = default_lr(f.optimizer);
  }
  if (given("--lr")) run.options.schedule.base_lr = f.lr;
  if (given("--momentum")) run.options.optimizer.momentum = f.momentum;
  if (given("--nesterov")) run.options.optimizer.nesterov = f.nesterov;
  // An explicit --momentum 0 turns off the preset's Nesterov momentum with it, instead of
  // failing on a --nesterov the user never gave.
  if (given("--momentum") && f.momentum == 0 && !given("--nesterov")) {
    run.options.optimizer.nesterov = false;
  }
  if (given("--weight-decay")) run.options.optimizer.weight_decay = f.weight_decay;
  if (given("--clip-grad-norm")) run.options.optimizer.clip_grad_norm = f.clip_grad_norm;
  if (given("--schedule")) run.options.schedule.name = f.schedule;
  if (given("--step-epochs")) {
    run.options.schedule.step_epochs = static_cast<std::int64_t>(f.step_epochs);
  }
  if (given("--gamma")) run.options.schedule.gamma = f.gamma;
  if (given("--min-lr")) run.options.schedule.min_lr = f.min_lr;
  if (given("--label-smoothing")) run.options.label_smoothing = f.label_smoothing;
  if (given("--val-split")) run.options.val_split = f.val_split;
  if (given("--early-stop")) run.options.early_stop = f.early_stop;
  if (given("--eval-test-every-epoch")) run.options.eval_test_every_epoch = f.eval_test_every_epoch;
  run.options.seed = f.seed;
  run.options.checkpoint_dir = f.checkpoint_dir;
  run.options.resume = f.resume;
  run.options.sparse_input = f.sparse_input;
  run.arch.dataset = f.dataset;
  return run;
}

// The banner: data, model summary, and the settings line ending in the plan.
void print_banner(const TrainFlags& f, const DataSplit& data, double load_seconds,
                  const Architecture& arch, Network<float>& net, const TrainOptions& opt,
                  const TrainMethod& method) {
  std::printf(
      "nanomlp %s | data: %s from %s (%zu train, %zu test images, loaded in %.2f s)"
      " | %d threads | BLAS: %s\n",
      kVersion, data.name.c_str(), data.dir.c_str(), data.train.count, data.test.count,
      load_seconds, kernels::num_threads(), kernels::blas_info());
  std::printf("model %s:\n%s", arch.describe().c_str(), model_summary(net).c_str());
  std::printf(
      "settings: preset %s, %s lr %g%s%s, schedule %s, weight decay %g, batch %zu, "
      "%zu epochs, seed %llu%s; plan: %s\n",
      f.preset.empty() ? "default" : f.preset.c_str(), opt.optimizer.name.c_str(),
      opt.schedule.base_lr, opt.optimizer.momentum > 0 ? " momentum " : "",
      opt.optimizer.momentum > 0 ? (std::to_string(opt.optimizer.momentum).substr(0, 4) +
                                    (opt.optimizer.nesterov ? " (Nesterov)" : ""))
                                       .c_str()
                                 : "",
      opt.schedule.name.c_str(), opt.optimizer.weight_decay < 0 ? 0.0 : opt.optimizer.weight_decay,
      opt.batch_size, opt.epochs, static_cast<unsigned long long>(opt.seed),
      opt.val_split > 0 ? (", validation " + std::to_string(opt.val_split) + " images").c_str()
                        : "",
      method.description.c_str());
  std::fflush(stdout);
}

// Epoch lines and messages unless --quiet; a live progress bar on a terminal.
TrainCallbacks progress_callbacks(const TrainFlags& f, const TrainOptions& opt) {
  TrainCallbacks callbacks;
  const bool live = !f.quiet && stdout_is_terminal();
  if (!f.quiet) {
    callbacks.on_epoch = [epochs = opt.epochs, live](const EpochRecord& r) {
      if (live) std::cout << "\r\033[K";  // replace the progress bar by the summary line
      print_epoch(r, epochs);
    };
    callbacks.on_message = [live](const std::string& m) {
      if (live) std::cout << "\r\033[K";
      std::cout << m << std::endl;
    };
  }
  if (live) {
    callbacks.on_progress = [batch = opt.batch_size](std::size_t done, std::size_t total,
                                                     double loss, double acc, double seconds) {
      constexpr int kWidth = 24;
      const int filled = static_cast<int>(kWidth * done / std::max<std::size_t>(1, total));
      const double rate = static_cast<double>(done * batch) / std::max(1e-9, seconds);
      const double eta = seconds / static_cast<double>(done) * static_cast<double>(total - done);
      std::printf("\r\033[K[%s%s] %zu/%zu  loss %.4f  acc %.2f%%  %.0f samples/s  %.1f s left",
                  std::string(static_cast<std::size_t>(filled), '#').c_str(),
                  std::string(static_cast<std::size_t>(kWidth - filled), '.').c_str(), done, total,
                  loss, acc * 100.0, rate, eta);
      std::fflush(stdout);
    };
  }
  return callbacks;
}

int run_train(CLI::App& app, const TrainFlags& f) {
  const auto t_start = std::chrono::steady_clock::now();
  auto given = [&](const char* flag) { return app.count(flag) > 0; };

  Preset run = settings_from_flags(given, f);
  Architecture& arch = run.arch;
  TrainOptions& opt = run.options;
  double& warmup_epochs = run.warmup_epochs;

  // Everything that can be checked without the data is checked before loading it: every
  // numeric flag against its range, flags the optimizer or schedule would ignore, the memory
  // the network needs, the output paths.
  check_explicit_values(given, f, opt.epochs);
  arch.validate();
  opt.validate(std::numeric_limits<std::size_t>::max());
  check_flag_combinations(given, f, opt);
  check_network_fits(arch, opt.optimizer);
  check_outputs(f);

  kernels::set_num_threads(f.threads);
  const std::string root = resolve_data_root(f.data);
  const auto t_load = std::chrono::steady_clock::now();
  const DataSplit data = load_dataset(root, f.dataset);
  const double load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  opt.validate(data.train.count);  // checks that need the data (--val-split), before any output
  // A preset's one-epoch warm-up is at most a tenth of a short run; an explicit flag is exact.
  warmup_epochs = std::min(warmup_epochs, static_cast<double>(opt.epochs) / 10.0);
  if (given("--warmup-epochs")) warmup_epochs = f.warmup_epochs;  // checked before loading
  {
    const std::size_t steps_per_epoch =
        (data.train.count - opt.val_split + opt.batch_size - 1) / opt.batch_size;
    opt.schedule.warmup_steps =
        static_cast<std::int64_t>(warmup_epochs * static_cast<double>(steps_per_epoch));
  }

  if (run.normalize) {
    const PixelStats stats = pixel_stats(data.train);
    arch.norm_mean = stats.mean;
    arch.norm_std = stats.std;
  }
  Network<float> net(arch);
  TrainMethod method = plan_training(net, opt, data, ThreadPool::global().max_parts());
  if (!f.quiet) print_banner(f, data, load_seconds, arch, net, opt, method);
  const TrainCallbacks callbacks = progress_callbacks(f, opt);
  const TrainResult result = run_training(net, data, opt, callbacks, &method);

  const std::map<std::string, std::string> meta =
      model_metadata(data.name, opt, result, std::time(nullptr));
  // Kept, so that the metrics' weights hash is taken from the very tensors written to --out.
  const SafeTensors saved = model_to_safetensors(net, meta);
  write_safetensors_file(f.out, saved);
  const double total_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  nlohmann::ordered_json j;
  if (!f.metrics_json.empty() || !f.report.empty()) {
    j = metrics_document(RunRecord{f, opt, arch, data, result, saved}, load_seconds, total_seconds);
  }
  if (!f.metrics_json.empty()) write_file_atomic(f.metrics_json, j.dump(2) + "\n");
  if (!f.report.empty()) {
    write_report(f.report, make_report_input(net, data.test, j, f.out, data.name));
  }
  std::printf("test accuracy %s (loss %.4f, %zu images); trained in %.2f s\n",
              format_accuracy(result.test.accuracy, result.test.standard_error).c_str(),
              result.test.loss, result.test.count, result.train_seconds);
  std::printf("model written to %s\n", f.out.c_str());
  if (!f.metrics_json.empty()) std::printf("metrics written to %s\n", f.metrics_json.c_str());
  if (!f.report.empty()) std::printf("report written to %s\n", f.report.c_str());
  return 0;
}

}  // namespace

// CLI11's own range checks print a 300-digit bound; this says what is wrong in words.
const CLI::Validator kCount(
    [](std::string& text) -> std::string {
      if (!text.empty() && text.size() <= 12 &&
          text.find_first_not_of("0123456789") == std::string::npos) {
        return {};
      }
      return "expected a non-negative integer, got '" + text + "'";
    },
    "COUNT");

Runner add_train(CLI::App& app) {
  auto f = std::make_shared<TrainFlags>();
  app.add_option("--data", f->data,
                 "Data folder holding one sub-folder per dataset "
                 "(default: $NANOMLP_DATA, else ./data)");
  app.add_option("--dataset", f->dataset, "mnist or fashion-mnist")
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}))
      ->capture_default_str();
  app.add_option("--preset", f->preset,
                 "Recipe: default (784-128-10, tuned), seed (the original's settings) or best");
  app.add_option("--hidden", f->hidden,
                 "Hidden layer widths, comma-separated (default 128; best: 1024,1024)");
  app.add_option("--activation", f->activation, "relu, leaky_relu, tanh or gelu (default relu)");
  app.add_option("--init", f->init, "Weight init: auto, he or xavier (default auto)");
  app.add_option("--dropout", f->dropout, "Dropout probability after each hidden layer");
  app.add_flag("--batch-norm", f->batch_norm, "Batch normalisation after each hidden Linear");
  app.add_flag("--normalize,!--no-normalize", f->normalize,
               "Standardise pixels by the training set's mean and std (else pixel / 255)");
  app.add_option("--epochs", f->epochs, "Passes over the training set (default 10; best: 30)")
      ->check(kCount);
  app.add_option("--batch-size", f->batch_size, "Mini-batch size (default 64; best: 128)")
      ->check(kCount);
  app.add_option("--lr", f->lr,
                 "Learning rate (presets: 0.05 default, 0.1 seed and best; with --optimizer: "
                 "PyTorch's default for it)");
  app.add_option("--optimizer", f->optimizer, "sgd, adam, adamw or rmsprop (default sgd)");
  app.add_option("--momentum", f->momentum,
                 "Momentum for sgd and rmsprop (presets default and best: 0.9 Nesterov; seed: 0)");
  app.add_flag("--nesterov", f->nesterov, "Nesterov momentum (sgd)");
  app.add_option("--weight-decay", f->weight_decay,
                 "L2 penalty, decoupled for adamw (presets: 5e-4; seed: 0)");
  app.add_option("--clip-grad-norm", f->clip_grad_norm, "Clip the global gradient norm");
  app.add_option("--schedule", f->schedule,
                 "constant, step, cosine or onecycle (presets: cosine; seed: constant)");
  app.add_option("--warmup-epochs", f->warmup_epochs,
                 "Linear warm-up for cosine, in epochs (presets: 1, at most a tenth of the run)");
  app.add_option("--step-epochs", f->step_epochs, "step schedule: epochs between decays")
      ->check(kCount);
  app.add_option("--gamma", f->gamma, "step schedule: decay factor (default 0.1)");
  app.add_option("--min-lr", f->min_lr, "cosine schedule: final learning rate");
  app.add_option("--label-smoothing", f->label_smoothing, "Label smoothing epsilon");
  app.add_option("--val-split", f->val_split, "Hold out N training images for validation")
      ->check(kCount);
  app.add_option("--early-stop", f->early_stop,
                 "Stop after N epochs without validation improvement; keep the best weights")
      ->check(kCount);
  app.add_flag("--eval-test-every-epoch,!--no-eval-test-every-epoch", f->eval_test_every_epoch,
               "Report the test set after every epoch");
  app.add_option("--seed", f->seed, "Random seed (default 0)");
  add_threads_option(app, f->threads);
  app.add_option("--out", f->out, "Model file to write")->capture_default_str();
  app.add_option("--metrics-json", f->metrics_json, "Write per-epoch metrics as JSON");
  app.add_option("--report", f->report,
                 "Write a self-contained HTML report (curves, confusion, mistakes)");
  app.add_option("--checkpoint-dir", f->checkpoint_dir, "Write a checkpoint after every epoch");
  app.add_flag("--resume", f->resume, "Continue from the newest checkpoint in --checkpoint-dir");
  app.add_option("--sparse-input", f->sparse_input,
                 "First layer skips the background pixels: auto (when it is at most " +
                     std::to_string(kSparseInputMaxWidth) + " wide and at most " +
                     std::to_string(static_cast<int>(kSparseInputMaxDensity * 100)) +
                     "% of pixels are inked, " +
                     std::to_string(static_cast<int>(kSparseInputMaxDensitySplit * 100)) +
                     "% with one hidden layer on 2+ threads), on, off")
      ->capture_default_str();
  app.add_flag("--quiet", f->quiet, "Print only the final result");
  return [&app, f] { return run_train(app, *f); };
}

}  // namespace nanomlp::cli
