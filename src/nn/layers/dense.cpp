#include <cmath>
#include <stdexcept>
#include <utility>

#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

template <typename T>
Dense<T>::Dense(std::size_t in_features, std::size_t out_features, std::string prefix)
    : W_(in_features, out_features),
      b_(1, out_features),
      dW_(in_features, out_features),
      db_(1, out_features),
      prefix_(std::move(prefix)) {}

// Forward: y (N, H) = x (N, D) W (D, H) + b.
template <typename T>
void Dense<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  const std::size_t N = x.rows(), D = W_.rows(), H = W_.cols();
  x_ = &x;
  y.resize(N, H);
  kernels::gemm<T>(false, false, N, H, D, T(1), x.data(), D, W_.data(), H, T(0), y.data(), H);
  kernels::add_bias_rows(y.data(), b_.data(), N, H);
}

template <typename T>
void Dense<T>::infer(const Mat<T>& x, Mat<T>& y) {
  if (x.cols() != W_.rows()) {
    throw std::invalid_argument("Dense: input has " + std::to_string(x.cols()) +
                                " columns, the layer takes " + std::to_string(W_.rows()));
  }
  y.resize(x.rows(), W_.cols());
  kernels::affine_rows<T>(x.data(), x.rows(), W_.rows(), W_.data(), b_.data(), y.data(), W_.cols());
}

// Backward, from y = x W + b:
//   dW (D, H) = x^T (D, N) dy (N, H)
//   db (H)    = sum over the batch of dy
//   dx (N, D) = dy (N, H) W^T (H, D)
template <typename T>
void Dense<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  const std::size_t N = dy.rows(), D = W_.rows(), H = W_.cols();
  kernels::gemm<T>(true, false, D, H, N, T(1), x_->data(), D, dy.data(), H, T(0), dW_.data(), H);
  kernels::sum_rows(dy.data(), db_.data(), N, H);
  if (dx != nullptr) {
    dx->resize(N, D);
    kernels::gemm<T>(false, true, N, D, H, T(1), dy.data(), H, W_.data(), H, T(0), dx->data(), D);
  }
}

template <typename T>
void Dense<T>::init(Rng& rng, bool xavier) {
  const double fan_in = static_cast<double>(W_.rows()), fan_out = static_cast<double>(W_.cols());
  const double stddev = xavier ? std::sqrt(2.0 / (fan_in + fan_out)) : std::sqrt(2.0 / fan_in);
  // Drawn in the order of PyTorch's (out, in) weight, so a seed gives the same model file
  // whatever layout the layer keeps.
  for (std::size_t h = 0; h < W_.cols(); ++h) {
    for (std::size_t d = 0; d < W_.rows(); ++d) W_(d, h) = static_cast<T>(rng.normal() * stddev);
  }
  b_.fill(T(0));
}

template <typename T>
std::vector<Param<T>> Dense<T>::params() {
  return {{prefix_ + "weight", &W_, &dW_, true}, {prefix_ + "bias", &b_, &db_, false}};
}

template class Dense<float>;
template class Dense<double>;

}  // namespace nanomlp
