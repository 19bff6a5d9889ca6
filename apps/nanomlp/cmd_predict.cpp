// nanomlp predict: classify image files (PNG, JPEG, PGM, ...) with a model file, after MNIST's
// own preprocessing (see include/nanomlp/io/preprocess.hpp). A file that cannot be read or holds no
// digit gets one error line (or a JSON object with "error"); the others are still classified,
// and the exit code is 1 if any file failed.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "commands.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kTopK = 3;

struct PredictFlags {
  std::string model;
  std::vector<std::string> images;
  bool json = false;
  std::string save_preprocessed;
  int threads = 0;
};

// One input file: its preprocessed image, or why there is none.
struct Input {
  std::string file;
  std::optional<MnistImage> image;
  std::string error;
};

// DIR/STEM-28x28.pgm, with a number added when two inputs share a stem.
std::string preprocessed_path(const std::string& dir, const std::string& file,
                              std::set<std::string>& used) {
  const std::string stem = fs::path(file).stem().string();
  std::string name = stem + "-28x28.pgm";
  for (int n = 2; used.count(name) != 0; ++n) name = stem + "-" + std::to_string(n) + "-28x28.pgm";
  used.insert(name);
  return (fs::path(dir) / name).string();
}

double rounded(float p) {
  return std::round(static_cast<double>(p) * 1e6) / 1e6;
}

// The folder of --save-preprocessed, created if missing.
void prepare_output_folder(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw UsageError("--save-preprocessed: " + dir + " is not a folder");
  }
  fs::create_directories(dir, ec);
  if (ec) {
    throw UsageError("--save-preprocessed: cannot create folder " + dir + ": " + ec.message());
  }
}

// A file that cannot be read or holds no digit gives an Input with its error, not an exception,
// so that the other files are still classified.
Input read_input(const std::string& file) {
  Input in{file, std::nullopt, {}};
  std::optional<GreyImage> grey;
  try {
    grey = load_grey_image(file);  // messages name the file
  } catch (const DataError& e) {
    in.error = e.what();
  }
  if (grey) {
    try {
      in.image = preprocess_mnist(*grey);
    } catch (const DataError& e) {
      in.error = file + ": " + e.what();
    }
  }
  return in;
}

// Every image file in order, each preprocessed image written to --save-preprocessed as soon as
// it is made.
std::vector<Input> read_inputs(const PredictFlags& f) {
  std::vector<Input> inputs;
  std::set<std::string> used_names;
  for (const std::string& file : f.images) {
    Input in = read_input(file);
    if (in.image && !f.save_preprocessed.empty()) {
      write_pgm(preprocessed_path(f.save_preprocessed, file, used_names), to_grey_image(*in.image));
    }
    inputs.push_back(std::move(in));
  }
  return inputs;
}

nlohmann::ordered_json prediction_json(const std::string& file, const Prediction& pred,
                                       const std::vector<std::string>& labels) {
  nlohmann::ordered_json j;
  j["file"] = file;
  j["class"] = pred.cls;
  j["top"] = nlohmann::ordered_json::array();
  for (int k : top_classes(pred, kTopK)) {
    const auto ks = static_cast<std::size_t>(k);
    j["top"].push_back(
        {{"class", k}, {"label", labels[ks]}, {"probability", rounded(pred.probabilities[ks])}});
  }
  return j;
}

// FILE: LABEL (PCT%), ... for the kTopK most probable classes.
void print_prediction(const std::string& file, const Prediction& pred,
                      const std::vector<std::string>& labels) {
  const std::vector<int> top = top_classes(pred, kTopK);
  std::cout << file << ":";
  for (std::size_t i = 0; i < top.size(); ++i) {
    const auto ks = static_cast<std::size_t>(top[i]);
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.2f%%", 100.0 * pred.probabilities[ks]);
    std::cout << (i ? ", " : " ") << labels[ks] << " (" << pct << ")";
  }
  std::cout << std::endl;
}

int run_predict(const PredictFlags& f) {
  kernels::set_num_threads(f.threads);
  Network<float> net = load_model(f.model);
  const std::vector<std::string> labels =
      class_labels(net.architecture().dataset, net.architecture().num_classes);
  if (!f.save_preprocessed.empty()) prepare_output_folder(f.save_preprocessed);

  const std::vector<Input> inputs = read_inputs(f);
  std::vector<MnistImage> batch;
  for (const Input& in : inputs) {
    if (in.image) batch.push_back(*in.image);
  }
  const std::vector<Prediction> predictions = predict(net, batch);
  bool any_failed = false;
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  std::size_t next = 0;
  for (const Input& in : inputs) {
    if (!in.image) {
      any_failed = true;
      if (f.json) {
        list.push_back({{"file", in.file}, {"error", in.error}});
      } else {
        std::cerr << "nanomlp: error: " << in.error << "\n";
      }
      continue;
    }
    const Prediction& pred = predictions[next++];
    if (f.json) {
      list.push_back(prediction_json(in.file, pred, labels));
    } else {
      print_prediction(in.file, pred, labels);
    }
  }
  if (f.json) std::cout << list.dump(2) << std::endl;
  return any_failed ? 1 : 0;
}

}  // namespace

Runner add_predict(CLI::App& app) {
  auto f = std::make_shared<PredictFlags>();
  app.add_option("--model", f->model, "Model file or checkpoint (.safetensors)")->required();
  app.add_option("images", f->images, "Image files: PNG, JPEG, PGM (P2/P5), PPM, BMP or GIF")
      ->required();
  app.add_flag("--json", f->json, "Print a JSON list, one object per file");
  app.add_option("--save-preprocessed", f->save_preprocessed,
                 "Write each 28x28 image the network sees to this folder as a PGM")
      ->type_name("DIR");
  add_threads_option(app, f->threads);
  return [f] { return run_predict(*f); };
}

}  // namespace nanomlp::cli
