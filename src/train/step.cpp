#include "nanomlp/train/step.hpp"

#include <algorithm>
#include <cmath>

#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/nn/kernels.hpp"

namespace nanomlp {

DenseBatchPath::DenseBatchPath(const Architecture& arch)
    : scale_(arch.input_scale()), shift_(arch.input_shift()) {}

void DenseBatchPath::gather(const Dataset& data, const std::uint32_t* idx, std::size_t N,
                            std::uint8_t* labels, const std::uint32_t* /*next_idx*/) {
  const std::size_t D = kImagePixels;
  for (std::size_t i = 0; i < N; ++i) labels[i] = data.labels[idx[i]];
  x_.resize(N, D);
  // Rows are independent: split them over the pool (a tenth of the default step otherwise),
  // from 32,768 pixels (about 42 images) up.
  constexpr std::size_t kParallelMinPixels = 32768;
  ThreadPool::global().for_slices(
      N, N * D >= kParallelMinPixels, [&](std::size_t first, std::size_t last) {
        for (std::size_t i = first; i < last; ++i) {
          // The images are picked at random from 47 MB: fetch the one after next while converting
          // this one, so that its 13 cache lines arrive in the shadow of the work.
          if (i + 2 < last) {
            const std::uint8_t* ahead = data.image(idx[i + 2]);
            for (std::size_t b = 0; b < D; b += 64) __builtin_prefetch(ahead + b);
          }
          kernels::u8_to_float(data.image(idx[i]), x_.row(i), D, scale_, shift_);
        }
      });
}

const Matrix& DenseBatchPath::forward(Network<float>& net, bool training) {
  return net.forward(x_, training);
}

void DenseBatchPath::backward(Network<float>& net, const Matrix& dlogits) {
  net.backward(dlogits);
}

StepResult plain_step(Network<float>& net, BatchPath& batch, const std::uint8_t* labels,
                      float label_smoothing, Optimizer& optimizer,
                      const std::vector<Param<float>>& params, double lr, Matrix& dz) {
  const Matrix& z = batch.forward(net, /*training=*/true);  // (N, K)
  const std::size_t N = z.rows(), K = z.cols();
  dz.resize(N, K);
  StepResult r;
  r.loss = kernels::softmax_cross_entropy<float>(z.data(), labels, N, K, label_smoothing, dz.data(),
                                                 &r.hits);
  if (!std::isfinite(r.loss)) return r;
  batch.backward(net, dz);
  optimizer.step(params, lr);
  return r;
}

EpochOutcome PlainEpochRunner::run_epoch(Network<float>& net, Optimizer& optimizer,
                                         const Epoch& epoch, const AfterStep& after_step) {
  const std::size_t n = epoch.n, B = epoch.batch_size;
  const std::vector<Param<float>> params = net.params();
  if (labels_.size() < B) labels_.resize(B);
  EpochOutcome outcome;
  std::int64_t step = epoch.first_step;
  for (std::size_t s = 0, start = 0; start < n; ++s, start += B) {
    const std::size_t nb = std::min(B, n - start);
    if (net.architecture().batch_norm && nb < 2) continue;  // batch statistics need two rows
    const bool next_full = nb == B && start + 2 * B <= n;
    batch_->gather(*epoch.data, epoch.order + start, nb, labels_.data(),
                   next_full ? epoch.order + start + B : nullptr);
    const double lr = learning_rate(*epoch.schedule, step);
    const StepResult r =
        plain_step(net, *batch_, labels_.data(), epoch.label_smoothing, optimizer, params, lr, dz_);
    if (!std::isfinite(r.loss)) {
      outcome.diverged = true;
      outcome.bad_loss = r.loss;
      return outcome;
    }
    ++step;
    ++outcome.steps;
    after_step(s, nb, r.loss, r.hits, lr);
  }
  return outcome;
}

}  // namespace nanomlp
