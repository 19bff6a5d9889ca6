// Layers: each one's forward and backward sit side by side in one .cpp under src/nn/layers/, and
// each caches only what its backward needs. Layers are templates on the scalar type so the
// same code trains in float and is gradient-checked in double.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/tensor.hpp"

namespace nanomlp {

// A trainable tensor, named as in a PyTorch nn.Sequential state dict ("0.weight").
template <typename T>
struct Param {
  std::string name;
  Mat<T>* value;
  Mat<T>* grad;
  // The file (PyTorch's state dict) holds value^T: a Linear weight is (out, in) there.
  bool transposed_in_file = false;
};

// Saved, non-trainable state (batch-norm running statistics).
template <typename T>
struct Buffer {
  std::string name;
  Mat<T>* value;
};

template <typename T>
class Layer {
 public:
  virtual ~Layer() = default;
  // PyTorch module class name: "Linear", "ReLU", "BatchNorm1d", ...
  virtual const char* type() const = 0;
  virtual std::size_t out_features(std::size_t in_features) const { return in_features; }
  // x (N, in) -> y (N, out). `training` selects batch statistics and dropout.
  virtual void forward(const Mat<T>& x, Mat<T>& y, bool training) = 0;
  // dy (N, out) -> parameter gradients (overwritten, not accumulated), and dx (N, in) unless
  // dx is nullptr (the first layer: no gradient for the input pixels).
  virtual void backward(const Mat<T>& dy, Mat<T>* dx) = 0;
  // Evaluation whose every output row depends only on its input row, bit for bit, whatever the
  // batch (prediction). Element-wise and per-row layers are that already; Dense overrides it.
  virtual void infer(const Mat<T>& x, Mat<T>& y) { forward(x, y, /*training=*/false); }
  virtual std::vector<Param<T>> params() { return {}; }
  virtual std::vector<Buffer<T>> buffers() { return {}; }
  // Saved int64 counters (batch norm's num_batches_tracked).
  virtual std::vector<std::pair<std::string, std::int64_t*>> counters() { return {}; }
  // The generator for layers that draw random numbers (dropout).
  virtual void set_rng(Rng* /*rng*/) {}
  // Sets the parameters and buffers to their initial values, drawing from rng where random:
  // xavier selects Glorot's variance over He's for weights. Layers without state do nothing.
  virtual void init(Rng& /*rng*/, bool /*xavier*/) {}
};

// y = x W + b: PyTorch's nn.Linear. W is kept (D, H), one row per input, as the original writes
// it and as the GEMMs want it (no transpose; fast/'s sparse first layer adds whole rows of W).
// Files hold PyTorch's weight, W^T (H, D); model_io transposes.
template <typename T>
class Dense final : public Layer<T> {
 public:
  Dense(std::size_t in_features, std::size_t out_features, std::string prefix);
  const char* type() const override { return "Linear"; }
  std::size_t out_features(std::size_t) const override { return W_.cols(); }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;
  // y = x W + b by kernels::affine_rows instead of a GEMM; caches nothing.
  void infer(const Mat<T>& x, Mat<T>& y) override;
  std::vector<Param<T>> params() override;
  // W ~ N(0, 2 / fan_in) (He et al. 2015) or N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio
  // 2010); b = 0.
  void init(Rng& rng, bool xavier) override;

  Mat<T> W_;   // (D, H)
  Mat<T> b_;   // (1, H)
  Mat<T> dW_;  // (D, H)
  Mat<T> db_;  // (1, H)

 private:
  std::string prefix_;
  const Mat<T>* x_ = nullptr;  // (N, D) the input of the last forward, for dW = x^T dy
};

// Element-wise activations. Each caches a pointer to its output or input (whichever its
// derivative is cheaper in) owned by the Network.
template <typename T>
class ReLU final : public Layer<T> {
 public:
  const char* type() const override { return "ReLU"; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;

 private:
  const Mat<T>* y_ = nullptr;  // (N, H)
};

template <typename T>
class LeakyReLU final : public Layer<T> {
 public:
  explicit LeakyReLU(T negative_slope = T(0.01)) : slope_(negative_slope) {}
  const char* type() const override { return "LeakyReLU"; }
  T negative_slope() const { return slope_; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;

 private:
  T slope_;
  const Mat<T>* x_ = nullptr;  // (N, H)
};

template <typename T>
class Tanh final : public Layer<T> {
 public:
  const char* type() const override { return "Tanh"; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;

 private:
  const Mat<T>* y_ = nullptr;  // (N, H)
};

// Exact GELU, x * Phi(x) (Hendrycks & Gimpel 2016), as PyTorch's nn.GELU() default.
template <typename T>
class GELU final : public Layer<T> {
 public:
  const char* type() const override { return "GELU"; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;

 private:
  const Mat<T>* x_ = nullptr;  // (N, H)
};

// Batch normalisation over the batch dimension (Ioffe & Szegedy 2015), as PyTorch's
// nn.BatchNorm1d(H) with momentum 0.1 and eps 1e-5: batch statistics in training (updating the
// running averages, the variance unbiased), running statistics in evaluation.
template <typename T>
class BatchNorm final : public Layer<T> {
 public:
  BatchNorm(std::size_t features, std::string prefix);
  const char* type() const override { return "BatchNorm1d"; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;
  std::vector<Param<T>> params() override;
  std::vector<Buffer<T>> buffers() override;
  std::vector<std::pair<std::string, std::int64_t*>> counters() override;
  // gamma = 1, beta = 0, running statistics of a standard normal, no batches seen.
  void init(Rng& rng, bool xavier) override;

  static constexpr double kMomentum = 0.1;
  static constexpr double kEps = 1e-5;

  Mat<T> gamma_;         // (1, H) "weight"
  Mat<T> beta_;          // (1, H) "bias"
  Mat<T> dgamma_;        // (1, H)
  Mat<T> dbeta_;         // (1, H)
  Mat<T> running_mean_;  // (1, H)
  Mat<T> running_var_;   // (1, H)
  std::int64_t num_batches_tracked_ = 0;

 private:
  std::string prefix_;
  Mat<T> xhat_;     // (N, H) normalised input of the last training forward
  Mat<T> inv_std_;  // (1, H) 1 / sqrt(var + eps) of that batch
};

// Inverted dropout (Srivastava et al. 2014): in training each unit is kept with probability
// 1 - p and scaled by 1 / (1 - p), so evaluation is the identity and deterministic.
template <typename T>
class Dropout final : public Layer<T> {
 public:
  explicit Dropout(double p) : p_(p) {}
  const char* type() const override { return "Dropout"; }
  void forward(const Mat<T>& x, Mat<T>& y, bool training) override;
  void backward(const Mat<T>& dy, Mat<T>* dx) override;
  void set_rng(Rng* rng) override { rng_ = rng; }
  double p() const { return p_; }

 private:
  double p_;
  Rng* rng_ = nullptr;
  bool active_ = false;  // whether the last forward dropped anything
  Mat<T> mask_;          // (N, H) 0 or 1 / (1 - p)
};

}  // namespace nanomlp
