#include <stdexcept>

#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

// Forward: y = x * mask, mask_ij = [u_ij >= p] / (1 - p) in training; y = x in evaluation.
template <typename T>
void Dropout<T>::forward(const Mat<T>& x, Mat<T>& y, bool training) {
  y.resize(x.rows(), x.cols());
  active_ = training && p_ > 0.0;
  if (!active_) {
    std::copy(x.begin(), x.end(), y.begin());
    return;
  }
  if (rng_ == nullptr) throw std::logic_error("Dropout: no generator set (Network::set_rng)");
  mask_.resize(x.rows(), x.cols());
  const T keep_scale = T(1) / static_cast<T>(1.0 - p_);
  // One 64-bit draw gives two 32-bit uniforms; compare against p scaled to 2^32.
  const auto threshold = static_cast<std::uint64_t>(p_ * 4294967296.0);
  const std::size_t n = x.size();
  for (std::size_t i = 0; i < n; i += 2) {
    const std::uint64_t r = rng_->next_u64();
    mask_.data()[i] = (r & 0xffffffffu) >= threshold ? keep_scale : T(0);
    if (i + 1 < n) mask_.data()[i + 1] = (r >> 32) >= threshold ? keep_scale : T(0);
  }
  for (std::size_t i = 0; i < n; ++i) y.data()[i] = x.data()[i] * mask_.data()[i];
}

// Backward: dx = dy * mask (the same mask as the forward).
template <typename T>
void Dropout<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  if (!active_) {
    std::copy(dy.begin(), dy.end(), dx->begin());
    return;
  }
  for (std::size_t i = 0; i < dy.size(); ++i) dx->data()[i] = dy.data()[i] * mask_.data()[i];
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace nanomlp
