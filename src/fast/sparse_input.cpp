#include "nanomlp/fast/sparse_input.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "nanomlp/core/thread_pool.hpp"

namespace nanomlp {

// Thread t takes the t-th run of blocks.
void sparse_linear_forward(const SparseBatch& x, const Dense<float>& layer, Matrix& y,
                           Matrix& scratch) {
  const std::size_t H = layer.W_.cols();
  if (x.cols != layer.W_.rows()) {
    throw std::invalid_argument("sparse input has " + std::to_string(x.cols) +
                                " columns, the layer takes " + std::to_string(layer.W_.rows()));
  }
  y.resize(x.rows, H);
  ThreadPool& pool = ThreadPool::global();
  const std::size_t blocks = x.blocks();
  const auto parts = kernels::sparse_parallel(x.rows, H)
                         ? std::min<std::size_t>(static_cast<std::size_t>(pool.max_parts()), blocks)
                         : 1;
  const float* W = layer.W_.data();  // (D, H)
  const float* b = layer.b_.data();  // (H)
  if (parts <= 1) {
    for (std::size_t k = 0; k < blocks; ++k) {
      kernels::sparse_forward_block(x, k, W, b, y.row(x.block_begin[k]), H);
    }
    return;
  }
  // Each thread adds into its own slab, 16 KB away from the next, then copies its rows into y.
  // Adding in place would put two cores' hot rows side by side in y, and the hardware
  // prefetchers would bounce those cache lines between the cores.
  const std::size_t slab = SparseBatch::kRowsPerBlock * H + 4096;
  scratch.resize(parts, slab);
  pool.run(static_cast<int>(parts), [&](int part) {
    const auto p = static_cast<std::size_t>(part);
    float* mine = scratch.row(p);
    for (std::size_t k = blocks * p / parts; k < blocks * (p + 1) / parts; ++k) {
      kernels::sparse_forward_block(x, k, W, b, mine, H);
      const std::size_t rows = x.block_begin[k + 1] - x.block_begin[k];
      std::copy(mine, mine + rows * H, y.row(x.block_begin[k]));
    }
  });
}

// Threads split the rows of dW (the pixels), so each writes one contiguous stretch; every entry
// is summed in the same order whatever the split.
void sparse_linear_backward(const SparseBatch& x, const Matrix& dy, Dense<float>& layer) {
  const std::size_t N = dy.rows(), D = layer.W_.rows(), H = layer.W_.cols();
  ThreadPool& pool = ThreadPool::global();
  const int parts = kernels::sparse_parallel(N, H) ? pool.max_parts() : 1;
  pool.run(parts, [&](int part) {
    const auto p = static_cast<std::size_t>(part), n = static_cast<std::size_t>(parts);
    kernels::sparse_weight_grad(x, dy.data(), H, D * p / n, D * (p + 1) / n, layer.dW_.data(),
                                part == 0 ? layer.db_.data() : nullptr);
  });
}

namespace {

Dense<float>& first_linear(Network<float>& net) {
  auto* first = dynamic_cast<Dense<float>*>(net.layers().front().get());
  if (first == nullptr) {
    throw std::invalid_argument(
        "sparse input needs a Linear first layer, the network starts with " +
        std::string(net.layers().front()->type()));
  }
  return *first;
}

}  // namespace

SparseBatchPath::SparseBatchPath(const Architecture& arch)
    : scale_(arch.input_scale()), shift_(arch.input_shift()), first_width_(arch.first_width()) {}

void SparseBatchPath::gather(const Dataset& data, const std::uint32_t* idx, std::size_t N,
                             std::uint8_t* labels, const std::uint32_t* next_idx) {
  const std::size_t D = kImagePixels;
  for (std::size_t i = 0; i < N; ++i) labels[i] = data.labels[idx[i]];
  kernels::sparse_reshape(x_, N, D, shift_);
  const bool parallel = kernels::sparse_parallel(N, first_width_);
  ThreadPool::global().for_slices(x_.blocks(), parallel, [&](std::size_t begin, std::size_t end) {
    for (std::size_t b = begin; b < end; ++b) {
      kernels::sparse_encode_block(x_, b, data.images.data(), D, idx, scale_, next_idx);
    }
  });
}

const Matrix& SparseBatchPath::forward(Network<float>& net, bool training) {
  sparse_linear_forward(x_, first_linear(net), y_, scratch_);
  return net.forward(y_, training, /*from=*/1);
}

void SparseBatchPath::backward(Network<float>& net, const Matrix& dlogits) {
  // The layers after the first, then the first one's dW and db (no gradient for the pixels).
  const Matrix& dy = net.layers().size() > 1 ? net.backward(dlogits, /*from=*/1) : dlogits;
  sparse_linear_backward(x_, dy, first_linear(net));
}

}  // namespace nanomlp
