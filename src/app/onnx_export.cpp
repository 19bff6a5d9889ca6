#include "nanomlp/app/onnx_export.hpp"

#include <onnx/onnx_pb.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "nanomlp/core/version.hpp"
#include "nanomlp/io/safetensors.hpp"

namespace nanomlp {
namespace {

// Builds the graph node by node. `current` is the tensor the next layer reads: "pixels" at the
// start, then the output of the last node added.
class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto& graph) : graph_(graph) {}

  const std::string& current() const { return current_; }

  // A float32 initializer of the given dims holding values in row-major order.
  std::string initializer(const std::string& name, const std::vector<std::int64_t>& dims,
                          const float* values) {
    onnx::TensorProto* t = graph_.add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    std::size_t count = 1;
    for (std::int64_t d : dims) {
      t->add_dims(d);
      count *= static_cast<std::size_t>(d);
    }
    t->mutable_float_data()->Add(values, values + count);
    return name;
  }
  // A float32 scalar (dims []) that broadcasts against any tensor, added once per name.
  std::string scalar(const std::string& name, float value) {
    if (scalars_.insert(name).second) initializer(name, {}, &value);
    return name;
  }
  // A node of the default domain reading `inputs` and writing `output`, which becomes current.
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs,
                        const std::string& output) {
    onnx::NodeProto* n = graph_.add_node();
    n->set_op_type(op);
    n->set_name(output);
    for (const std::string& input : inputs) n->add_input(input);
    n->add_output(output);
    current_ = output;
    return *n;
  }

 private:
  onnx::GraphProto& graph_;
  std::string current_ = "pixels";
  std::set<std::string> scalars_;
};

void set_float(onnx::NodeProto& n, const std::string& name, float value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(value);
}

void set_int(onnx::NodeProto& n, const std::string& name, std::int64_t value) {
  onnx::AttributeProto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(value);
}

// The concrete class of a layer whose type() named it; a mismatch is a bug of the table below.
template <typename L>
L& as(Layer<float>& layer) {
  auto* concrete = dynamic_cast<L*>(&layer);
  if (concrete == nullptr) {
    throw std::logic_error(std::string("onnx export: layer of type ") + layer.type() +
                           " is not the class its mapping expects");
  }
  return *concrete;
}

// Where an emitter writes: `prefix` ("3.", the module index, as in the state dict) names its
// initializers and inner tensors, `output` its final tensor ("logits" for the last layer).
struct LayerSite {
  std::string prefix;
  std::string output;
};

std::int64_t dim(std::size_t n) {
  return static_cast<std::int64_t>(n);
}

// Gemm (ONNX operators, Gemm-13): Y = alpha A B + beta C. Dense keeps W as (D, H), the layout B
// needs without a transpose, so transB = 0; C is the bias (H), broadcast over the rows.
void emit_linear(GraphBuilder& g, Layer<float>& layer, const LayerSite& site) {
  Dense<float>& dense = as<Dense<float>>(layer);
  const std::string w =
      g.initializer(site.prefix + "weight", {dim(dense.W_.rows()), dim(dense.W_.cols())},
                    dense.W_.data());  // (D, H)
  const std::string b =
      g.initializer(site.prefix + "bias", {dim(dense.b_.size())}, dense.b_.data());  // (H)
  onnx::NodeProto& n = g.node("Gemm", {g.current(), w, b}, site.output);
  set_int(n, "transA", 0);
  set_int(n, "transB", 0);
}

// BatchNormalization-15 in inference mode (training_mode 0, the default): Y = (X - input_mean)
// / sqrt(input_var + epsilon) * scale + B, over the channels of an (N, C) input, with the
// running statistics and PyTorch's epsilon that BatchNorm uses in evaluation.
void emit_batch_norm(GraphBuilder& g, Layer<float>& layer, const LayerSite& site) {
  BatchNorm<float>& bn = as<BatchNorm<float>>(layer);
  const std::int64_t h = dim(bn.gamma_.size());  // every tensor below is (H)
  const std::string scale = g.initializer(site.prefix + "weight", {h}, bn.gamma_.data());
  const std::string bias = g.initializer(site.prefix + "bias", {h}, bn.beta_.data());
  const std::string mean =
      g.initializer(site.prefix + "running_mean", {h}, bn.running_mean_.data());
  const std::string var = g.initializer(site.prefix + "running_var", {h}, bn.running_var_.data());
  onnx::NodeProto& n =
      g.node("BatchNormalization", {g.current(), scale, bias, mean, var}, site.output);
  set_float(n, "epsilon", static_cast<float>(BatchNorm<float>::kEps));
}

// Relu-14: max(0, x). Tanh-13 below: tanh(x). Both element-wise, as the layers.
void emit_relu(GraphBuilder& g, Layer<float>&, const LayerSite& site) {
  g.node("Relu", {g.current()}, site.output);
}

// LeakyRelu-16: y = x for x >= 0, alpha x otherwise.
void emit_leaky_relu(GraphBuilder& g, Layer<float>& layer, const LayerSite& site) {
  onnx::NodeProto& n = g.node("LeakyRelu", {g.current()}, site.output);
  set_float(n, "alpha", as<LeakyReLU<float>>(layer).negative_slope());
}

void emit_tanh(GraphBuilder& g, Layer<float>&, const LayerSite& site) {
  g.node("Tanh", {g.current()}, site.output);
}

// Exact GELU, x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)): the function body of Gelu-20
// (approximate = "none"), which opsets up to 17 do not have, from Mul, Erf (Erf-13) and Add, in
// the order the GELU layer computes it.
void emit_gelu(GraphBuilder& g, Layer<float>&, const LayerSite& site) {
  const std::string x = g.current();
  const std::string inv_sqrt2 = g.scalar("gelu.inv_sqrt2", static_cast<float>(M_SQRT1_2));
  const std::string one = g.scalar("gelu.one", 1.0F);
  const std::string half = g.scalar("gelu.half", 0.5F);
  g.node("Mul", {x, inv_sqrt2}, site.prefix + "scaled");
  g.node("Erf", {g.current()}, site.prefix + "erf");
  g.node("Add", {g.current(), one}, site.prefix + "one_plus_erf");
  g.node("Mul", {x, half}, site.prefix + "half_x");
  g.node("Mul", {site.prefix + "half_x", site.prefix + "one_plus_erf"}, site.output);
}

// Inverted dropout is the identity in evaluation: no node, the next layer reads its input.
void emit_dropout(GraphBuilder&, Layer<float>&, const LayerSite&) {}

// One row per layer class, by Layer::type() (the PyTorch module name): a new layer kind of
// nn/network.cpp's kLayerKinds or activation of its kActivations is a row here.
struct OnnxMapping {
  const char* type;
  const char* op;  // the operator it becomes, for the site's output name
  void (*emit)(GraphBuilder&, Layer<float>&, const LayerSite&);
};

const OnnxMapping kMappings[] = {
    {"Linear", "Gemm", emit_linear},       {"BatchNorm1d", "BatchNormalization", emit_batch_norm},
    {"ReLU", "Relu", emit_relu},           {"LeakyReLU", "LeakyRelu", emit_leaky_relu},
    {"Tanh", "Tanh", emit_tanh},           {"GELU", "Gelu", emit_gelu},
    {"Dropout", "Identity", emit_dropout},
};

const OnnxMapping& mapping_of(const Layer<float>& layer, std::size_t index,
                              const std::string& source) {
  std::string known;
  for (const OnnxMapping& m : kMappings) {
    if (std::string(m.type) == layer.type()) return m;
    known += (known.empty() ? "" : ", ") + std::string(m.type);
  }
  throw ExportError(source + ": layer " + std::to_string(index) + " is a " + layer.type() +
                    ", which has no ONNX mapping (expected one of " + known + ")");
}

// x = (pixels - mean) / std, the model's normalisation of pixels already divided by 255 (Sub-14,
// Div-14, scalars broadcast); nothing for a model trained without it (mean 0, std 1).
void emit_normalisation(GraphBuilder& g, const Architecture& arch) {
  if (arch.norm_mean == 0.0 && arch.norm_std == 1.0) return;
  const std::string mean = g.scalar("input.mean", static_cast<float>(arch.norm_mean));
  const std::string std_dev = g.scalar("input.std", static_cast<float>(arch.norm_std));
  g.node("Sub", {g.current(), mean}, "input.centred");
  g.node("Div", {g.current(), std_dev}, "input.normalised");
}

// A float32 graph input or output of shape (N, width), N the dynamic batch dimension.
void add_value_info(onnx::ValueInfoProto* v, const std::string& name, std::size_t width) {
  v->set_name(name);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  t->mutable_shape()->add_dim()->set_dim_param("N");
  t->mutable_shape()->add_dim()->set_dim_value(dim(width));
}

void build_graph(onnx::GraphProto& graph, Network<float>& net, const std::string& source) {
  const Architecture& arch = net.architecture();
  graph.set_name("nanomlp");
  graph.set_doc_string(arch.describe());
  add_value_info(graph.add_input(), "pixels", arch.input_dim);
  GraphBuilder g(graph);
  emit_normalisation(g, arch);
  auto& layers = net.layers();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const OnnxMapping& m = mapping_of(*layers[i], i, source);
    const std::string prefix = std::to_string(i) + ".";
    const bool last = i + 1 == layers.size();
    m.emit(g, *layers[i], {prefix, last ? "logits" : prefix + m.op});
  }
  // Only a layer without a node (dropout) last would leave the logits unnamed.
  if (g.current() != "logits") g.node("Identity", {g.current()}, "logits");
  // Softmax-13: the normalised exponential along one axis, here the classes.
  set_int(g.node("Softmax", {"logits"}, "probabilities"), "axis", 1);
  add_value_info(graph.add_output(), "probabilities", arch.num_classes);
  add_value_info(graph.add_output(), "logits", arch.num_classes);
}

}  // namespace

std::string network_to_onnx(Network<float>& net, const std::string& source) {
  onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("nanomlp");
  model.set_producer_version(kVersion);
  model.set_doc_string("nanomlp " + net.architecture().describe() +
                       "; input: pixels / 255, float32 (N, 784)");
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");  // the default domain, ai.onnx
  opset->set_version(kOnnxOpset);
  onnx::StringStringEntryProto* arch = model.add_metadata_props();
  arch->set_key("nanomlp.architecture");
  arch->set_value(net.architecture().to_json());
  build_graph(*model.mutable_graph(), net, source);
  std::string bytes;
  if (!model.SerializeToString(&bytes)) {
    throw ExportError(source + ": the ONNX model could not be serialised (" +
                      std::to_string(model.ByteSizeLong()) + " bytes; protobuf's limit is 2 GiB)");
  }
  return bytes;
}

void write_onnx_file(const std::string& path, Network<float>& net, const std::string& source) {
  write_file_atomic(path, network_to_onnx(net, source));
}

}  // namespace nanomlp
