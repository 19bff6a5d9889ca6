#include "nanomlp/app/training.hpp"

#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/checkpoint.hpp"

namespace nanomlp {

TrainResult run_training(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                         const TrainCallbacks& callbacks, TrainMethod* method) {
  CheckpointFiles files;
  if (method == nullptr) return train_planned(net, data, options, callbacks, &files);
  return train(net, data, options, callbacks, method, &files);
}

}  // namespace nanomlp
