#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "nanomlp/core/thread_pool.hpp"
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
  sparse_x_ = nullptr;
  y.resize(N, H);
  kernels::gemm<T>(false, false, N, H, D, T(1), x.data(), D, W_.data(), H, T(0), y.data(), H);
  kernels::add_bias_rows(y.data(), b_.data(), N, H);
}

// The same y = x W + b, with x = S + shift held sparse (see nanomlp/nn/sparse.hpp). Thread t
// takes the t-th run of blocks.
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
    ThreadPool& pool = ThreadPool::global();
    const std::size_t blocks = x.blocks();
    const auto parts =
        kernels::sparse_parallel(x.rows, H)
            ? std::min<std::size_t>(static_cast<std::size_t>(pool.max_parts()), blocks)
            : 1;
    if (parts <= 1) {
      for (std::size_t b = 0; b < blocks; ++b) {
        kernels::sparse_forward_block(x, b, W_.data(), b_.data(), y.row(x.block_begin[b]), H);
      }
      return;
    }
    // Each thread adds into its own slab, 16 KB away from the next, then copies its rows into
    // y. Adding in place would put two cores' hot rows side by side in y, and the hardware
    // prefetchers would bounce those cache lines between the cores (1.5x slower, measured).
    const std::size_t slab = SparseBatch::kRowsPerBlock * H + 4096;
    scratch_.resize(parts, slab);
    pool.run(static_cast<int>(parts), [&](int part) {
      const auto p = static_cast<std::size_t>(part);
      float* mine = scratch_.row(p);
      for (std::size_t b = blocks * p / parts; b < blocks * (p + 1) / parts; ++b) {
        kernels::sparse_forward_block(x, b, W_.data(), b_.data(), mine, H);
        const std::size_t rows = x.block_begin[b + 1] - x.block_begin[b];
        std::copy(mine, mine + rows * H, y.row(x.block_begin[b]));
      }
    });
  }
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
  if constexpr (std::is_same_v<T, float>) {
    if (sparse_x_ != nullptr) {
      if (dx != nullptr) throw std::logic_error("Dense: no input gradient for a sparse input");
      // Threads split the rows of dW (the pixels), so each writes one contiguous stretch;
      // every entry is summed in the same order whatever the split.
      ThreadPool& pool = ThreadPool::global();
      const int parts = kernels::sparse_parallel(N, H) ? pool.max_parts() : 1;
      pool.run(parts, [&](int part) {
        const auto p = static_cast<std::size_t>(part), n = static_cast<std::size_t>(parts);
        kernels::sparse_weight_grad(*sparse_x_, dy.data(), H, D * p / n, D * (p + 1) / n,
                                    dW_.data(), part == 0 ? db_.data() : nullptr);
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
