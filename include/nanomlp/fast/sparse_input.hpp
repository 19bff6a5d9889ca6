// The first layer without the background pixels, as a BatchPath (train/step.hpp): the batch is
// encoded as S + shift (fast/sparse.hpp) and the first Linear layer computes
//   y  (N, H) = S W + 1_N (b + shift * 1_D^T W)
//   dW (D, H) = S^T dy + shift * 1_D db,   db = 1_N^T dy
// over the inked pixels only; the network's own forward and backward do the other layers.
// Same maths as Dense (nn/layers/dense.cpp), summed in another order: tests/test_sparse.cpp
// compares the two.
#pragma once

#include <cstddef>
#include <cstdint>

#include "nanomlp/fast/sparse.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/step.hpp"

namespace nanomlp {

// y (N, H) = x W + b for the sparse batch x through the Linear layer `layer`. scratch holds the
// per-thread outputs when the work is split (kernels::sparse_parallel).
void sparse_linear_forward(const SparseBatch& x, const Dense<float>& layer, Matrix& y,
                           Matrix& scratch);
// dW and db of `layer` from dy (N, H) and the sparse batch x of its forward pass.
void sparse_linear_backward(const SparseBatch& x, const Matrix& dy, Dense<float>& layer);

class SparseBatchPath final : public BatchPath {
 public:
  explicit SparseBatchPath(const Architecture& arch);
  void gather(const Dataset& data, const std::uint32_t* idx, std::size_t N, std::uint8_t* labels,
              const std::uint32_t* next_idx = nullptr) override;
  // Throws std::invalid_argument unless the first layer is a Linear layer taking D inputs.
  const Matrix& forward(Network<float>& net, bool training) override;
  void backward(Network<float>& net, const Matrix& dlogits) override;

 private:
  float scale_, shift_;
  std::size_t first_width_;  // H of the first layer
  SparseBatch x_;            // (N, D)
  Matrix y_;                 // (N, H) the first layer's output
  Matrix scratch_;           // (threads, block rows * H + gap)
};

}  // namespace nanomlp
