// The ONNX export's graph, read back with libonnx's generated classes: the model's header, the
// input and outputs, one node sequence per layer kind with its attributes, the initializers in
// the layout each operator reads, and the error for a layer it cannot map. tests/onnx runs the
// exported graphs in ONNX Runtime against nanomlp eval.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "nanomlp/app/onnx_export.hpp"
#include "nanomlp/core/version.hpp"
#include "nanomlp/nn/network.hpp"

namespace nanomlp {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Network<float> network_of(const Architecture& arch) {
  Network<float> net(arch);
  Rng rng(3);
  net.init(rng);
  // Batch norm starts at gamma 1, beta 0 and standard-normal statistics: other values show
  // which tensor went where.
  for (auto& b : net.buffers()) {
    for (float& v : *b.value) v = 0.5F + static_cast<float>(rng.uniform());
  }
  return net;
}

onnx::ModelProto exported(Network<float>& net) {
  onnx::ModelProto model;
  EXPECT_TRUE(model.ParseFromString(network_to_onnx(net, "test.safetensors")));
  return model;
}

std::vector<std::string> op_types(const onnx::GraphProto& graph) {
  std::vector<std::string> ops;
  for (const auto& node : graph.node()) ops.push_back(node.op_type());
  return ops;
}

const onnx::TensorProto& initializer(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& t : graph.initializer()) {
    if (t.name() == name) return t;
  }
  ADD_FAILURE() << "no initializer " << name;
  static const onnx::TensorProto none;
  return none;
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const std::string& name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

// "N" then width: the dynamic batch dimension and the fixed one.
void expect_batch_by(const onnx::ValueInfoProto& v, const std::string& name, std::int64_t width) {
  EXPECT_EQ(v.name(), name);
  const auto& t = v.type().tensor_type();
  EXPECT_EQ(t.elem_type(), onnx::TensorProto::FLOAT) << name;
  ASSERT_EQ(t.shape().dim_size(), 2) << name;
  EXPECT_EQ(t.shape().dim(0).dim_param(), "N") << name;
  EXPECT_EQ(t.shape().dim(1).dim_value(), width) << name;
}

TEST(OnnxExport, HeaderInputsAndOutputs) {
  Architecture arch;
  arch.hidden = {8};
  Network<float> net = network_of(arch);
  const onnx::ModelProto model = exported(net);
  EXPECT_EQ(model.ir_version(), 8);
  EXPECT_EQ(model.producer_name(), "nanomlp");
  EXPECT_EQ(model.producer_version(), kVersion);
  ASSERT_EQ(model.opset_import_size(), 1);
  EXPECT_EQ(model.opset_import(0).domain(), "");
  EXPECT_EQ(model.opset_import(0).version(), 17);
  const onnx::GraphProto& g = model.graph();
  ASSERT_EQ(g.input_size(), 1);
  expect_batch_by(g.input(0), "pixels", 784);
  ASSERT_EQ(g.output_size(), 2);
  expect_batch_by(g.output(0), "probabilities", 10);
  expect_batch_by(g.output(1), "logits", 10);
  // Mean 0 and std 1: no normalisation nodes.
  EXPECT_THAT(op_types(g), ElementsAre("Gemm", "Relu", "Gemm", "Softmax"));
  const onnx::NodeProto& softmax = g.node(3);
  EXPECT_THAT(softmax.input(), ElementsAre("logits"));
  EXPECT_THAT(softmax.output(), ElementsAre("probabilities"));
  ASSERT_NE(attribute(softmax, "axis"), nullptr);
  EXPECT_EQ(attribute(softmax, "axis")->i(), 1);
}

// Gemm reads W as Dense keeps it, (D, H) row-major with transB = 0, and the bias (H).
TEST(OnnxExport, GemmHoldsTheWeightsAsDenseKeepsThem) {
  Architecture arch;
  arch.input_dim = 5;
  arch.hidden = {3};
  arch.num_classes = 2;
  Network<float> net = network_of(arch);
  const onnx::ModelProto model = exported(net);
  const auto& dense = dynamic_cast<Dense<float>&>(*net.layers()[0]);
  const onnx::TensorProto& w = initializer(model.graph(), "0.weight");
  EXPECT_THAT(w.dims(), ElementsAre(5, 3));
  ASSERT_EQ(w.float_data_size(), 15);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(w.float_data(i), dense.W_.data()[i]) << i;
  const onnx::TensorProto& b = initializer(model.graph(), "0.bias");
  EXPECT_THAT(b.dims(), ElementsAre(3));
  const onnx::NodeProto& gemm = model.graph().node(0);
  EXPECT_THAT(gemm.input(), ElementsAre("pixels", "0.weight", "0.bias"));
  ASSERT_NE(attribute(gemm, "transB"), nullptr);
  EXPECT_EQ(attribute(gemm, "transB")->i(), 0);
}

// Normalisation, batch norm with its running statistics, GELU composed from Erf, dropout left
// out, LeakyRelu's slope: the node sequence of each layer kind.
TEST(OnnxExport, EveryLayerKindBecomesItsOperators) {
  Architecture arch;
  arch.hidden = {6, 4};
  arch.activation = "gelu";
  arch.batch_norm = true;
  arch.dropout = 0.2;
  arch.norm_mean = 0.13;
  arch.norm_std = 0.31;
  Network<float> net = network_of(arch);
  const onnx::ModelProto model = exported(net);
  const onnx::GraphProto& g = model.graph();
  EXPECT_THAT(op_types(g), ElementsAre("Sub", "Div", "Gemm", "BatchNormalization", "Mul", "Erf",
                                       "Add", "Mul", "Mul", "Gemm", "BatchNormalization", "Mul",
                                       "Erf", "Add", "Mul", "Mul", "Gemm", "Softmax"));
  EXPECT_FLOAT_EQ(initializer(g, "input.mean").float_data(0), 0.13F);
  EXPECT_FLOAT_EQ(initializer(g, "input.std").float_data(0), 0.31F);
  const onnx::NodeProto& bn = g.node(3);
  EXPECT_THAT(bn.input(),
              ElementsAre("0.Gemm", "1.weight", "1.bias", "1.running_mean", "1.running_var"));
  ASSERT_NE(attribute(bn, "epsilon"), nullptr);
  EXPECT_FLOAT_EQ(attribute(bn, "epsilon")->f(), 1e-5F);
  const auto& batch_norm = dynamic_cast<BatchNorm<float>&>(*net.layers()[1]);
  const onnx::TensorProto& var = initializer(g, "1.running_var");
  ASSERT_EQ(var.float_data_size(), 6);
  EXPECT_EQ(var.float_data(5), batch_norm.running_var_.data()[5]);
  EXPECT_FLOAT_EQ(initializer(g, "gelu.inv_sqrt2").float_data(0), static_cast<float>(M_SQRT1_2));
  // Module 3 is the dropout: the Gemm of module 4 reads the GELU of module 2.
  EXPECT_EQ(g.node(9).input(0), "2.Gelu");

  arch.activation = "leaky_relu";
  Network<float> leaky = network_of(arch);
  const onnx::ModelProto leaky_model = exported(leaky);
  const onnx::NodeProto& act = leaky_model.graph().node(4);
  EXPECT_EQ(act.op_type(), "LeakyRelu");
  ASSERT_NE(attribute(act, "alpha"), nullptr);
  EXPECT_FLOAT_EQ(attribute(act, "alpha")->f(), 0.01F);
}

TEST(OnnxExport, TanhIsTanh) {
  Architecture arch;
  arch.hidden = {4};
  arch.activation = "tanh";
  Network<float> net = network_of(arch);
  EXPECT_THAT(op_types(exported(net).graph()), ElementsAre("Gemm", "Tanh", "Gemm", "Softmax"));
}

// A layer the exporter has no row for: an ExportError naming the file, the layer and its type.
class Unmapped final : public Layer<float> {
 public:
  const char* type() const override { return "Softplus"; }
  void forward(const Mat<float>& x, Mat<float>& y, bool) override { y = x; }
  void backward(const Mat<float>& dy, Mat<float>* dx) override {
    if (dx != nullptr) *dx = dy;
  }
};

TEST(OnnxExport, UnknownLayerIsAnExportError) {
  Architecture arch;
  arch.hidden = {4};
  Network<float> net = network_of(arch);
  net.layers()[1] = std::make_unique<Unmapped>();
  try {
    network_to_onnx(net, "odd.safetensors");
    FAIL() << "no ExportError";
  } catch (const ExportError& e) {
    EXPECT_THAT(e.what(), HasSubstr("odd.safetensors"));
    EXPECT_THAT(e.what(), HasSubstr("layer 1"));
    EXPECT_THAT(e.what(), HasSubstr("Softplus"));
    EXPECT_THAT(e.what(), HasSubstr("Linear, BatchNorm1d, ReLU"));
  }
}

}  // namespace
}  // namespace nanomlp
