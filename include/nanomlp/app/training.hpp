// A whole training run as the command line does it: the plan (fast/plan.hpp), checkpoints as
// files (io/checkpoint.hpp), then train().
#pragma once

#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

// train() with `method` (plan_training()'s on the global pool's threads if null) and
// checkpoints in options.checkpoint_dir when it is set.
TrainResult run_training(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                         const TrainCallbacks& callbacks = {}, TrainMethod* method = nullptr);

}  // namespace nanomlp
