#include "nanomlp/app/training.hpp"

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/checkpoint.hpp"

namespace nanomlp {

TrainResult run_training(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                         const TrainCallbacks& callbacks, TrainMethod* method) {
  TrainMethod planned;
  if (method == nullptr) {
    planned = plan_training(net, options, data, ThreadPool::global().max_parts());
    method = &planned;
  }
  CheckpointFiles files;
  return train(net, data, options, callbacks, method, &files);
}

}  // namespace nanomlp
