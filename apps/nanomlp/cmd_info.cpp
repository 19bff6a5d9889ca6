// nanomlp info: what a model file holds, without the data.
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "commands.hpp"
#include "nanomlp/core/json_input.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp::cli {
namespace {

struct InfoFlags {
  std::string model;
  bool json = false;
};

// What the run that wrote the file recorded (model_metadata in app/training.hpp), as JSON
// values: the version and date as text, the figures as numbers. Keys the file lacks (a file of
// an older nanomlp, a checkpoint) are left out.
nlohmann::ordered_json run_facts(const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const char* key : {"nanomlp_version", "date"}) {
    if (auto it = metadata.find(key); it != metadata.end()) j[key] = it->second;
  }
  for (const char* key :
       {"test_accuracy", "test_loss", "val_accuracy", "val_loss", "train_seconds"}) {
    auto it = metadata.find(key);
    if (it == metadata.end()) continue;
    const auto value = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (value.is_number()) j[key] = value;
  }
  return j;
}

// "trained by nanomlp VERSION on 2026-12-07T23:05:09Z in 12.35 s; test accuracy 97.12%, loss
// 0.0960", each part only when the file records it.
void print_run_facts(const nlohmann::ordered_json& run) {
  if (run.empty()) return;
  std::string line = "trained";
  if (run.contains("nanomlp_version")) {
    line += " by nanomlp " + run["nanomlp_version"].get<std::string>();
  }
  if (run.contains("date")) line += " on " + run["date"].get<std::string>();
  char buf[96];
  if (run.contains("train_seconds")) {
    std::snprintf(buf, sizeof buf, " in %.2f s", run["train_seconds"].get<double>());
    line += buf;
  }
  for (const auto& [prefix, name] : {std::pair{"test", "test"}, std::pair{"val", "validation"}}) {
    const std::string acc = std::string(prefix) + "_accuracy", loss = std::string(prefix) + "_loss";
    if (!run.contains(acc) || !run.contains(loss)) continue;
    std::snprintf(buf, sizeof buf, "; %s accuracy %.2f%%, loss %.4f", name,
                  run[acc].get<double>() * 100.0, run[loss].get<double>());
    line += buf;
  }
  std::printf("%s\n", line.c_str());
}

// A checkpoint's metadata entry as text fit to print ("?" where the entry is absent).
std::string checkpoint_entry(const SafeTensors& st, const char* key) {
  const auto it = st.metadata.find(key);
  return it == st.metadata.end() ? "?" : printable(it->second, 40);
}

// What a checkpoint holds beside the model: the epoch it was written after and the state that
// `train --resume` continues from.
void print_checkpoint(const SafeTensors& st) {
  const std::string prefix = kCheckpointModelPrefix;
  std::size_t model_tensors = 0;
  for (const auto& t : st.tensors) model_tensors += t.name.rfind(prefix, 0) == 0 ? 1 : 0;
  std::printf(
      "checkpoint (version %s) written after epoch %s: the model is its %zu '%s' tensors; the "
      "other %zu hold the optimizer state that train --resume continues from\n",
      checkpoint_entry(st, "checkpoint_version").c_str(), checkpoint_entry(st, "epoch").c_str(),
      model_tensors, prefix.c_str(), st.tensors.size() - model_tensors);
}

int run_info(const InfoFlags& f) {
  const SafeTensors st = read_safetensors_file(f.model);
  Network<float> net = model_from_safetensors(st, f.model);
  const Architecture& arch = net.architecture();
  const bool checkpoint = is_checkpoint(st);
  if (f.json) {
    nlohmann::ordered_json j;
    j["model"] = f.model;
    j["kind"] = checkpoint ? "checkpoint" : "model";
    j["architecture"] = nlohmann::json::parse(arch.to_json());
    j["parameters"] = net.num_params();
    j["run"] = run_facts(st.metadata);
    j["metadata"] = st.metadata;
    j["tensors"] = nlohmann::json::array();
    for (const auto& t : st.tensors) {
      j["tensors"].push_back({{"name", t.name}, {"dtype", t.dtype}, {"shape", t.shape}});
    }
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("model: %s\n", f.model.c_str());
  std::printf("architecture: %s; trained on %s; inputs (pixel / 255 - %.4f) / %.4f\n",
              arch.describe().c_str(), arch.dataset.c_str(), arch.norm_mean, arch.norm_std);
  auto it = st.metadata.find("format_version");
  std::printf("format: safetensors, nanomlp format version %s, %zu tensors\n",
              it != st.metadata.end() ? it->second.c_str() : "?", st.tensors.size());
  if (checkpoint) print_checkpoint(st);
  std::printf("%s", model_summary(net).c_str());
  print_run_facts(run_facts(st.metadata));
  // A checkpoint keeps the settings under "options", for --resume to compare.
  if (auto t = st.metadata.find(checkpoint ? "options" : "training"); t != st.metadata.end()) {
    std::printf("training settings: %s\n", t->second.c_str());
  }
  return 0;
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  app.add_option("--model", f->model, "Model file or checkpoint (.safetensors)")->required();
  app.add_flag("--json", f->json, "Print the summary as JSON");
  return [f] { return run_info(*f); };
}

}  // namespace nanomlp::cli
