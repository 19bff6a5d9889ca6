#include <utility>

#include "nanomlp/kernels.hpp"
#include "nanomlp/layers.hpp"

namespace nanomlp {

template <typename T>
Dense<T>::Dense(std::size_t in_features, std::size_t out_features, std::string prefix)
    : W_(out_features, in_features),
      b_(1, out_features),
      dW_(out_features, in_features),
      db_(1, out_features),
      prefix_(std::move(prefix)) {}

// Forward: y (N, H) = x (N, D) W^T (D, H) + b.
template <typename T>
void Dense<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  const std::size_t N = x.rows(), D = W_.cols(), H = W_.rows();
  x_ = &x;
  y.resize(N, H);
  kernels::gemm<T>(false, true, N, H, D, T(1), x.data(), D, W_.data(), D, T(0), y.data(), H);
  kernels::add_bias_rows(y.data(), b_.data(), N, H);
}

// Backward, from y = x W^T + b:
//   dW (H, D) = dy^T (H, N) x (N, D)
//   db (H)    = sum over the batch of dy
//   dx (N, D) = dy (N, H) W (H, D)
template <typename T>
void Dense<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  const std::size_t N = dy.rows(), D = W_.cols(), H = W_.rows();
  kernels::gemm<T>(true, false, H, D, N, T(1), dy.data(), H, x_->data(), D, T(0), dW_.data(), D);
  kernels::sum_rows(dy.data(), db_.data(), N, H);
  if (dx != nullptr) {
    dx->resize(N, D);
    kernels::gemm<T>(false, false, N, D, H, T(1), dy.data(), H, W_.data(), D, T(0), dx->data(), D);
  }
}

template <typename T>
std::vector<Param<T>> Dense<T>::params() {
  return {{prefix_ + "weight", &W_, &dW_}, {prefix_ + "bias", &b_, &db_}};
}

template class Dense<float>;
template class Dense<double>;

}  // namespace nanomlp
