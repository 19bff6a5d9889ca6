#include <algorithm>
#include <cmath>
#include <limits>

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp::kernels {
namespace {

// Element-wise passes over large inputs (evaluation batches, wide layers) are split into
// contiguous slices over the pool; below this many elements one thread is faster.
constexpr std::size_t kParallelMinElements = std::size_t{1} << 16;

}  // namespace

// The loops live in plain functions over raw pointers: inside a lambda that captures them by
// reference the compiler cannot rule out aliasing and stops vectorising.
template <typename T>
void add_bias_range(T* y, const T* b, std::size_t r0, std::size_t r1, std::size_t H) {
  for (std::size_t i = r0; i < r1; ++i) {
    T* row = y + i * H;
    for (std::size_t j = 0; j < H; ++j) row[j] += b[j];
  }
}

template <typename T>
void add_bias_rows(T* y, const T* b, std::size_t N, std::size_t H) {
  ThreadPool::global().for_slices(
      N, N * H >= kParallelMinElements,
      [=](std::size_t r0, std::size_t r1) { add_bias_range(y, b, r0, r1, H); });
}

template <typename T>
void sum_rows(const T* dy, T* db, std::size_t N, std::size_t H) {
  std::fill(db, db + H, T(0));
  for (std::size_t i = 0; i < N; ++i) {
    const T* row = dy + i * H;
    for (std::size_t j = 0; j < H; ++j) db[j] += row[j];
  }
}

template <typename T>
void relu_forward_range(const T* x, T* y, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) y[i] = x[i] > T(0) ? x[i] : T(0);
}

template <typename T>
void relu_backward_range(const T* y, const T* dy, T* dx, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

template <typename T>
void relu_forward(const T* x, T* y, std::size_t n) {
  ThreadPool::global().for_slices(n, n >= kParallelMinElements, [=](std::size_t b, std::size_t e) {
    relu_forward_range(x, y, b, e);
  });
}

template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, std::size_t n) {
  ThreadPool::global().for_slices(n, n >= kParallelMinElements, [=](std::size_t b, std::size_t e) {
    relu_backward_range(y, dy, dx, b, e);
  });
}

void u8_to_float(const std::uint8_t* src, float* dst, std::size_t n, float scale, float shift) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) * scale + shift;
}

template <typename T>
double softmax_cross_entropy(const T* z, const std::uint8_t* labels, std::size_t N, std::size_t K,
                             T eps, T* dz, std::size_t* correct) {
  double total = 0.0;
  std::size_t hits = 0;
  const T inv_n = T(1) / static_cast<T>(N);
  const T off = eps / static_cast<T>(K);  // smoothed mass on every class
  for (std::size_t i = 0; i < N; ++i) {
    const T* zi = z + i * K;
    const std::size_t y = labels[i];
    // Subtracting the maximum keeps exp() finite (log-sum-exp trick); the arg-max comes free.
    std::size_t arg = 0;
    for (std::size_t k = 1; k < K; ++k) {
      if (zi[k] > zi[arg]) arg = k;
    }
    const T m = zi[arg];
    // exp(z_k - m) once per class: kept in dz when the gradient is wanted (softmax_k is then
    // that over the sum), so the row costs K exponentials, not 2K.
    T* di = dz != nullptr ? dz + i * K : nullptr;
    T sum = 0;
    for (std::size_t k = 0; k < K; ++k) {
      const T e = std::exp(zi[k] - m);
      if (di != nullptr) di[k] = e;
      sum += e;
    }
    const T lse = m + std::log(sum);
    // loss_i = lse - sum_k q_k z_k, with q = (1 - eps) onehot(y) + eps / K.
    T qz = (T(1) - eps) * zi[y];
    if (eps != T(0)) {
      for (std::size_t k = 0; k < K; ++k) qz += off * zi[k];
    }
    total += static_cast<double>(lse - qz);
    if (arg == y) ++hits;
    if (di != nullptr) {
      const T inv_sum = T(1) / sum;
      for (std::size_t k = 0; k < K; ++k) {
        const T q = (k == y ? T(1) - eps : T(0)) + off;
        di[k] = (di[k] * inv_sum - q) * inv_n;
      }
    }
  }
  if (correct != nullptr) *correct = hits;
  return total;
}

template <typename T>
void softmax_rows(const T* z, T* p, std::size_t N, std::size_t K) {
  for (std::size_t i = 0; i < N; ++i) {
    const T* zi = z + i * K;
    T* pi = p + i * K;
    const T m = *std::max_element(zi, zi + K);
    T sum = 0;
    for (std::size_t k = 0; k < K; ++k) {
      pi[k] = std::exp(zi[k] - m);
      sum += pi[k];
    }
    const T inv = T(1) / sum;
    for (std::size_t k = 0; k < K; ++k) pi[k] *= inv;
  }
}

#define NANOMLP_INSTANTIATE(T)                                                         \
  template void add_bias_rows<T>(T*, const T*, std::size_t, std::size_t);              \
  template void sum_rows<T>(const T*, T*, std::size_t, std::size_t);                   \
  template void relu_forward<T>(const T*, T*, std::size_t);                            \
  template void relu_backward<T>(const T*, const T*, T*, std::size_t);                 \
  template double softmax_cross_entropy<T>(const T*, const std::uint8_t*, std::size_t, \
                                           std::size_t, T, T*, std::size_t*);          \
  template void softmax_rows<T>(const T*, T*, std::size_t, std::size_t);
NANOMLP_INSTANTIATE(float)
NANOMLP_INSTANTIATE(double)
#undef NANOMLP_INSTANTIATE

}  // namespace nanomlp::kernels
