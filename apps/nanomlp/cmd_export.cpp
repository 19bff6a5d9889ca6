// nanomlp export: a model file as an ONNX graph, or rewritten as a plain model file.
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "commands.hpp"
#include "nanomlp/app/onnx_export.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp::cli {
namespace {

struct ExportFlags {
  std::string model;
  std::string format;
  std::string out;
};

// The folder of --out must exist: the atomic write creates only the file. A runtime error
// (exit 1), as for every output that cannot be written, checked before the model is read.
void check_out_folder(const std::string& out) {
  namespace fs = std::filesystem;
  if (out.empty()) throw UsageError("--out: expected a file path, got an empty string");
  const fs::path parent = fs::path(out).parent_path();
  if (!parent.empty() && !fs::is_directory(parent)) {
    throw IoError("--out: folder " + parent.string() + " does not exist (for " + out + ")");
  }
  if (fs::is_directory(out)) throw IoError("--out: " + out + " is a folder, expected a file");
}

// The metadata a plain model file keeps: a model file's own; of a checkpoint, the training
// settings it was written with and its epoch. The optimizer's state, the generators and the
// records so far belong to the run, not to the model, and stay behind.
std::map<std::string, std::string> plain_metadata(const SafeTensors& st) {
  if (!is_checkpoint(st)) return st.metadata;
  std::map<std::string, std::string> metadata;
  for (const auto& [from, to] : {std::pair{"options", "training"}, {"epoch", "checkpoint_epoch"}}) {
    if (const auto it = st.metadata.find(from); it != st.metadata.end()) metadata[to] = it->second;
  }
  return metadata;
}

int run_export(const ExportFlags& f) {
  check_out_folder(f.out);
  // Read once, and rebuilt as load_model does: whatever model files eval reads, export reads.
  const SafeTensors file = read_safetensors_file(f.model);
  Network<float> net = model_from_safetensors(file, f.model);
  // The file's metadata (training settings and the like) goes along into a plain model file;
  // save_model writes the format, its version and the architecture itself.
  const std::map<std::string, std::string> metadata =
      f.format == "safetensors" ? plain_metadata(file) : std::map<std::string, std::string>{};
  try {
    if (f.format == "onnx") {
      write_onnx_file(f.out, net, f.model);
    } else {
      save_model(f.out, net, metadata);
    }
  } catch (const IoError& e) {
    throw IoError(std::string("--out: ") + e.what());  // only the write is left to fail
  }
  std::printf("model %s (%s)\n", f.model.c_str(), net.architecture().describe().c_str());
  if (f.format == "onnx") {
    std::printf(
        "ONNX (opset %lld) written to %s: input pixels float32 (N, %zu) in [0, 1], "
        "outputs probabilities and logits (N, %zu)\n",
        static_cast<long long>(kOnnxOpset), f.out.c_str(), net.architecture().input_dim,
        net.architecture().num_classes);
  } else {
    std::printf("model written to %s\n", f.out.c_str());
  }
  return 0;
}

}  // namespace

Runner add_export(CLI::App& app) {
  auto f = std::make_shared<ExportFlags>();
  app.add_option("--model", f->model, "Model file (.safetensors)")->required();
  app.add_option("--format", f->format,
                 "onnx (an ONNX graph, opset 17) or safetensors (the plain model file)")
      ->required()
      ->check(CLI::IsMember({"onnx", "safetensors"}));
  app.add_option("--out", f->out, "File to write")->required();
  return [f] { return run_export(*f); };
}

}  // namespace nanomlp::cli
