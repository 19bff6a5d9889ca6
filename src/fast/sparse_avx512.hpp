// The AVX-512 kernels of the sparse first layer (sparse_avx512.cpp), private to fast/.
// kCompiled says whether they are in this build; sparse.cpp calls them when they are and the
// portable ones otherwise.
#pragma once

#include <cstddef>

#include "nanomlp/fast/sparse.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define NANOMLP_SPARSE_AVX512 1
#else
#define NANOMLP_SPARSE_AVX512 0
#endif

namespace nanomlp::kernels::avx512 {

inline constexpr bool kCompiled = NANOMLP_SPARSE_AVX512 != 0;

// As kernels::sparse_forward_block and sparse_weight_grad, with the arguments already checked.
void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H);
void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db);

}  // namespace nanomlp::kernels::avx512
