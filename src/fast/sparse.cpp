#include "nanomlp/fast/sparse.hpp"

#include "sparse_avx512.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace nanomlp {

std::size_t SparseBatch::nonzeros() const {
  std::size_t n = 0;
  for (std::size_t b = 0; b < blocks(); ++b) n += end(b, cols - 1) - begin(b, 0);
  return n;
}

namespace kernels {
namespace {

void check_block(const SparseBatch& s, std::size_t b, const char* fn) {
  if (b >= s.blocks() || s.cols == 0) {
    throw std::invalid_argument(std::string(fn) + ": block " + std::to_string(b) + " of " +
                                std::to_string(s.blocks()) + " (N=" + std::to_string(s.rows) +
                                " D=" + std::to_string(s.cols) + ")");
  }
}

void check_pixels(const SparseBatch& s, std::size_t k0, std::size_t k1) {
  if (k0 > k1 || k1 > s.cols || s.cols == 0) {
    throw std::invalid_argument("sparse_weight_grad: pixels [" + std::to_string(k0) + ", " +
                                std::to_string(k1) + ") of D=" + std::to_string(s.cols));
  }
}

}  // namespace

void sparse_reshape(SparseBatch& s, std::size_t N, std::size_t D, float shift) {
  if (D == 0 || (N > 0 && D > (std::size_t{1} << 32) / N)) {
    throw std::invalid_argument("sparse_reshape: N=" + std::to_string(N) +
                                " D=" + std::to_string(D) + " out of range");
  }
  s.rows = N;
  s.cols = D;
  s.shift = shift;
  const std::size_t blocks = (N + SparseBatch::kRowsPerBlock - 1) / SparseBatch::kRowsPerBlock;
  s.block_begin.resize(blocks + 1);
  // Near-equal blocks: N = 100 gives 25, 25, 25, 25 rather than 32, 32, 32, 4, so that threads
  // taking whole blocks get equal shares.
  for (std::size_t b = 0; b <= blocks; ++b) s.block_begin[b] = blocks ? N * b / blocks : 0;
  s.col_stride = (D + 1 + 15) / 16 * 16 + 4096;
  s.col_start.resize(blocks * s.col_stride);
  if (s.row.size() < N * D) {
    s.row.resize(N * D);
    s.value.resize(N * D);
  }
}

void sparse_encode_block(SparseBatch& s, std::size_t b, const std::uint8_t* images,
                         const std::uint32_t* idx, float scale) {
  sparse_encode_block(s, b, images, s.cols, idx, scale);
}

void sparse_encode_block(SparseBatch& s, std::size_t b, const std::uint8_t* images,
                         std::size_t image_stride, const std::uint32_t* idx, float scale,
                         const std::uint32_t* next_idx) {
  check_block(s, b, "sparse_encode_block");
  if (image_stride < s.cols) {
    throw std::invalid_argument("sparse_encode_block: image stride " +
                                std::to_string(image_stride) + " < D=" + std::to_string(s.cols));
  }
  const std::size_t D = s.cols, r0 = s.block_begin[b], r1 = s.block_begin[b + 1];
  std::uint32_t* cs = s.col_start.data() + b * s.col_stride;
  // Counting sort by pixel: count each pixel's entries into cs[k + 1], turn the counts into
  // start offsets, then place the entries row by row, so each pixel lists its rows in order.
  std::fill(cs, cs + D + 1, 0u);
  for (std::size_t r = r0; r < r1; ++r) {
    // The images are picked at random from 47 MB: fetch the one after next while counting
    // this one, so that its cache lines arrive in the shadow of the work. (Further ahead ran
    // slower: bench/README.md, "Behind the thresholds".)
    if (r + 2 < r1) {
      const std::uint8_t* ahead = images + std::size_t{idx[r + 2]} * image_stride;
      for (std::size_t k = 0; k < D; k += 64) __builtin_prefetch(ahead + k);
    }
    if (next_idx != nullptr) {
      const std::uint8_t* later = images + std::size_t{next_idx[r]} * image_stride;
      for (std::size_t k = 0; k < D; k += 64) __builtin_prefetch(later + k);
    }
    const std::uint8_t* img = images + std::size_t{idx[r]} * image_stride;
    std::uint32_t* count = cs + 1;
    for (std::size_t k = 0; k < D; ++k) count[k] += img[k] != 0;
  }
  cs[0] = static_cast<std::uint32_t>(r0 * D);
  for (std::size_t k = 0; k < D; ++k) cs[k + 1] += cs[k];
  // cs[k] is now pixel k's next free slot.
  std::uint16_t* rows = s.row.data();
  float* values = s.value.data();
  for (std::size_t r = r0; r < r1; ++r) {
    const std::uint8_t* img = images + std::size_t{idx[r]} * image_stride;
    const auto local = static_cast<std::uint16_t>(r - r0);
    auto place = [&](std::size_t k) {
      const std::uint32_t pos = cs[k]++;
      rows[pos] = local;
      values[pos] = scale * static_cast<float>(img[k]);
    };
    avx512::for_each_inked(img, D, place);
  }
  // Placing moved each cs[k] on to the end of pixel k's entries: shift them one slot so that
  // cs[k] is pixel k's start again and cs[k + 1] its end.
  std::memmove(cs + 1, cs, D * sizeof(std::uint32_t));
  cs[0] = static_cast<std::uint32_t>(r0 * D);
}

namespace portable {

// Row by row of W, in pixel order: the readable form of the product, and the oracle of the
// vectorised one (sparse_avx512.cpp).
void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H) {
  check_block(s, b, "sparse_forward_block");
  const std::size_t D = s.cols, rows_in_block = s.block_begin[b + 1] - s.block_begin[b];
  thread_local std::vector<float> colsum;  // grows once: no allocation in a warm step
  colsum.assign(H, 0.0f);
  for (std::size_t r = 0; r < rows_in_block; ++r) std::copy(bias, bias + H, y_block + r * H);
  for (std::size_t k = 0; k < D; ++k) {
    const float* wk = W + k * H;
    for (std::size_t h = 0; h < H; ++h) colsum[h] += wk[h];
    for (std::uint32_t e = s.begin(b, k); e < s.end(b, k); ++e) {
      float* yr = y_block + s.row[e] * H;
      const float a = s.value[e];
      for (std::size_t h = 0; h < H; ++h) yr[h] += a * wk[h];
    }
  }
  if (s.shift != 0.0f) {
    for (std::size_t r = 0; r < rows_in_block; ++r) {
      for (std::size_t h = 0; h < H; ++h) y_block[r * H + h] += s.shift * colsum[h];
    }
  }
}

void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db) {
  check_pixels(s, k0, k1);
  thread_local std::vector<float> sum;  // grows once: no allocation in a warm step
  sum.assign(H, 0.0f);
  for (std::size_t n = 0; n < s.rows; ++n) {
    for (std::size_t h = 0; h < H; ++h) sum[h] += dy[n * H + h];
  }
  if (db != nullptr) std::copy(sum.begin(), sum.end(), db);
  for (std::size_t k = k0; k < k1; ++k) {
    float* dwk = dW + k * H;
    for (std::size_t h = 0; h < H; ++h) dwk[h] = s.shift * sum[h];
    for (std::size_t b = 0; b < s.blocks(); ++b) {
      const float* dyb = dy + s.block_begin[b] * H;
      for (std::uint32_t e = s.begin(b, k); e < s.end(b, k); ++e) {
        const float a = s.value[e];
        const float* d = dyb + s.row[e] * H;
        for (std::size_t h = 0; h < H; ++h) dwk[h] += a * d[h];
      }
    }
  }
}

}  // namespace portable

void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H) {
  if constexpr (avx512::kCompiled) {
    check_block(s, b, "sparse_forward_block");
    avx512::sparse_forward_block(s, b, W, bias, y_block, H);
  } else {
    portable::sparse_forward_block(s, b, W, bias, y_block, H);
  }
}

void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db) {
  if constexpr (avx512::kCompiled) {
    check_pixels(s, k0, k1);
    avx512::sparse_weight_grad(s, dy, H, k0, k1, dW, db);
  } else {
    portable::sparse_weight_grad(s, dy, H, k0, k1, dW, db);
  }
}

void sparse_to_dense(const SparseBatch& s, float* x) {
  std::fill(x, x + s.rows * s.cols, s.shift);
  for (std::size_t b = 0; b < s.blocks(); ++b) {
    for (std::size_t k = 0; k < s.cols; ++k) {
      for (std::uint32_t e = s.begin(b, k); e < s.end(b, k); ++e) {
        x[(s.block_begin[b] + s.row[e]) * s.cols + k] += s.value[e];
      }
    }
  }
}

}  // namespace kernels
}  // namespace nanomlp
