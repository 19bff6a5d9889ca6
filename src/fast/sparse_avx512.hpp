// The AVX-512 kernels of the sparse first layer (sparse_avx512.cpp, and the encoder's scan
// below), private to fast/. kCompiled says whether they are in this build; sparse.cpp calls
// them when they are and the portable ones otherwise.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nanomlp/fast/sparse.hpp"

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define NANOMLP_SPARSE_AVX512 1
#else
#define NANOMLP_SPARSE_AVX512 0
#endif

#if NANOMLP_SPARSE_AVX512
#include <immintrin.h>

#include <algorithm>
#endif

namespace nanomlp::kernels::avx512 {

inline constexpr bool kCompiled = NANOMLP_SPARSE_AVX512 != 0;

// As kernels::sparse_forward_block and sparse_weight_grad, with the arguments already checked.
void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H);
void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db);

// Calls place(k) for every k < D with img[k] != 0, in increasing k: the encoder's scan of one
// image (sparse_encode_block). Inline, so that `place` is inlined into the loop. With AVX-512,
// 64 pixels at a time, the last stretch through a masked load (which reads nothing past the
// image): a byte-by-byte tail would branch on every pixel, and the split step
// (split_step.hpp) encodes stretches of any length. Without it, the plain loop.
template <class Place>
inline void for_each_inked(const std::uint8_t* img, std::size_t D, Place& place) {
  std::size_t k = 0;
#if NANOMLP_SPARSE_AVX512
  for (; k < D; k += 64) {
    const std::size_t n = std::min<std::size_t>(64, D - k);
    const __mmask64 in = n == 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1;
    const __m512i bytes = _mm512_maskz_loadu_epi8(in, img + k);
    for (std::uint64_t m = _mm512_test_epi8_mask(bytes, bytes); m != 0; m &= m - 1) {
      place(k + static_cast<std::size_t>(__builtin_ctzll(m)));
    }
  }
#endif
  for (; k < D; ++k) {
    if (img[k] != 0) place(k);
  }
}

}  // namespace nanomlp::kernels::avx512
