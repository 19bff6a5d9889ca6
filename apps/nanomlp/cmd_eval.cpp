// nanomlp eval: rebuild the network from a model file and evaluate it on the test set.
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/npy.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/train/trainer.hpp"

namespace nanomlp::cli {
namespace {

struct EvalFlags {
  std::string model;
  std::optional<std::string> data;
  std::string dataset;
  bool json = false;
  std::string probabilities;  // a .npy file for the test set's (count, K) probabilities
  int threads = 0;
};

int run_eval(const EvalFlags& f) {
  kernels::set_num_threads(f.threads);
  Network<float> net = load_model(f.model);
  const std::string dataset = f.dataset.empty() ? net.architecture().dataset : f.dataset;
  const DataSplit data = load_dataset(resolve_data_root(f.data), dataset);
  const auto input = plan_input(net.architecture(), data.test);
  const bool keep = !f.probabilities.empty();
  const EvalResult r = evaluate(net, data.test, nullptr, keep, input.get());
  if (keep) {
    write_npy_f32(f.probabilities, r.probabilities.data(), r.count, net.architecture().num_classes);
  }
  if (f.json) {
    nlohmann::ordered_json j;
    j["model"] = f.model;
    j["dataset"] = dataset;
    j["count"] = r.count;
    j["accuracy"] = r.accuracy;
    j["loss"] = r.loss;
    j["standard_error"] = r.standard_error;
    j["confusion"] = r.confusion;
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  std::printf("model: %s (%s)\n", f.model.c_str(), net.architecture().describe().c_str());
  std::printf("%s test set: %zu images\n", dataset.c_str(), r.count);
  std::printf("loss %.4f, accuracy %s\n", r.loss,
              format_accuracy(r.accuracy, r.standard_error).c_str());
  std::printf("\nconfusion matrix (rows: true class, columns: predicted)\n      ");
  const std::size_t K = r.confusion.size();
  for (std::size_t k = 0; k < K; ++k) std::printf("%6zu", k);
  std::printf("\n");
  for (std::size_t t = 0; t < K; ++t) {
    std::printf("%6zu", t);
    for (std::size_t p = 0; p < K; ++p) std::printf("%6zu", r.confusion[t][p]);
    std::printf("\n");
  }
  return 0;
}

}  // namespace

Runner add_eval(CLI::App& app) {
  auto f = std::make_shared<EvalFlags>();
  app.add_option("--model", f->model, "Model file or checkpoint (.safetensors)")->required();
  app.add_option("--data", f->data, "Data folder (default: $NANOMLP_DATA, else ./data)");
  app.add_option("--dataset", f->dataset, "Dataset (default: the one the model was trained on)")
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}));
  app.add_flag("--json", f->json, "Print the result as JSON");
  app.add_option("--probabilities", f->probabilities,
                 "Also write each test image's class probabilities, in test-set order, to this "
                 ".npy file (float32, shape (count, classes))");
  add_threads_option(app, f->threads);
  return [f] { return run_eval(*f); };
}

}  // namespace nanomlp::cli
