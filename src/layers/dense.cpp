#include <stdexcept>
#include <type_traits>
#include <utility>

#include "nanomlp/kernels.hpp"
#include "nanomlp/layers.hpp"
#include "nanomlp/thread_pool.hpp"

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
  sparse_x_ = nullptr;
  y.resize(N, H);
  kernels::gemm<T>(false, false, N, H, D, T(1), x.data(), D, W_.data(), H, T(0), y.data(), H);
  kernels::add_bias_rows(y.data(), b_.data(), N, H);
}

// The same y = x W + b, with x = S + shift held sparse (see nanomlp/sparse.hpp). Threads take
// whole blocks of rows.
template <typename T>
void Dense<T>::forward(const SparseBatch& x, Mat<T>& y) {
  if constexpr (!std::is_same_v<T, float>) {
    throw std::logic_error("Dense::forward(SparseBatch): float only");
  } else {
    const std::size_t H = W_.cols();
    if (x.cols != W_.rows()) {
      throw std::invalid_argument("Dense: sparse input has " + std::to_string(x.cols) +
                                  " columns, the layer takes " + std::to_string(W_.rows()));
    }
    x_ = nullptr;
    sparse_x_ = &x;
    y.resize(x.rows, H);
    ThreadPool::global().for_slices(x.blocks(), true, [&](std::size_t begin, std::size_t end) {
      for (std::size_t b = begin; b < end; ++b) {
        kernels::sparse_forward_block(x, b, W_.data(), b_.data(), y.data(), H);
      }
    });
  }
}

// Backward, from y = x W + b:
//   dW (D, H) = x^T (D, N) dy (N, H)
//   db (H)    = sum over the batch of dy
//   dx (N, D) = dy (N, H) W^T (H, D)
template <typename T>
void Dense<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  const std::size_t N = dy.rows(), D = W_.rows(), H = W_.cols();
  if constexpr (std::is_same_v<T, float>) {
    if (sparse_x_ != nullptr) {
      if (dx != nullptr) throw std::logic_error("Dense: no input gradient for a sparse input");
      // Threads split the columns of dW in 16-wide slabs; every entry is summed in the same
      // order whatever the split.
      ThreadPool& pool = ThreadPool::global();
      const std::size_t slabs = (H + 15) / 16;
      pool.for_slices(slabs, slabs > 1, [&](std::size_t begin, std::size_t end) {
        kernels::sparse_weight_grad(*sparse_x_, dy.data(), H, begin * 16, std::min(H, end * 16),
                                    dW_.data(), db_.data());
      });
      return;
    }
  }
  kernels::gemm<T>(true, false, D, H, N, T(1), x_->data(), D, dy.data(), H, T(0), dW_.data(), H);
  kernels::sum_rows(dy.data(), db_.data(), N, H);
  if (dx != nullptr) {
    dx->resize(N, D);
    kernels::gemm<T>(false, true, N, D, H, T(1), dy.data(), H, W_.data(), H, T(0), dx->data(), D);
  }
}

template <typename T>
std::vector<Param<T>> Dense<T>::params() {
  return {{prefix_ + "weight", &W_, &dW_, true}, {prefix_ + "bias", &b_, &db_, false}};
}

template class Dense<float>;
template class Dense<double>;

}  // namespace nanomlp
