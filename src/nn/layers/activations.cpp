#include <cmath>

#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

// ReLU: y = max(0, x);  dx = dy * [y > 0].
template <typename T>
void ReLU<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  y.resize(x.rows(), x.cols());
  kernels::relu_forward(x.data(), y.data(), x.size());
  y_ = &y;
}

template <typename T>
void ReLU<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  kernels::relu_backward(y_->data(), dy.data(), dx->data(), dy.size());
}

// Leaky ReLU (Maas et al. 2013): y = x if x > 0 else a x;  dx = dy * (x > 0 ? 1 : a).
template <typename T>
void LeakyReLU<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  y.resize(x.rows(), x.cols());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const T v = x.data()[i];
    y.data()[i] = v > T(0) ? v : slope_ * v;
  }
  x_ = &x;
}

template <typename T>
void LeakyReLU<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  for (std::size_t i = 0; i < dy.size(); ++i) {
    dx->data()[i] = x_->data()[i] > T(0) ? dy.data()[i] : slope_ * dy.data()[i];
  }
}

// Tanh: y = tanh(x);  dx = dy * (1 - y^2).
template <typename T>
void Tanh<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  y.resize(x.rows(), x.cols());
  for (std::size_t i = 0; i < x.size(); ++i) y.data()[i] = std::tanh(x.data()[i]);
  y_ = &y;
}

template <typename T>
void Tanh<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  for (std::size_t i = 0; i < dy.size(); ++i) {
    const T y = y_->data()[i];
    dx->data()[i] = dy.data()[i] * (T(1) - y * y);
  }
}

// GELU: y = x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2;  dx = dy * (Phi(x) + x phi(x)),
// with phi the standard normal density.
template <typename T>
void GELU<T>::forward(const Mat<T>& x, Mat<T>& y, bool /*training*/) {
  y.resize(x.rows(), x.cols());
  const T inv_sqrt2 = T(M_SQRT1_2);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const T v = x.data()[i];
    y.data()[i] = v * T(0.5) * (T(1) + std::erf(v * inv_sqrt2));
  }
  x_ = &x;
}

template <typename T>
void GELU<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  if (dx == nullptr) return;
  dx->resize(dy.rows(), dy.cols());
  const T inv_sqrt2 = T(M_SQRT1_2);
  const T inv_sqrt_2pi = T(0.5 * M_2_SQRTPI * M_SQRT1_2);
  for (std::size_t i = 0; i < dy.size(); ++i) {
    const T v = x_->data()[i];
    const T cdf = T(0.5) * (T(1) + std::erf(v * inv_sqrt2));
    const T pdf = inv_sqrt_2pi * std::exp(T(-0.5) * v * v);
    dx->data()[i] = dy.data()[i] * (cdf + v * pdf);
  }
}

template class ReLU<float>;
template class ReLU<double>;
template class LeakyReLU<float>;
template class LeakyReLU<double>;
template class Tanh<float>;
template class Tanh<double>;
template class GELU<float>;
template class GELU<double>;

}  // namespace nanomlp
