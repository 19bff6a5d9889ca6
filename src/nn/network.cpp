#include "nanomlp/nn/network.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/json_input.hpp"

namespace nanomlp {

namespace {

template <template <typename> class L, typename T>
std::unique_ptr<Layer<T>> make_layer() {
  return std::make_unique<L<T>>();
}

// One row per activation: a new one is a row here and its layer in activations.cpp.
struct ActivationKind {
  const char* name;          // --activation, and "activation" in the model file
  const char* torch_module;  // its entry in the model file's nn.Sequential
  bool xavier;               // init "auto": Glorot for saturating ones, He for ReLU-like ones
  std::unique_ptr<Layer<float>> (*make_float)();
  std::unique_ptr<Layer<double>> (*make_double)();
};

const ActivationKind kActivations[] = {
    {"relu", "ReLU()", false, make_layer<ReLU, float>, make_layer<ReLU, double>},
    {"leaky_relu", "LeakyReLU(0.01)", false, make_layer<LeakyReLU, float>,
     make_layer<LeakyReLU, double>},
    {"tanh", "Tanh()", true, make_layer<Tanh, float>, make_layer<Tanh, double>},
    {"gelu", "GELU()", false, make_layer<GELU, float>, make_layer<GELU, double>},
};

// Throws UsageError naming --activation for a name not in the table.
const ActivationKind& activation_kind(const std::string& name) {
  for (const ActivationKind& kind : kActivations) {
    if (name == kind.name) return kind;
  }
  throw UsageError("--activation: expected one of " + join_names(activation_names()) + ", got '" +
                   name + "'");
}

template <typename T>
std::unique_ptr<Layer<T>> make_linear(const LayerSpec& spec, std::string prefix) {
  return std::make_unique<Dense<T>>(spec.in, spec.out, std::move(prefix));
}
template <typename T>
std::unique_ptr<Layer<T>> make_batch_norm(const LayerSpec& spec, std::string prefix) {
  return std::make_unique<BatchNorm<T>>(spec.out, std::move(prefix));
}
template <typename T>
std::unique_ptr<Layer<T>> make_activation_layer(const LayerSpec& spec, std::string) {
  return make_activation<T>(spec.activation);
}
template <typename T>
std::unique_ptr<Layer<T>> make_dropout(const LayerSpec& spec, std::string) {
  return std::make_unique<Dropout<T>>(spec.p);
}

std::string linear_module(const LayerSpec& spec) {
  return "Linear(" + std::to_string(spec.in) + ", " + std::to_string(spec.out) + ")";
}
std::string batch_norm_module(const LayerSpec& spec) {
  return "BatchNorm1d(" + std::to_string(spec.out) + ")";
}
std::string activation_module(const LayerSpec& spec) {
  return activation_kind(spec.activation).torch_module;
}
std::string dropout_module(const LayerSpec& spec) {
  return "Dropout(" + std::to_string(spec.p) + ")";
}

// One row per layer kind: its factory (taking the parameter-name prefix, "3." for module 3,
// so that names match a PyTorch state dict) and its entry in the model file's nn.Sequential.
// A new kind is a row here, its place in Architecture::layers() and its layer class.
struct LayerKind {
  LayerSpec::Kind kind;
  std::string (*torch_module)(const LayerSpec&);
  std::unique_ptr<Layer<float>> (*make_float)(const LayerSpec&, std::string);
  std::unique_ptr<Layer<double>> (*make_double)(const LayerSpec&, std::string);
};

const LayerKind kLayerKinds[] = {
    {LayerSpec::Kind::linear, linear_module, make_linear<float>, make_linear<double>},
    {LayerSpec::Kind::batch_norm, batch_norm_module, make_batch_norm<float>,
     make_batch_norm<double>},
    {LayerSpec::Kind::activation, activation_module, make_activation_layer<float>,
     make_activation_layer<double>},
    {LayerSpec::Kind::dropout, dropout_module, make_dropout<float>, make_dropout<double>},
};

const LayerKind& layer_kind(LayerSpec::Kind kind) {
  for (const LayerKind& row : kLayerKinds) {
    if (row.kind == kind) return row;
  }
  throw std::logic_error("no row in kLayerKinds for layer kind " +
                         std::to_string(static_cast<int>(kind)));
}

}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> all;
    for (const ActivationKind& kind : kActivations) all.emplace_back(kind.name);
    return all;
  }();
  return names;
}

const std::vector<std::string>& init_names() {
  static const std::vector<std::string> names{"auto", "he", "xavier"};
  return names;
}

template <typename T>
std::unique_ptr<Layer<T>> make_activation(const std::string& name) {
  const ActivationKind& kind = activation_kind(name);
  if constexpr (std::is_same_v<T, float>) {
    return kind.make_float();
  } else {
    return kind.make_double();
  }
}

template std::unique_ptr<Layer<float>> make_activation<float>(const std::string&);
template std::unique_ptr<Layer<double>> make_activation<double>(const std::string&);

void Architecture::validate() const {
  if (input_dim == 0) throw UsageError("architecture: input_dim must be positive, got 0");
  if (num_classes < 2) {
    throw UsageError("architecture: num_classes must be at least 2, got " +
                     std::to_string(num_classes));
  }
  for (std::size_t h : hidden) {
    if (h == 0) throw UsageError("--hidden: expected positive widths, got a width of 0");
  }
  activation_kind(activation);  // throws for an unknown name
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    throw UsageError("--dropout: expected a probability in [0, 1), got " + format_number(dropout));
  }
  if (!(norm_std > 0.0) || !std::isfinite(norm_mean)) {
    throw UsageError("architecture: normalisation std must be positive");
  }
}

std::string Architecture::describe() const {
  std::ostringstream s;
  s << input_dim;
  for (std::size_t h : hidden) s << '-' << h;
  s << '-' << num_classes << ", " << activation;
  if (batch_norm) s << ", batch-norm";
  if (dropout > 0) s << ", dropout " << dropout;
  return s.str();
}

std::vector<LayerSpec> Architecture::layers() const {
  using Kind = LayerSpec::Kind;
  std::vector<LayerSpec> specs;
  std::size_t in = input_dim;
  for (std::size_t h : hidden) {
    specs.push_back({Kind::linear, in, h, "", 0.0});
    if (batch_norm) specs.push_back({Kind::batch_norm, h, h, "", 0.0});
    specs.push_back({Kind::activation, h, h, activation, 0.0});
    if (dropout > 0.0) specs.push_back({Kind::dropout, h, h, "", dropout});
    in = h;
  }
  specs.push_back({Kind::linear, in, num_classes, "", 0.0});
  return specs;
}

std::string Architecture::to_json() const {
  nlohmann::ordered_json j;
  j["input_dim"] = input_dim;
  j["hidden"] = hidden;
  j["num_classes"] = num_classes;
  j["activation"] = activation;
  j["batch_norm"] = batch_norm;
  j["dropout"] = dropout;
  j["dataset"] = dataset;
  j["normalisation"] = {{"divide_by", 255}, {"mean", norm_mean}, {"std", norm_std}};
  // The nn.Sequential this file's tensors belong to, for readers other than nanomlp.
  std::vector<std::string> modules;
  for (const LayerSpec& spec : layers())
    modules.push_back(layer_kind(spec.kind).torch_module(spec));
  j["modules"] = modules;
  return j.dump();
}

Architecture Architecture::from_json(const std::string& text, const std::string& source) {
  Architecture a;
  try {
    const auto j = parse_untrusted_json(text);
    a.input_dim = j.at("input_dim").get<std::size_t>();
    a.hidden = j.at("hidden").get<std::vector<std::size_t>>();
    a.num_classes = j.at("num_classes").get<std::size_t>();
    a.activation = j.at("activation").get<std::string>();
    a.batch_norm = j.value("batch_norm", false);
    a.dropout = j.value("dropout", 0.0);
    a.dataset = j.value("dataset", std::string("mnist"));
    if (j.contains("normalisation")) {
      a.norm_mean = j["normalisation"].value("mean", 0.0);
      a.norm_std = j["normalisation"].value("std", 1.0);
    }
    a.validate();
  } catch (const nlohmann::json::exception& e) {
    throw ModelFormatError(source + ": invalid architecture in __metadata__: " + e.what());
  } catch (const JsonInputError& e) {
    throw ModelFormatError(source + ": invalid architecture in __metadata__: " + e.what());
  } catch (const UsageError& e) {
    throw ModelFormatError(source + ": invalid architecture in __metadata__: " + e.what());
  }
  return a;
}

template <typename T>
Network<T>::Network(Architecture arch) : arch_(std::move(arch)) {
  arch_.validate();
  // Module indices follow nn.Sequential, so parameter names match a PyTorch state dict.
  for (const LayerSpec& spec : arch_.layers()) {
    const LayerKind& kind = layer_kind(spec.kind);
    std::string prefix = std::to_string(layers_.size()) + ".";
    if constexpr (std::is_same_v<T, float>) {
      layers_.push_back(kind.make_float(spec, std::move(prefix)));
    } else {
      layers_.push_back(kind.make_double(spec, std::move(prefix)));
    }
  }
  outs_.resize(layers_.size());
  grads_.resize(layers_.size());
}

template <typename T>
void Network<T>::init(Rng& rng, const std::string& scheme) {
  if (std::find(init_names().begin(), init_names().end(), scheme) == init_names().end()) {
    throw UsageError("--init: expected one of " + join_names(init_names()) + ", got '" + scheme +
                     "'");
  }
  const bool xavier =
      scheme == "xavier" || (scheme == "auto" && activation_kind(arch_.activation).xavier);
  for (auto& layer : layers_) layer->init(rng, xavier);
}

template <typename T>
const Mat<T>& Network<T>::forward(const Mat<T>& x, bool training, std::size_t from) {
  if (from > layers_.size())
    throw std::invalid_argument("Network::forward: no layer " + std::to_string(from));
  const Mat<T>* in = &x;
  for (std::size_t i = from; i < layers_.size(); ++i) {
    layers_[i]->forward(*in, outs_[i], training);
    in = &outs_[i];
  }
  return *in;
}

template <typename T>
const Mat<T>& Network<T>::infer(const Mat<T>& x) {
  const Mat<T>* in = &x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    layers_[i]->infer(*in, outs_[i]);
    in = &outs_[i];
  }
  return *in;
}

template <typename T>
const Mat<T>& Network<T>::backward(const Mat<T>& dlogits, std::size_t from) {
  if (from >= layers_.size())
    throw std::invalid_argument("Network::backward: no layer " + std::to_string(from));
  const Mat<T>* dy = &dlogits;
  for (std::size_t i = layers_.size(); i-- > from;) {
    Mat<T>* dx = i > 0 ? &grads_[i] : nullptr;
    layers_[i]->backward(*dy, dx);
    dy = dx;
  }
  return grads_[from];
}

template <typename T>
std::vector<Param<T>> Network<T>::params() {
  std::vector<Param<T>> all;
  for (auto& layer : layers_) {
    for (auto& p : layer->params()) all.push_back(p);
  }
  return all;
}

template <typename T>
std::vector<Buffer<T>> Network<T>::buffers() {
  std::vector<Buffer<T>> all;
  for (auto& layer : layers_) {
    for (auto& b : layer->buffers()) all.push_back(b);
  }
  return all;
}

template <typename T>
std::size_t Network<T>::num_params() {
  std::size_t n = 0;
  for (const auto& p : params()) n += p.value->size();
  return n;
}

template <typename T>
void Network<T>::set_rng(Rng* rng) {
  for (auto& layer : layers_) layer->set_rng(rng);
}

std::string with_thousands(std::size_t n) {
  std::string digits = std::to_string(n), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string model_summary(Network<float>& net) {
  std::ostringstream s;
  char line[160];
  std::snprintf(line, sizeof line, "  %-5s %-12s %-14s %12s\n", "index", "module", "output shape",
                "parameters");
  s << line;
  std::size_t width = net.architecture().input_dim, total = 0, bytes = 0;
  std::snprintf(line, sizeof line, "  %-5s %-12s %-14s %12s\n", "", "input",
                ("(N, " + std::to_string(width) + ")").c_str(), "");
  s << line;
  for (std::size_t i = 0; i < net.layers().size(); ++i) {
    Layer<float>& layer = *net.layers()[i];
    width = layer.out_features(width);
    std::size_t count = 0;
    for (const auto& p : layer.params()) count += p.value->size();
    for (const auto& b : layer.buffers()) bytes += b.value->size() * sizeof(float);
    bytes += layer.counters().size() * sizeof(std::int64_t);
    total += count;
    std::snprintf(line, sizeof line, "  %-5zu %-12s %-14s %12s\n", i, layer.type(),
                  ("(N, " + std::to_string(width) + ")").c_str(), with_thousands(count).c_str());
    s << line;
  }
  bytes += total * sizeof(float);
  std::snprintf(line, sizeof line, "  total: %s parameters, %s bytes of tensors (%.1f KiB)\n",
                with_thousands(total).c_str(), with_thousands(bytes).c_str(),
                static_cast<double>(bytes) / 1024.0);
  s << line;
  return s.str();
}

template class Network<float>;
template class Network<double>;

}  // namespace nanomlp
