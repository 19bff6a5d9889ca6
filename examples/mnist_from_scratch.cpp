// The whole idea of nanomlp in one file: the original NumPy program in plain C++. A 784-128-10
// perceptron (ReLU hidden layer, softmax output, cross-entropy loss) trained on MNIST by
// mini-batch SGD, its backward pass written by hand, with the original's settings: batch 64,
// learning rate 0.1, He initialisation, 10 epochs, pixels / 255. Only the standard library and
// nanomlp's IDX reader.  Usage: mnist_from_scratch [DATA_DIR] [EPOCHS]
// DATA_DIR holds mnist/ (default: $NANOMLP_DATA, else ../shared/data).
// A matrix is a row-major std::vector<float>: element (i, j) of an (R, C) matrix is [i * C + j].
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "nanomlp/io/data.hpp"

namespace from_scratch {

using std::size_t;
constexpr size_t D = 784, H = 128, K = 10;  // inputs, hidden units, classes
constexpr size_t batch_size = 64;
constexpr float learning_rate = 0.1f;

struct Mlp {
  std::vector<float> W1, b1, W2, b2;  // (D, H), (H), (H, K), (K)
};

// A draw from N(0, 1) by the Box-Muller transform (std::normal_distribution varies by platform).
float standard_normal(std::mt19937_64& rng) {
  const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;          // [0, 1)
  return static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2));
}

// He initialisation: W ~ N(0, 2 / fan_in), b = 0.
Mlp init_mlp(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Mlp m{std::vector<float>(D * H), std::vector<float>(H), std::vector<float>(H * K),
        std::vector<float>(K)};
  for (float& w : m.W1) w = standard_normal(rng) * std::sqrt(2.0f / D);
  for (float& w : m.W2) w = standard_normal(rng) * std::sqrt(2.0f / H);
  return m;
}

// C (M, P) = A (M, Q) B (Q, P), or with a_transposed C (Q, P) = A^T B for A (M, Q), B (M, P).
// In i-k-j order, the inner loop runs along rows of B and C; a zero of A (most pixels) is skipped.
void matmul(const float* A, const float* B, float* C, size_t M, size_t Q, size_t P,
            bool a_transposed = false) {
  std::fill(C, C + (a_transposed ? Q : M) * P, 0.0f);
  for (size_t i = 0; i < M; ++i)
    for (size_t k = 0; k < Q; ++k) {
      const float a = A[i * Q + k];
      if (a == 0.0f) continue;
      float* c = a_transposed ? &C[k * P] : &C[i * P];
      const float* b = a_transposed ? &B[i * P] : &B[k * P];
      for (size_t j = 0; j < P; ++j) c[j] += a * b[j];
    }
}

// Forward pass of a batch X (N, D): Z1 = X W1 + b1, A1 = ReLU(Z1), P = softmax(A1 W2 + b2).
void forward(const Mlp& m, const float* X, size_t N, std::vector<float>& Z1, std::vector<float>& A1,
             std::vector<float>& P) {
  Z1.resize(N * H), A1.resize(N * H), P.resize(N * K);
  matmul(X, m.W1.data(), Z1.data(), N, D, H);  // Z1 = X W1 + b1         (N, H)
  for (size_t i = 0; i < N * H; ++i) Z1[i] += m.b1[i % H];
  for (size_t i = 0; i < N * H; ++i) A1[i] = std::max(Z1[i], 0.0f);  // A1 = max(Z1, 0)
  std::vector<float> Z2(N * K);
  matmul(A1.data(), m.W2.data(), Z2.data(), N, H, K);  // Z2 = A1 W2 + b2    (N, K)
  for (size_t i = 0; i < N * K; ++i) Z2[i] += m.b2[i % K];
  for (size_t n = 0; n < N; ++n) {  // P[n] = exp(Z2[n] - max) / sum_k exp(Z2[n, k] - max)
    const float* z = &Z2[n * K];
    const float max_z = *std::max_element(z, z + K);
    float sum = 0.0f;
    for (size_t k = 0; k < K; ++k) sum += std::exp(z[k] - max_z);
    for (size_t k = 0; k < K; ++k) P[n * K + k] = std::exp(z[k] - max_z) / sum;
  }
}

// One step of SGD on a batch X (N, D) with labels y (N): forward, loss, backward, update.
// Returns the batch's mean cross-entropy.
float train_step(Mlp& m, const float* X, const std::uint8_t* y, size_t N, float lr) {
  std::vector<float> Z1, A1, P;
  forward(m, X, N, Z1, A1, P);
  double loss = 0.0;  // L = -1/N sum_n log P[n, y_n]
  for (size_t n = 0; n < N; ++n) loss -= std::log(P[n * K + y[n]]) / static_cast<double>(N);

  std::vector<float> dZ2(P), dW2(H * K), db2(K), dA1(N * H), dW1(D * H), db1(H);
  for (size_t n = 0; n < N; ++n) dZ2[n * K + y[n]] -= 1.0f;  // dZ2 = (P - Y) / N  (N, K)
  for (float& g : dZ2) g /= static_cast<float>(N);
  matmul(A1.data(), dZ2.data(), dW2.data(), N, H, K, true);  // dW2 = A1^T dZ2   (H, K)
  for (size_t i = 0; i < N * K; ++i) db2[i % K] += dZ2[i];   // db2 = sum_n dZ2  (K)
  for (size_t n = 0; n < N; ++n)                             // dA1 = dZ2 W2^T   (N, H)
    for (size_t h = 0; h < H; ++h)
      for (size_t k = 0; k < K; ++k) dA1[n * H + h] += dZ2[n * K + k] * m.W2[h * K + k];
  std::vector<float>& dZ1 = dA1;  // dZ1 = dA1 * [Z1 > 0]  (N, H), in place
  for (size_t i = 0; i < N * H; ++i) dZ1[i] = Z1[i] > 0.0f ? dA1[i] : 0.0f;
  matmul(X, dZ1.data(), dW1.data(), N, D, H, true);         // dW1 = X^T dZ1    (D, H)
  for (size_t i = 0; i < N * H; ++i) db1[i % H] += dZ1[i];  // db1 = sum_n dZ1  (H)

  // Gradient descent: W = W - lr dW, for every parameter.
  for (size_t i = 0; i < D * H; ++i) m.W1[i] -= lr * dW1[i];
  for (size_t i = 0; i < H; ++i) m.b1[i] -= lr * db1[i];
  for (size_t i = 0; i < H * K; ++i) m.W2[i] -= lr * dW2[i];
  for (size_t i = 0; i < K; ++i) m.b2[i] -= lr * db2[i];
  return static_cast<float>(loss);
}

// Images idx[0..N) of the data set as X (N, D) = pixel / 255, and their labels y (N).
void load_batch(const nanomlp::Dataset& data, const std::uint32_t* idx, size_t N, float* X,
                std::uint8_t* y) {
  for (size_t n = 0; n < N; ++n) {
    for (size_t d = 0; d < D; ++d) X[n * D + d] = data.image(idx[n])[d] / 255.0f;
    y[n] = data.labels[idx[n]];
  }
}

// The share of the images whose most probable class is their label: the whole set as one batch.
double evaluate(const Mlp& m, const nanomlp::Dataset& data) {
  const size_t N = data.count;
  std::vector<float> X(N * D), Z1, A1, P;  // X (N, D), P (N, K)
  for (size_t i = 0; i < N * D; ++i) X[i] = data.images[i] / 255.0f;
  forward(m, X.data(), N, Z1, A1, P);
  size_t correct = 0;
  for (size_t n = 0; n < N; ++n)
    correct += std::max_element(&P[n * K], &P[n * K] + K) - &P[n * K] == data.labels[n];
  return static_cast<double>(correct) / static_cast<double>(N);
}

// Shuffles in place (Fisher-Yates; std::shuffle gives another order on another platform).
void shuffle(std::vector<std::uint32_t>& order, std::mt19937_64& rng) {
  for (size_t i = order.size() - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
}

}  // namespace from_scratch

#ifndef NANOMLP_EXAMPLE_NO_MAIN
int main(int argc, char** argv) {
  using namespace from_scratch;
  const char* env = std::getenv("NANOMLP_DATA");
  const std::string root = argc > 1 ? argv[1] : env != nullptr && *env ? env : "../shared/data";
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 10;
  nanomlp::DataSplit data;
  try {
    data = nanomlp::load_dataset(root, "mnist");  // DATA_DIR/mnist/train-images-idx3-ubyte.gz...
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mnist_from_scratch: %s\n", e.what());
    return 1;
  }
  Mlp m = init_mlp(0);
  std::mt19937_64 rng(1);  // draws the order of the training images, a new one every epoch
  std::vector<std::uint32_t> order(data.train.count);  // 0, 1, ..., 59999, then shuffled
  std::iota(order.begin(), order.end(), 0u);
  std::vector<float> X(batch_size * D);  // (N, D)
  std::vector<std::uint8_t> y(batch_size);
  for (int epoch = 1; epoch <= epochs; ++epoch) {
    shuffle(order, rng);
    double loss_sum = 0.0;
    size_t steps = 0;
    for (size_t start = 0; start < order.size(); start += batch_size) {
      const size_t N = std::min(batch_size, order.size() - start);
      load_batch(data.train, &order[start], N, X.data(), y.data());
      loss_sum += train_step(m, X.data(), y.data(), N, learning_rate);
      if (++steps % 100 == 0)
        std::printf("epoch %d  step %3zu  loss %.4f\n", epoch, steps, loss_sum / steps);
    }
    std::printf("epoch %d/%d  train loss %.4f  test accuracy %.2f%%\n", epoch, epochs,
                loss_sum / steps, 100.0 * evaluate(m, data.test));
  }
}
#endif
