// A whole training run as the command line does it: the plan (fast/plan.hpp), checkpoints as
// files (io/checkpoint.hpp), then train().
#pragma once

#include <ctime>
#include <map>
#include <string>

#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

// train() with `method` (plan_training()'s on the global pool's threads if null) and
// checkpoints in options.checkpoint_dir when it is set.
TrainResult run_training(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                         const TrainCallbacks& callbacks = {}, TrainMethod* method = nullptr);

// `when` as UTC ISO 8601 to the second: "2026-12-07T23:05:09Z".
std::string utc_timestamp(std::time_t when);

// The model file's __metadata__ beyond what model_to_safetensors writes (README "Model file"):
// dataset, training (the settings), nanomlp_version, date (`when`, UTC ISO 8601), the final
// figures of the weights written, val_accuracy and val_loss with options.val_split (of the
// epoch early stopping kept, else the last), else test_accuracy and test_loss, and
// train_seconds. date and train_seconds differ from run to run; the rest does not.
std::map<std::string, std::string> model_metadata(const std::string& dataset,
                                                  const TrainOptions& options,
                                                  const TrainResult& result, std::time_t when);

}  // namespace nanomlp
