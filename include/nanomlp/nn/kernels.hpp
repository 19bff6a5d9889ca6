// The hot loops of the maths, behind small functions (the sparse first layer's are in
// fast/sparse.hpp). The GEMM and the batch-invariant affine kernel check their arguments at
// entry (as ggml does); the element-wise ones trust their callers, the layers, for shapes. Each
// is tested against a naive reference on odd shapes.
//
// Conventions: all matrices are row-major; shape comments use N (batch), D (inputs),
// H (outputs of a layer), K (classes).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nanomlp::kernels {

// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, where op(X) is X or X^T.
// A is (M, K) with row stride lda when !trans_a, (K, M) when trans_a; likewise B.
// Dispatches to CBLAS (sgemm/dgemm) and splits large products over the thread pool by rows or
// columns of C, never along K, so the result does not depend on scheduling.
template <typename T>
void gemm(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
          const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C, std::size_t ldc);

// The triple loop: the test oracle for gemm.
template <typename T>
void gemm_naive(bool trans_a, bool trans_b, std::size_t M, std::size_t N, std::size_t K, T alpha,
                const T* A, std::size_t lda, const T* B, std::size_t ldb, T beta, T* C,
                std::size_t ldc);

// y (N, H) = x (N, D) W (D, H) + b (H), batch-invariant: each row of y is computed by the same
// operations, summing over D in order, whatever N and the row's place in the batch (inference,
// so that one image alone and the same image in a batch get identical outputs). Single-threaded.
template <typename T>
void affine_rows(const T* x, std::size_t N, std::size_t D, const T* W, const T* b, T* y,
                 std::size_t H);

// Sets the threads used by every kernel (n < 1: all cores). BLAS itself runs single-threaded
// inside each part so that exactly n threads are ever busy.
void set_num_threads(int n);
int num_threads();

// Name and version of the BLAS library in use, e.g. "OpenBLAS 0.3.21 ... SkylakeX".
const char* blas_info();

// y (N, H) += b (H), broadcast over rows.
template <typename T>
void add_bias_rows(T* y, const T* b, std::size_t N, std::size_t H);

// db (H) = sum over rows of dy (N, H).
template <typename T>
void sum_rows(const T* dy, T* db, std::size_t N, std::size_t H);

// x (n) -> y (n) = max(0, x); y may alias x.
template <typename T>
void relu_forward(const T* x, T* y, std::size_t n);

// dx (n) = dy * [y > 0]; dx may alias dy.
template <typename T>
void relu_backward(const T* y, const T* dy, T* dx, std::size_t n);

// dst (n) = src * scale + shift: uint8 pixels to normalised floats in one pass.
void u8_to_float(const std::uint8_t* src, float* dst, std::size_t n, float scale, float shift);

// Row-wise softmax cross-entropy with label smoothing eps, fused with its gradient
// (Goodfellow et al., Deep Learning, eq. 6.30; Szegedy et al. 2016 for smoothing):
//   loss_i = logsumexp(z_i) - sum_k q_ik z_ik,  q_i = (1 - eps) onehot(y_i) + eps / K
//   dz_i   = (softmax(z_i) - q_i) / N
// z (N, K) logits, labels (N), dz (N, K) or nullptr when only the loss is wanted.
// Returns the summed loss over rows; *correct receives the count of rows whose arg-max equals
// the label (first maximum wins).
template <typename T>
double softmax_cross_entropy(const T* z, const std::uint8_t* labels, std::size_t N, std::size_t K,
                             T eps, T* dz, std::size_t* correct);

// p (N, K) = softmax(z) row-wise; p may alias z.
template <typename T>
void softmax_rows(const T* z, T* p, std::size_t N, std::size_t K);

}  // namespace nanomlp::kernels
