// The recipes of --preset (README "Recipes"): everything a run sets before its own flags.
//   seed     the original program: 784-128-10 ReLU, SGD lr 0.1, batch 64, 10 epochs, pixel / 255
//   default  the same network tuned: Nesterov momentum 0.9, weight decay 5e-4, cosine from 0.05
//            after a one-epoch warm-up, standardised pixels
//   best     784-1024-1024-10 with batch norm and dropout 0.3, 30 epochs of batch 128, lr 0.1,
//            label smoothing 0.1
#pragma once

#include <string>
#include <vector>

#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

struct Preset {
  Architecture arch;
  TrainOptions options;
  double warmup_epochs = 0;  // the cosine warm-up, in epochs; the run turns it into steps
  bool normalize = true;     // standardise pixels by the training set's mean and std
};

const std::vector<std::string>& preset_names();  // seed, default, best

// The preset by name ("" is default). Throws UsageError naming --preset for any other.
Preset make_preset(const std::string& name);

// PyTorch's default learning rate for an optimizer (sgd: nanomlp's 0.1).
double default_lr(const std::string& optimizer);

}  // namespace nanomlp
