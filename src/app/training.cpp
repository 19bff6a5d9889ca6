#include "nanomlp/app/training.hpp"

#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "nanomlp/core/version.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/checkpoint.hpp"

namespace nanomlp {

TrainResult run_training(Network<float>& net, const DataSplit& data, const TrainOptions& options,
                         const TrainCallbacks& callbacks, TrainMethod* method) {
  CheckpointFiles files;
  if (method == nullptr) return train_planned(net, data, options, callbacks, &files);
  return train(net, data, options, callbacks, method, &files);
}

std::string utc_timestamp(std::time_t when) {
  std::tm tm{};
  ::gmtime_r(&when, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::map<std::string, std::string> model_metadata(const std::string& dataset,
                                                  const TrainOptions& options,
                                                  const TrainResult& result, std::time_t when) {
  // Numbers as JSON writes them: the shortest text that reads back as the same double.
  const auto number = [](double v) { return nlohmann::json(v).dump(); };
  std::map<std::string, std::string> meta{{"dataset", dataset},
                                          {"training", options.to_json()},
                                          {"nanomlp_version", kVersion},
                                          {"date", utc_timestamp(when)}};
  // With a validation split the test set stays out of the model's description, as it stays out
  // of early stopping: the figures are those of the kept epoch on the held-out images.
  if (options.val_split > 0 && !result.epochs.empty()) {
    const std::size_t kept = result.best_epoch > 0 ? result.best_epoch : result.epochs.size();
    const EpochRecord& rec = result.epochs.at(kept - 1);
    meta["val_accuracy"] = number(rec.val_accuracy.value_or(0.0));
    meta["val_loss"] = number(rec.val_loss.value_or(0.0));
  } else {
    meta["test_accuracy"] = number(result.test.accuracy);
    meta["test_loss"] = number(result.test.loss);
  }
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.3f", result.train_seconds);
  meta["train_seconds"] = seconds;
  return meta;
}

}  // namespace nanomlp
