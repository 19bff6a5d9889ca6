// JSON forms of the training records: the --metrics-json document, checkpoints and reports all
// use these, so a record reads the same everywhere. Accuracies are fractions.
#pragma once

#include <nlohmann/json.hpp>

#include "nanomlp/train/trainer.hpp"

namespace nanomlp {

template <typename Json>
void to_json(Json& j, const EpochRecord& r) {
  j = Json{{"epoch", r.epoch},
           {"lr", r.lr},
           {"train_loss", r.train_loss},
           {"train_accuracy", r.train_accuracy}};
  if (r.val_loss) j["val_loss"] = *r.val_loss;
  if (r.val_accuracy) j["val_accuracy"] = *r.val_accuracy;
  j["test_loss"] = r.test_loss ? Json(*r.test_loss) : Json(nullptr);
  j["test_accuracy"] = r.test_accuracy ? Json(*r.test_accuracy) : Json(nullptr);
  j["seconds"] = r.seconds;
  j["samples_per_second"] = r.samples_per_second;
}

template <typename Json>
void from_json(const Json& j, EpochRecord& r) {
  auto opt = [&](const char* key) -> std::optional<double> {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    return j[key].template get<double>();
  };
  r.epoch = j.at("epoch").template get<std::size_t>();
  r.lr = j.at("lr").template get<double>();
  r.train_loss = j.at("train_loss").template get<double>();
  r.train_accuracy = j.at("train_accuracy").template get<double>();
  r.val_loss = opt("val_loss");
  r.val_accuracy = opt("val_accuracy");
  r.test_loss = opt("test_loss");
  r.test_accuracy = opt("test_accuracy");
  r.seconds = j.at("seconds").template get<double>();
  r.samples_per_second = j.at("samples_per_second").template get<double>();
}

}  // namespace nanomlp
