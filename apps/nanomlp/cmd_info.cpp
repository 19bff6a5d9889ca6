// nanomlp info: what a model file holds, without the data.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp::cli {
namespace {

struct InfoFlags {
  std::string model;
  bool json = false;
};

int run_info(const InfoFlags& f) {
  const SafeTensors st = read_safetensors_file(f.model);
  Network<float> net = model_from_safetensors(st, f.model);
  const Architecture& arch = net.architecture();
  if (f.json) {
    nlohmann::ordered_json j;
    j["model"] = f.model;
    j["architecture"] = nlohmann::json::parse(arch.to_json());
    j["parameters"] = net.num_params();
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
  std::printf("%s", model_summary(net).c_str());
  if (auto t = st.metadata.find("training"); t != st.metadata.end()) {
    std::printf("training settings: %s\n", t->second.c_str());
  }
  return 0;
}

}  // namespace

Runner add_info(CLI::App& app) {
  auto f = std::make_shared<InfoFlags>();
  app.add_option("--model", f->model, "Model file (.safetensors)")->required();
  app.add_flag("--json", f->json, "Print the summary as JSON");
  return [f] { return run_info(*f); };
}

}  // namespace nanomlp::cli
