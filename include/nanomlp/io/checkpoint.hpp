// Checkpoints as files: DIR/checkpoint-epoch-NNNN.safetensors, one per epoch, each holding the
// weights, the optimizer state, the generators and the run's settings, written atomically
// (temporary file, fsync, rename, fsync of the folder).
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "nanomlp/train/train_state.hpp"

namespace nanomlp {

// Throws IoError naming the folder when checkpoint_dir exists and takes no new file (read-only,
// no permission), so that the run stops before its first epoch, not after it. prepare() checks
// this itself; a command calls it earlier to fail before it loads the data.
void check_checkpoint_dir(const std::string& checkpoint_dir);

// train()'s Checkpoints in options.checkpoint_dir. prepare() creates the folder, removes the
// temporary files of killed runs, and on resume falls back, with a warning, from a damaged
// newest checkpoint to the previous complete one.
class CheckpointFiles final : public Checkpoints {
 public:
  std::size_t prepare(const TrainOptions& options, Network<float>& net, Optimizer& optimizer,
                      TrainState& state,
                      const std::function<void(const std::string&)>& on_message) override;
  void write(const TrainOptions& options, Network<float>& net, Optimizer& optimizer,
             const TrainState& state) override;
};

}  // namespace nanomlp
