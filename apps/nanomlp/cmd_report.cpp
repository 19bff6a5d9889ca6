// nanomlp report: write a self-contained HTML report of a trained model from its model file,
// the --metrics-json document of its training run and the test set. A document written for
// another model (its recorded architecture or weights hash differ) is refused.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "nanomlp/app/report.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp::cli {
namespace {

struct ReportFlags {
  std::string model;
  std::string metrics_json;
  std::optional<std::string> data;
  std::string dataset;
  std::string out = "report.html";
  std::string title;
  int threads = 0;
};

int run_report(const ReportFlags& f) {
  // Cheap checks first: the output folder (exit 2), then the inputs (exit 1).
  for (const std::string& p : check_output_path("--out", f.out)) {
    std::printf("removed %s, left by an interrupted write\n", p.c_str());
  }
  kernels::set_num_threads(f.threads);
  nlohmann::ordered_json metrics = read_metrics_json(f.metrics_json);
  const SafeTensors model = read_safetensors_file(f.model);
  Network<float> net = model_from_safetensors(model, f.model);
  // Before the test set is read: metrics of another model would make a report that lies. The
  // weights are checked as a model file holds them, so that a checkpoint's model (beside its
  // optimizer state) matches the metrics of its run, and the architecture as the file says it.
  SafeTensors weights = model_to_safetensors(net);
  weights.metadata["architecture"] = model.metadata.at("architecture");
  const std::string warning = check_metrics_model(metrics, f.metrics_json, weights, f.model);
  if (!warning.empty()) std::cerr << "nanomlp: warning: " << warning << std::endl;
  const std::string dataset = f.dataset.empty() ? net.architecture().dataset : f.dataset;
  const DataSplit data = load_dataset(resolve_data_root(f.data), dataset);
  ReportInput input = make_report_input(net, data.test, std::move(metrics), f.model, dataset);
  if (!f.title.empty()) input.title = f.title;
  write_report(f.out, input);
  std::printf("report written to %s (%s test accuracy %.2f%%, %zu images)\n", f.out.c_str(),
              dataset.c_str(), input.test.accuracy * 100.0, input.test.count);
  return 0;
}

}  // namespace

Runner add_report(CLI::App& app) {
  auto f = std::make_shared<ReportFlags>();
  app.add_option("--model", f->model, "Model file (.safetensors)")->required();
  app.add_option("--metrics-json", f->metrics_json,
                 "The --metrics-json file written by nanomlp train for this model")
      ->required();
  app.add_option("--data", f->data, "Data folder (default: $NANOMLP_DATA, else ./data)");
  app.add_option("--dataset", f->dataset, "Dataset (default: the one the model was trained on)")
      ->check(CLI::IsMember({"mnist", "fashion-mnist"}));
  app.add_option("--out", f->out, "HTML file to write")->capture_default_str();
  app.add_option("--title", f->title, "Title of the report");
  add_threads_option(app, f->threads);
  return [f] { return run_report(*f); };
}

}  // namespace nanomlp::cli
