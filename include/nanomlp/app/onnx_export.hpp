// ONNX export of a Network (https://onnx.ai/onnx/intro/concepts.html): one graph, in
// evaluation mode, that any ONNX runtime runs without nanomlp.
//
// Input "pixels": float32 (N, 784), N dynamic, each row one image in row-major 28x28 order with
// its pixels divided by 255 (in [0, 1]); the model's normalisation (pixel / 255 - mean) / std is
// in the graph. Outputs "probabilities" (N, K), Softmax over axis 1, and "logits" (N, K).
// Linear is Gemm, BatchNorm1d is BatchNormalization with the running statistics, Dropout is
// left out (the identity in evaluation), ReLU, LeakyReLU and Tanh are their operators, and
// GELU, which opset 17 lacks, is 0.5 x (1 + Erf(x / sqrt 2)).
#pragma once

#include <cstdint>
#include <string>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/nn/network.hpp"

namespace nanomlp {

// The default domain's operator set the graph uses: the newest libonnx 1.12 knows.
inline constexpr std::int64_t kOnnxOpset = 17;
// IR version 8 (ONNX 1.10 and later), what opset 17 requires at least.
inline constexpr std::int64_t kOnnxIrVersion = 8;

// The network holds a layer the exporter has no ONNX mapping for.
class ExportError : public Error {
 public:
  using Error::Error;
};

// The serialised onnx.ModelProto of net; `source` names the model in error messages. Throws
// ExportError for a layer it cannot map.
std::string network_to_onnx(Network<float>& net, const std::string& source);

// network_to_onnx written atomically (temp file in the same folder + rename); IoError for an
// unwritable path, and no file left behind.
void write_onnx_file(const std::string& path, Network<float>& net, const std::string& source);

}  // namespace nanomlp
