#include <cmath>
#include <stdexcept>
#include <utility>

#include "nanomlp/nn/layers.hpp"

namespace nanomlp {

template <typename T>
BatchNorm<T>::BatchNorm(std::size_t features, std::string prefix)
    : gamma_(1, features),
      beta_(1, features),
      dgamma_(1, features),
      dbeta_(1, features),
      running_mean_(1, features),
      running_var_(1, features),
      prefix_(std::move(prefix)),
      inv_std_(1, features) {
  gamma_.fill(T(1));
  running_var_.fill(T(1));
}

// Forward (Ioffe & Szegedy 2015, Algorithm 1), per feature j over the batch:
//   mu = mean_i x_ij;  var = mean_i (x_ij - mu)^2;  xhat = (x - mu) / sqrt(var + eps)
//   y = gamma xhat + beta
// and running = (1 - m) running + m stat, with the unbiased variance var N / (N - 1).
template <typename T>
void BatchNorm<T>::forward(const Mat<T>& x, Mat<T>& y, bool training) {
  const std::size_t N = x.rows(), H = x.cols();
  if (H != gamma_.cols()) throw std::invalid_argument("BatchNorm: input width mismatch");
  y.resize(N, H);
  if (!training) {
    for (std::size_t j = 0; j < H; ++j) {
      inv_std_(0, j) = T(1) / std::sqrt(running_var_(0, j) + T(kEps));
    }
    for (std::size_t i = 0; i < N; ++i) {
      const T* xi = x.row(i);
      T* yi = y.row(i);
      for (std::size_t j = 0; j < H; ++j) {
        yi[j] = gamma_(0, j) * (xi[j] - running_mean_(0, j)) * inv_std_(0, j) + beta_(0, j);
      }
    }
    return;
  }
  if (N < 2) throw std::invalid_argument("BatchNorm: training needs a batch of at least 2");
  xhat_.resize(N, H);
  T* mean = dgamma_.data();  // dgamma_ and dbeta_ double as scratch until backward
  T* var = dbeta_.data();
  for (std::size_t j = 0; j < H; ++j) mean[j] = var[j] = T(0);
  for (std::size_t i = 0; i < N; ++i) {
    const T* xi = x.row(i);
    for (std::size_t j = 0; j < H; ++j) mean[j] += xi[j];
  }
  const T inv_n = T(1) / static_cast<T>(N);
  for (std::size_t j = 0; j < H; ++j) mean[j] *= inv_n;
  for (std::size_t i = 0; i < N; ++i) {
    const T* xi = x.row(i);
    for (std::size_t j = 0; j < H; ++j) {
      const T d = xi[j] - mean[j];
      var[j] += d * d;
    }
  }
  const T m = T(kMomentum);
  const T unbias = static_cast<T>(N) / static_cast<T>(N - 1);
  for (std::size_t j = 0; j < H; ++j) {
    var[j] *= inv_n;
    inv_std_(0, j) = T(1) / std::sqrt(var[j] + T(kEps));
    running_mean_(0, j) = (T(1) - m) * running_mean_(0, j) + m * mean[j];
    running_var_(0, j) = (T(1) - m) * running_var_(0, j) + m * var[j] * unbias;
  }
  ++num_batches_tracked_;
  for (std::size_t i = 0; i < N; ++i) {
    const T* xi = x.row(i);
    T* hi = xhat_.row(i);
    T* yi = y.row(i);
    for (std::size_t j = 0; j < H; ++j) {
      hi[j] = (xi[j] - mean[j]) * inv_std_(0, j);
      yi[j] = gamma_(0, j) * hi[j] + beta_(0, j);
    }
  }
}

// Backward, with g = dy * gamma (the gradient at xhat):
//   dgamma = sum_i dy xhat;  dbeta = sum_i dy
//   dx = inv_std / N * (N g - sum_i g - xhat sum_i (g xhat))
template <typename T>
void BatchNorm<T>::backward(const Mat<T>& dy, Mat<T>* dx) {
  const std::size_t N = dy.rows(), H = dy.cols();
  T* dgamma = dgamma_.data();
  T* dbeta = dbeta_.data();
  for (std::size_t j = 0; j < H; ++j) dgamma[j] = dbeta[j] = T(0);
  for (std::size_t i = 0; i < N; ++i) {
    const T* gi = dy.row(i);
    const T* hi = xhat_.row(i);
    for (std::size_t j = 0; j < H; ++j) {
      dgamma[j] += gi[j] * hi[j];
      dbeta[j] += gi[j];
    }
  }
  if (dx == nullptr) return;
  dx->resize(N, H);
  const T inv_n = T(1) / static_cast<T>(N);
  for (std::size_t i = 0; i < N; ++i) {
    const T* gi = dy.row(i);
    const T* hi = xhat_.row(i);
    T* di = dx->row(i);
    // sum_i g = gamma dbeta and sum_i g xhat = gamma dgamma.
    for (std::size_t j = 0; j < H; ++j) {
      di[j] = gamma_(0, j) * inv_std_(0, j) * inv_n *
              (static_cast<T>(N) * gi[j] - dbeta[j] - hi[j] * dgamma[j]);
    }
  }
}

template <typename T>
void BatchNorm<T>::init(Rng& /*rng*/, bool /*xavier*/) {
  gamma_.fill(T(1));
  beta_.fill(T(0));
  running_mean_.fill(T(0));
  running_var_.fill(T(1));
  num_batches_tracked_ = 0;
}

template <typename T>
std::vector<Param<T>> BatchNorm<T>::params() {
  return {{prefix_ + "weight", &gamma_, &dgamma_}, {prefix_ + "bias", &beta_, &dbeta_}};
}

template <typename T>
std::vector<Buffer<T>> BatchNorm<T>::buffers() {
  return {{prefix_ + "running_mean", &running_mean_}, {prefix_ + "running_var", &running_var_}};
}

template <typename T>
std::vector<std::pair<std::string, std::int64_t*>> BatchNorm<T>::counters() {
  return {{prefix_ + "num_batches_tracked", &num_batches_tracked_}};
}

template class BatchNorm<float>;
template class BatchNorm<double>;

}  // namespace nanomlp
