#include "nanomlp/train/presets.hpp"

#include "nanomlp/core/errors.hpp"

namespace nanomlp {

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names{"seed", "default", "best"};
  return names;
}

Preset make_preset(const std::string& name) {
  Preset p;
  p.arch.hidden = {128};
  p.options.epochs = 10;
  p.options.batch_size = 64;
  p.options.schedule.base_lr = 0.1;
  p.normalize = name != "seed";
  if (name == "seed") return p;
  p.options.optimizer.momentum = 0.9;
  p.options.optimizer.nesterov = true;
  p.options.optimizer.weight_decay = 5e-4;
  p.options.schedule.name = "cosine";
  p.options.schedule.base_lr = 0.05;
  p.warmup_epochs = 1;
  if (name.empty() || name == "default") return p;
  if (name == "best") {
    p.arch.hidden = {1024, 1024};
    p.arch.batch_norm = true;
    p.arch.dropout = 0.3;
    p.options.epochs = 30;
    p.options.batch_size = 128;
    p.options.schedule.base_lr = 0.1;
    p.options.label_smoothing = 0.1;
    return p;
  }
  throw UsageError("--preset: expected one of " + join_names(preset_names()) + ", got '" + name +
                   "'");
}

double default_lr(const std::string& optimizer) {
  if (optimizer == "adam" || optimizer == "adamw") return 1e-3;
  if (optimizer == "rmsprop") return 1e-2;
  return 0.1;
}

}  // namespace nanomlp
