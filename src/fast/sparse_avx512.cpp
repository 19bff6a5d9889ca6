// The AVX-512 forms of the sparse first layer's two products (fast/sparse.hpp): the same sums as
// the portable ones in sparse.cpp, which the tests compare them with, taken 16 columns at a
// time. Compiled only where the compiler targets AVX-512 (F and BW); empty otherwise.
#include "sparse_avx512.hpp"

#if NANOMLP_SPARSE_AVX512
#include <immintrin.h>

#include <algorithm>

namespace nanomlp::kernels::avx512 {
namespace {

// Columns are handled in tiles of V vectors of 16 floats (V <= 8: 128 columns, which keeps
// the tile's weights, sums and accumulators in the 32 vector registers). The last vector of
// the last tile is masked when H is not a multiple of 16.
constexpr std::size_t kTile = 128;

struct TileMasks {
  __mmask16 m[8];
};

// Full vectors use plain loads and stores: a masked store does not forward to the next load
// of the same address, and the forward pass reloads output rows it has just stored.
template <bool Tail>
inline __m512 load(const float* p, const TileMasks& t, int v, int last) {
  return Tail && v == last ? _mm512_maskz_loadu_ps(t.m[v], p) : _mm512_loadu_ps(p);
}
template <bool Tail>
inline void store(float* p, __m512 x, const TileMasks& t, int v, int last) {
  if (Tail && v == last) {
    _mm512_mask_storeu_ps(p, t.m[v], x);
  } else {
    _mm512_storeu_ps(p, x);
  }
}

TileMasks tile_masks(std::size_t width) {  // width <= kTile columns
  TileMasks t{};
  for (std::size_t v = 0; v < 8; ++v) {
    const std::size_t lo = v * 16;
    const std::size_t n = width > lo ? std::min<std::size_t>(16, width - lo) : 0;
    t.m[v] = static_cast<__mmask16>((1u << n) - 1u);
  }
  return t;
}

// y rows of block b, columns [h0, h0 + 16 V): bias, plus each stored pixel's weight row
// scaled by its value, plus shift times the column sums of W (summed on the way).
template <int V, bool Tail>
void forward_tile(const SparseBatch& s, std::size_t b, const float* W, const float* bias, float* y,
                  std::size_t H, std::size_t h0, const TileMasks& t) {
  const std::size_t D = s.cols, rows_in_block = s.block_begin[b + 1] - s.block_begin[b];
  for (std::size_t r = 0; r < rows_in_block; ++r) {
    for (int v = 0; v < V; ++v) {
      store<Tail>(y + r * H + h0 + 16 * v, load<Tail>(bias + h0 + 16 * v, t, v, V - 1), t, v,
                  V - 1);
    }
  }
  __m512 colsum[V];
  for (int v = 0; v < V; ++v) colsum[v] = _mm512_setzero_ps();
  const std::uint16_t* rows = s.row.data();
  const float* values = s.value.data();
  float* yb = y + h0;
  for (std::size_t k = 0; k < D; ++k) {
    const float* wk = W + k * H + h0;
    __m512 w[V];
    for (int v = 0; v < V; ++v) {
      w[v] = load<Tail>(wk + 16 * v, t, v, V - 1);
      colsum[v] = _mm512_add_ps(colsum[v], w[v]);
    }
    for (std::uint32_t e = s.begin(b, k), e_end = s.end(b, k); e < e_end; ++e) {
      float* yr = yb + rows[e] * H;
      const __m512 a = _mm512_set1_ps(values[e]);
      for (int v = 0; v < V; ++v) {
        const __m512 acc = load<Tail>(yr + 16 * v, t, v, V - 1);
        store<Tail>(yr + 16 * v, _mm512_fmadd_ps(a, w[v], acc), t, v, V - 1);
      }
    }
  }
  if (s.shift != 0.0f) {
    const __m512 shift = _mm512_set1_ps(s.shift);
    for (std::size_t r = 0; r < rows_in_block; ++r) {
      for (int v = 0; v < V; ++v) {
        float* p = y + r * H + h0 + 16 * v;
        store<Tail>(p, _mm512_fmadd_ps(shift, colsum[v], load<Tail>(p, t, v, V - 1)), t, v, V - 1);
      }
    }
  }
}

// dW and db, columns [h0, h0 + 16 V). Each pixel's entries are summed into two interleaved
// accumulators (even and odd entries of each block) so that consecutive FMAs do not wait on
// each other; the order depends on the batch only, never on the tiling.
template <int V, bool Tail>
void grad_tile(const SparseBatch& s, const float* dy, std::size_t H, std::size_t h0, std::size_t k0,
               std::size_t k1, float* dW, float* db, const TileMasks& t) {
  const std::size_t N = s.rows;
  __m512 base[V];
  for (int v = 0; v < V; ++v) base[v] = _mm512_setzero_ps();
  for (std::size_t n = 0; n < N; ++n) {
    for (int v = 0; v < V; ++v) {
      base[v] = _mm512_add_ps(base[v], load<Tail>(dy + n * H + h0 + 16 * v, t, v, V - 1));
    }
  }
  const __m512 shift = _mm512_set1_ps(s.shift);
  for (int v = 0; v < V; ++v) {
    if (db != nullptr) store<Tail>(db + h0 + 16 * v, base[v], t, v, V - 1);
    base[v] = _mm512_mul_ps(shift, base[v]);
  }
  const std::uint16_t* rows = s.row.data();
  const float* values = s.value.data();
  for (std::size_t k = k0; k < k1; ++k) {
    __m512 acc0[V], acc1[V];
    for (int v = 0; v < V; ++v) {
      acc0[v] = base[v];
      acc1[v] = _mm512_setzero_ps();
    }
    for (std::size_t b = 0; b < s.blocks(); ++b) {
      const float* dyb = dy + s.block_begin[b] * H + h0;
      std::uint32_t e = s.begin(b, k);
      const std::uint32_t e_end = s.end(b, k);
      for (; e + 1 < e_end; e += 2) {
        const float* d0 = dyb + rows[e] * H;
        const float* d1 = dyb + rows[e + 1] * H;
        const __m512 a0 = _mm512_set1_ps(values[e]);
        const __m512 a1 = _mm512_set1_ps(values[e + 1]);
        for (int v = 0; v < V; ++v) {
          acc0[v] = _mm512_fmadd_ps(a0, load<Tail>(d0 + 16 * v, t, v, V - 1), acc0[v]);
          acc1[v] = _mm512_fmadd_ps(a1, load<Tail>(d1 + 16 * v, t, v, V - 1), acc1[v]);
        }
      }
      if (e < e_end) {
        const float* d0 = dyb + rows[e] * H;
        const __m512 a0 = _mm512_set1_ps(values[e]);
        for (int v = 0; v < V; ++v) {
          acc0[v] = _mm512_fmadd_ps(a0, load<Tail>(d0 + 16 * v, t, v, V - 1), acc0[v]);
        }
      }
    }
    for (int v = 0; v < V; ++v) {
      store<Tail>(dW + k * H + h0 + 16 * v, _mm512_add_ps(acc0[v], acc1[v]), t, v, V - 1);
    }
  }
}

// Calls fn.template operator()<V, Tail>(h0, masks) for each tile of [0, H).
template <typename Fn>
void for_each_tile(std::size_t H, Fn&& fn) {
  for (std::size_t lo = 0; lo < H; lo += kTile) {
    const std::size_t width = std::min(kTile, H - lo);
    const TileMasks t = tile_masks(width);
    const bool tail = width % 16 != 0;
    switch ((width + 15) / 16) {
#define NANOMLP_TILE_CASE(V)                   \
  case V:                                      \
    if (tail) {                                \
      fn.template operator()<V, true>(lo, t);  \
    } else {                                   \
      fn.template operator()<V, false>(lo, t); \
    }                                          \
    break;
      NANOMLP_TILE_CASE(1)
      NANOMLP_TILE_CASE(2)
      NANOMLP_TILE_CASE(3)
      NANOMLP_TILE_CASE(4)
      NANOMLP_TILE_CASE(5)
      NANOMLP_TILE_CASE(6)
      NANOMLP_TILE_CASE(7)
      default:
        NANOMLP_TILE_CASE(8)
#undef NANOMLP_TILE_CASE
    }
  }
}

}  // namespace

void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H) {
  for_each_tile(H, [&]<int V, bool Tail>(std::size_t h0, const TileMasks& t) {
    forward_tile<V, Tail>(s, b, W, bias, y_block, H, h0, t);
  });
}

void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db) {
  for_each_tile(H, [&]<int V, bool Tail>(std::size_t h0, const TileMasks& t) {
    grad_tile<V, Tail>(s, dy, H, h0, k0, k1, dW, db, t);
  });
}

}  // namespace nanomlp::kernels::avx512
#endif  // NANOMLP_SPARSE_AVX512
