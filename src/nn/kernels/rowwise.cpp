// The batch-invariant affine map used for inference: every row of the output is computed by
// the same sequence of floating-point operations whatever the batch size or the row's place in
// it, so one image predicted alone gets exactly the probabilities it gets in a batch of 300.
// A BLAS GEMM cannot promise that: it picks its kernel, blocking and even its summation order
// from the shape (a batch of 1 goes through a GEMV), and results differ in the last bits.
//
// This file is compiled with -ffp-contract=off (CMakeLists.txt): a multiply-add written
// a * b + c is then always rounded twice, in the vectorised body of a loop and in its scalar
// tail alike, instead of being fused in one and not the other.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "nanomlp/nn/kernels.hpp"

namespace nanomlp::kernels {
namespace {

// Columns of y kept in one accumulator: 64 floats are four AVX-512 registers.
constexpr std::size_t kCols = 64;

// acc (w) = b (w) + sum over d, in order, of x_d * W (d, j0 .. j0 + w): one row, one stretch
// of columns. W has row stride ldw.
template <typename T, std::size_t W_>
void row_stretch(const T* x, std::size_t D, const T* W, std::size_t ldw, const T* b, T* acc,
                 std::size_t w) {
  const std::size_t width = W_ > 0 ? W_ : w;
  for (std::size_t j = 0; j < width; ++j) acc[j] = b[j];
  for (std::size_t d = 0; d < D; ++d) {
    const T xd = x[d];
    const T* wd = W + d * ldw;
    for (std::size_t j = 0; j < width; ++j) acc[j] = acc[j] + xd * wd[j];
  }
}

}  // namespace

template <typename T>
void affine_rows(const T* x, std::size_t N, std::size_t D, const T* W, const T* b, T* y,
                 std::size_t H) {
  if ((N * D > 0 && x == nullptr) || (D * H > 0 && W == nullptr) ||
      (H > 0 && (b == nullptr || (N > 0 && y == nullptr)))) {
    throw std::invalid_argument("affine_rows: null argument for N=" + std::to_string(N) +
                                " D=" + std::to_string(D) + " H=" + std::to_string(H));
  }
  T acc[kCols];
  for (std::size_t n = 0; n < N; ++n) {
    const T* xn = x + n * D;
    T* yn = y + n * H;
    for (std::size_t j0 = 0; j0 < H; j0 += kCols) {
      const std::size_t w = std::min(kCols, H - j0);
      if (w == kCols) {
        row_stretch<T, kCols>(xn, D, W + j0, H, b + j0, acc, w);
      } else {
        row_stretch<T, 0>(xn, D, W + j0, H, b + j0, acc, w);
      }
      std::copy(acc, acc + w, yn + j0);
    }
  }
}

template void affine_rows<float>(const float*, std::size_t, std::size_t, const float*, const float*,
                                 float*, std::size_t);
template void affine_rows<double>(const double*, std::size_t, std::size_t, const double*,
                                  const double*, double*, std::size_t);

}  // namespace nanomlp::kernels
