// The first layer without the background pixels.
//
// Four fifths of an MNIST image is background (pixel value 0), and after normalisation
// x = scale * u + shift every background pixel holds the same number, `shift`. Writing
// x = S + shift (S is zero on the background) turns the first layer's two products into sparse
// ones plus rank-one corrections:
//   y  (N, H) = x W + b  = S W + 1_N (b + shift * 1_D^T W)
//   dW (D, H) = x^T dy   = S^T dy + shift * 1_D db,          db = 1_N^T dy
// so the work follows the ~150 inked pixels of an image instead of all 784. The result is the
// same product, summed in a different order: tests compare it with the dense path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace nanomlp {

// A batch of uint8 images held as S + shift. The rows are cut into blocks of at most
// kRowsPerBlock; each block is stored pixel by pixel (compressed sparse columns), the order in
// which both products walk it: the forward pass adds one row of W per entry into the block's
// outputs, which stay in L1; the gradient sums the entries of one pixel in registers.
// Blocks depend only on N, never on the thread count, so neither do the results.
struct SparseBatch {
  static constexpr std::size_t kRowsPerBlock = 32;

  std::size_t rows = 0;  // N
  std::size_t cols = 0;  // D
  float shift = 0.0f;    // the value of every pixel not stored
  // (blocks + 1) first row of each block; block b holds rows [block_begin[b], block_begin[b+1]).
  std::vector<std::size_t> block_begin;
  // (blocks, col_stride) absolute offsets into row/value: the entries of pixel k in block b are
  // [col_start[b * col_stride + k], col_start[b * col_stride + k + 1]). Block b's entries
  // live in [block_begin[b] * D, ...), room for a block with no background at all, so blocks
  // can be encoded in parallel.
  std::vector<std::uint32_t> col_start;
  // D + 1 rounded up, plus 16 KB: blocks encoded by different cores must not sit within
  // reach of each other's hardware prefetchers, or their cache lines ping-pong between cores.
  std::size_t col_stride = 0;
  std::vector<std::uint16_t> row;  // (N * D capacity) row within its block
  std::vector<float> value;        // (N * D capacity) scale * u, the stored part of x - shift

  std::size_t blocks() const { return block_begin.empty() ? 0 : block_begin.size() - 1; }
  // Entries of block b, pixel k.
  std::uint32_t begin(std::size_t b, std::size_t k) const { return col_start[b * col_stride + k]; }
  std::uint32_t end(std::size_t b, std::size_t k) const {
    return col_start[b * col_stride + k + 1];
  }
  // Stored (non-background) pixels in the whole batch.
  std::size_t nonzeros() const;
};

namespace kernels {

// Lays out `s` for N rows of D pixels (blocks of near-equal size, at most kRowsPerBlock rows).
// Allocates only when N * D exceeds every size `s` has held. D must be at most 2^32 / N.
void sparse_reshape(SparseBatch& s, std::size_t N, std::size_t D, float shift);

// Encodes block b: row i of the batch is the image images + idx[i] * D (uint8, D pixels), and
// its stored values are scale * u for the nonzero pixels u.
void sparse_encode_block(SparseBatch& s, std::size_t b, const std::uint8_t* images,
                         const std::uint32_t* idx, float scale);
// The same for a stretch of D pixels of longer images: row i is the D pixels at
// images + idx[i] * image_stride (image_stride >= D). With images advanced by k0, a batch of
// pixels [k0, k0 + D) of each image.
// next_idx, when not null, holds the rows of the batch that comes next (as many as this one):
// their images are fetched from memory while this block is encoded, a whole step ahead.
void sparse_encode_block(SparseBatch& s, std::size_t b, const std::uint8_t* images,
                         std::size_t image_stride, const std::uint32_t* idx, float scale,
                         const std::uint32_t* next_idx = nullptr);

// Forward pass of block b through a dense layer with weights W (D, H) and bias (H):
//   y[i, :] = sum over stored pixels k of row i: value * W[k, :] + bias + shift * 1_D^T W
// for the block's rows i; y_block (rows of block b, H) receives them.
void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H);

// Weight gradient of that layer, rows [k0, k1) of dW only (threads split the pixels, so each
// writes one contiguous stretch of dW):
//   db (H)    = 1_N^T dy                      (written only when db is not null)
//   dW (D, H) = S^T dy + shift * 1_D db
// dy (N, H). Every entry is summed in the same order whatever the split.
void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db);

// Whether the sparse work of an (N, H) first-layer output is worth splitting over threads
// (encoding, forward and weight gradient alike, so that each block stays on one core). Each
// split step moves the weights and the blocks between the cores' caches (every thread reads
// all of W and updates its own part), which costs more than the split saves for the networks
// the sparse path is chosen for (bench/README.md, "Behind the thresholds"). Training the
// one-hidden-layer network on several threads splits its pixels instead, each thread keeping
// its own rows of W (fast/split_step.hpp); this split serves deeper networks and evaluation.
inline bool sparse_parallel(std::size_t N, std::size_t H) {
  return N * H >= 256 * 256;
}

// The two products in plain loops, always compiled: the readable reference, and the oracle
// the tests hold the AVX-512 forms to (src/fast/sparse_avx512.cpp). sparse_forward_block and
// sparse_weight_grad above are these where the build does not target AVX-512.
namespace portable {
void sparse_forward_block(const SparseBatch& s, std::size_t b, const float* W, const float* bias,
                          float* y_block, std::size_t H);
void sparse_weight_grad(const SparseBatch& s, const float* dy, std::size_t H, std::size_t k0,
                        std::size_t k1, float* dW, float* db);
}  // namespace portable

// x (N, D) = S + shift, dense: the test oracle's view of the batch.
void sparse_to_dense(const SparseBatch& s, float* x);

}  // namespace kernels
}  // namespace nanomlp
