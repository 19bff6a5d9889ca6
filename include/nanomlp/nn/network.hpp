// The network: an Architecture (everything needed to rebuild it, stored in the model file) and
// a Network, the nn.Sequential-like stack of layers built from it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/tensor.hpp"
#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

// One module of the network, in nn.Sequential's order (Architecture::layers()).
struct LayerSpec {
  enum class Kind { linear, batch_norm, activation, dropout };
  Kind kind;
  std::size_t in = 0, out = 0;  // widths: in -> out for Linear, out = in for the others
  std::string activation;       // the activation's name (one of activation_names())
  double p = 0.0;               // Dropout's probability
};

struct Architecture {
  std::size_t input_dim = 784;           // D: pixels of one image
  std::vector<std::size_t> hidden{128};  // widths of the hidden layers
  std::size_t num_classes = 10;          // K
  std::string activation = "relu";       // one of activation_names()
  bool batch_norm = false;               // BatchNorm1d after each hidden Linear
  double dropout = 0.0;                  // Dropout(p) after each hidden activation
  std::string dataset = "mnist";         // what the model was trained on
  // Input normalisation: x = (pixel / 255 - mean) / std.
  double norm_mean = 0.0;
  double norm_std = 1.0;

  float input_scale() const { return static_cast<float>(1.0 / (255.0 * norm_std)); }
  float input_shift() const { return static_cast<float>(-norm_mean / norm_std); }
  // H of the first Linear layer: the first hidden width, or K without hidden layers.
  std::size_t first_width() const { return hidden.empty() ? num_classes : hidden[0]; }

  // The modules, in order: per hidden width Linear, BatchNorm1d (with batch_norm), the
  // activation, Dropout (with dropout > 0); then the output Linear. Network builds these and
  // to_json() lists them.
  std::vector<LayerSpec> layers() const;

  // Throws UsageError naming the setting (`--hidden`, `--activation`, `--dropout`).
  void validate() const;
  // e.g. "784-128-10, relu"
  std::string describe() const;
  // JSON text, stored under "architecture" in the model file's __metadata__.
  std::string to_json() const;
  // Throws ModelFormatError naming `source` if the text is not a valid architecture.
  static Architecture from_json(const std::string& text, const std::string& source);
};

const std::vector<std::string>& activation_names();
// A new activation layer by name (one of activation_names()); throws UsageError naming
// --activation for any other.
template <typename T>
std::unique_ptr<Layer<T>> make_activation(const std::string& name);
const std::vector<std::string>& init_names();  // "auto", "he", "xavier"

template <typename T>
class Network {
 public:
  explicit Network(Architecture arch);

  const Architecture& architecture() const { return arch_; }

  // Weights: "he" N(0, 2/fan_in) (He et al. 2015) for ReLU-like activations, "xavier"
  // N(0, 2/(fan_in+fan_out)) (Glorot & Bengio 2010) for tanh; "auto" picks by activation.
  // Biases start at zero, batch-norm at gamma = 1, beta = 0.
  void init(Rng& rng, const std::string& scheme = "auto");

  // x (N, D) -> logits (N, K). The returned matrix lives until the next forward. With
  // from > 0, x is the input of layer `from` and the layers before it are skipped: a fast path
  // that computes the first layers its own way (fast/sparse_input.hpp) runs the rest here.
  const Mat<T>& forward(const Mat<T>& x, bool training, std::size_t from = 0);
  // x (N, D) -> logits (N, K) in evaluation mode, batch-invariant: each row of the logits is
  // bit-identical whatever the batch it came in (Layer::infer). Slower than forward; for
  // prediction, where one image and a batch must agree.
  const Mat<T>& infer(const Mat<T>& x);
  // dlogits (N, K) -> gradients of the parameters of layers [from, end), after a forward from
  // the same layer. Returns the gradient of layer `from`'s input, (N, width), for from > 0;
  // layer 0 computes no gradient for the pixels, and an empty matrix is returned.
  const Mat<T>& backward(const Mat<T>& dlogits, std::size_t from = 0);

  std::vector<Param<T>> params();
  std::vector<Buffer<T>> buffers();
  std::size_t num_params();
  std::vector<std::unique_ptr<Layer<T>>>& layers() { return layers_; }

  // The generator dropout draws its masks from (owned by the trainer).
  void set_rng(Rng* rng);

 private:
  Architecture arch_;
  std::vector<std::unique_ptr<Layer<T>>> layers_;
  std::vector<Mat<T>> outs_;   // outs_[i]: output of layer i, (N, width)
  std::vector<Mat<T>> grads_;  // grads_[i]: gradient of the input of layer i, (N, width)
};

// A table of the layers: index, PyTorch module, output shape, parameter count; then the total
// parameters and the size of the model's tensors in bytes.
std::string model_summary(Network<float>& net);

// "101,770": counts as the summary and the report print them.
std::string with_thousands(std::size_t n);

}  // namespace nanomlp
