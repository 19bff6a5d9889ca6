#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp::kernels {
namespace {

void blas(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, float alpha,
          const float* A, std::size_t lda, const float* B, std::size_t ldb, float beta, float* C,
          std::size_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

void blas(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, double alpha,
          const double* A, std::size_t lda, const double* B, std::size_t ldb, double beta,
          double* C, std::size_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, A,
              static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
              static_cast<blasint>(ldc));
}

// Each slice of a split product gets at least this many multiply-adds (about 10 microseconds
// at BLAS speed); smaller products, such as every one with the 10-wide output layer, stay on
// one thread, where waking another would cost more than it saves.
constexpr std::size_t kMinWorkPerPart = std::size_t{1} << 20;
// Split boundaries are multiples of this so that every part keeps whole SIMD panels.
constexpr std::size_t kSplitAlign = 16;

void check_gemm_args(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K,
                     const void* A, std::size_t lda, const void* B, std::size_t ldb, const void* C,
                     std::size_t ldc) {
  // Row-major: the leading dimension is at least the number of stored columns.
  const std::size_t a_cols = trans_a ? M : K;
  const std::size_t b_cols = trans_b ? K : N;
  if (lda < std::max<std::size_t>(1, a_cols) || ldb < std::max<std::size_t>(1, b_cols) ||
      ldc < std::max<std::size_t>(1, N) || (M * K > 0 && A == nullptr) ||
      (K * N > 0 && B == nullptr) || (M * N > 0 && C == nullptr)) {
    throw std::invalid_argument("gemm: inconsistent arguments M=" + std::to_string(M) +
                                " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                                " lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
                                " ldc=" + std::to_string(ldc));
  }
}

// OpenBLAS would otherwise start its own threads inside every call, on top of ours.
const bool kBlasSingleThreaded = [] {
  openblas_set_num_threads(1);
  return true;
}();

}  // namespace

void set_num_threads(int n) {
  openblas_set_num_threads(1);
  ThreadPool::global().set_num_threads(n);
}

int num_threads() {
  return ThreadPool::global().num_threads();
}

const char* blas_info() {
  static const std::string info = [] {
    std::string s = openblas_get_config();  // "OpenBLAS 0.3.21 ... SkylakeX MAX_THREADS=64"
    s += " (core ";
    s += openblas_get_corename();
    s += ")";
    return s;
  }();
  return info.c_str();
}

template <typename T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.max_parts();
  const std::size_t max_parts =
      std::min<std::size_t>(static_cast<std::size_t>(threads), M * N * K / kMinWorkPerPart);
  if (max_parts < 2 || std::max(M, N) < 2 * kSplitAlign) {
    blas(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the longer side of C into `threads` aligned slabs; each slab is an independent
  // product, so no reduction is needed and the result is the same on every run.
  const bool split_rows = M >= N;
  const std::size_t extent = split_rows ? M : N;
  const std::size_t per_thread = (extent + max_parts - 1) / max_parts;
  const std::size_t slab = (per_thread + kSplitAlign - 1) / kSplitAlign * kSplitAlign;
  const int parts = static_cast<int>(std::min(max_parts, (extent + slab - 1) / slab));
  pool.run(parts, [&](int part) {
    const std::size_t begin = static_cast<std::size_t>(part) * slab;
    if (begin >= extent) return;
    const std::size_t len = std::min(slab, extent - begin);
    if (split_rows) {
      // Rows [begin, begin+len) of C come from rows of op(A).
      const T* a = trans_a ? A + begin : A + begin * lda;
      blas(trans_a, trans_b, len, N, K, alpha, a, lda, B, ldb, beta, C + begin * ldc, ldc);
    } else {
      // Columns [begin, begin+len) of C come from columns of op(B).
      const T* b = trans_b ? B + begin * ldb : B + begin;
      blas(trans_a, trans_b, M, len, K, alpha, A, lda, b, ldb, beta, C + begin, ldc);
    }
  });
}

template <typename T>
void gemm_naive(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
                const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                std::size_t ldc) {
  check_gemm_args(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc);
  for (std::size_t i = 0; i < M; ++i) {
    for (std::size_t j = 0; j < N; ++j) {
      double acc = 0.0;
      for (std::size_t k = 0; k < K; ++k) {
        const T a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const T b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        acc += static_cast<double>(a) * static_cast<double>(b);
      }
      // BLAS semantics: with beta == 0, C is not read (it may hold NaN).
      const double c = beta == T(0) ? 0.0 : static_cast<double>(beta) * C[i * ldc + j];
      C[i * ldc + j] = static_cast<T>(static_cast<double>(alpha) * acc + c);
    }
  }
}

template void gemm<float>(bool, bool, std::size_t, std::size_t, std::size_t, float, const float*,
                          std::size_t, const float*, std::size_t, float, float*, std::size_t);
template void gemm<double>(bool, bool, std::size_t, std::size_t, std::size_t, double, const double*,
                           std::size_t, const double*, std::size_t, double, double*, std::size_t);
template void gemm_naive<float>(bool, bool, std::size_t, std::size_t, std::size_t, float,
                                const float*, std::size_t, const float*, std::size_t, float, float*,
                                std::size_t);
template void gemm_naive<double>(bool, bool, std::size_t, std::size_t, std::size_t, double,
                                 const double*, std::size_t, const double*, std::size_t, double,
                                 double*, std::size_t);

}  // namespace nanomlp::kernels
