// Each layer: a hand-computed forward and a finite-difference gradient check in double.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/layers.hpp"

namespace nanomlp {
namespace {

using testing::check_layer;
using testing::fill_random;

TEST(Dense, HandComputedForward) {
  // W = [[1, 3, 5], [2, 4, 6]] (in 2, out 3), b = (0.5, -1, 0); x = (1, -1).
  Dense<double> layer(2, 3, "0.");
  ASSERT_EQ(layer.W_.rows(), 2u);
  ASSERT_EQ(layer.W_.cols(), 3u);
  const double w[] = {1, 3, 5, 2, 4, 6};
  std::copy(w, w + 6, layer.W_.data());
  layer.b_(0, 0) = 0.5;
  layer.b_(0, 1) = -1;
  Mat<double> x(1, 2);
  x(0, 0) = 1;
  x(0, 1) = -1;
  Mat<double> y;
  layer.forward(x, y, false);
  ASSERT_EQ(y.rows(), 1u);
  ASSERT_EQ(y.cols(), 3u);
  EXPECT_DOUBLE_EQ(y(0, 0), 1 - 2 + 0.5);
  EXPECT_DOUBLE_EQ(y(0, 1), 3 - 4 - 1);
  EXPECT_DOUBLE_EQ(y(0, 2), 5 - 6 + 0);
  const auto params = layer.params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "0.weight");
  EXPECT_EQ(params[1].name, "0.bias");
}

TEST(Dense, GradientCheck) {
  Dense<double> layer(7, 5, "0.");
  Rng rng(3);
  fill_random(layer.W_, rng);
  fill_random(layer.b_, rng);
  check_layer(layer, 4, 7, true);
}

TEST(Dense, SkipsInputGradientWhenNotWanted) {
  Dense<double> layer(3, 2, "0.");
  Mat<double> x(2, 3), y, dy(2, 2);
  dy.fill(1.0);
  layer.forward(x, y, true);
  layer.backward(dy, nullptr);  // must not touch a null dx
  EXPECT_DOUBLE_EQ(layer.db_(0, 0), 2.0);
}

TEST(ReLU, HandComputedForwardAndGradientCheck) {
  ReLU<double> layer;
  Mat<double> x(1, 4), y;
  const double v[] = {-2, -0.5, 0.5, 3};
  std::copy(v, v + 4, x.data());
  layer.forward(x, y, false);
  EXPECT_EQ(std::vector<double>(y.begin(), y.end()), (std::vector<double>{0, 0, 0.5, 3}));
  check_layer(layer, 5, 9, true);  // random inputs are never exactly at the kink
}

TEST(LeakyReLU, HandComputedForwardAndGradientCheck) {
  LeakyReLU<double> layer(0.01);
  Mat<double> x(1, 2), y;
  x(0, 0) = -2;
  x(0, 1) = 3;
  layer.forward(x, y, false);
  EXPECT_DOUBLE_EQ(y(0, 0), -0.02);
  EXPECT_DOUBLE_EQ(y(0, 1), 3);
  check_layer(layer, 5, 9, true);
}

TEST(Tanh, HandComputedForwardAndGradientCheck) {
  Tanh<double> layer;
  Mat<double> x(1, 2), y;
  x(0, 0) = 0;
  x(0, 1) = 1;
  layer.forward(x, y, false);
  EXPECT_DOUBLE_EQ(y(0, 0), 0);
  EXPECT_NEAR(y(0, 1), 0.7615941559557649, 1e-15);
  check_layer(layer, 5, 9, true);
}

TEST(GELU, HandComputedForwardAndGradientCheck) {
  GELU<double> layer;
  Mat<double> x(1, 3), y;
  x(0, 0) = 0;
  x(0, 1) = 1;
  x(0, 2) = -1;
  layer.forward(x, y, false);
  // torch.nn.functional.gelu(torch.tensor([0., 1., -1.], dtype=torch.float64))
  EXPECT_DOUBLE_EQ(y(0, 0), 0);
  EXPECT_NEAR(y(0, 1), 0.8413447460685429, 1e-15);
  EXPECT_NEAR(y(0, 2), -0.15865525393145707, 1e-15);
  check_layer(layer, 5, 9, true);
}

TEST(SoftmaxCrossEntropy, GradientCheck) {
  Rng rng(11);
  const std::size_t N = 6, K = 10;
  Mat<double> z(N, K);
  fill_random(z, rng, 3.0);
  std::vector<std::uint8_t> labels{0, 3, 9, 9, 4, 1};
  for (double eps : {0.0, 0.1}) {
    Mat<double> dz(N, K);
    kernels::softmax_cross_entropy<double>(z.data(), labels.data(), N, K, eps, dz.data(), nullptr);
    auto loss = [&] {
      return kernels::softmax_cross_entropy<double>(z.data(), labels.data(), N, K, eps, nullptr,
                                                    nullptr) /
             static_cast<double>(N);
    };
    testing::expect_gradient_matches(loss, z, dz, "softmax_cross_entropy dz");
  }
}

}  // namespace
}  // namespace nanomlp

namespace nanomlp {
namespace {

TEST(BatchNorm, HandComputedTrainingForwardAndRunningStatistics) {
  // One feature, batch x = (1, 3): mean 2, biased variance 1, unbiased variance 2.
  BatchNorm<double> bn(1, "1.");
  Mat<double> x(2, 1), y;
  x(0, 0) = 1;
  x(1, 0) = 3;
  bn.forward(x, y, true);
  // mean 2, biased var 1, xhat = -+1/sqrt(1 + 1e-5).
  const double s = 1.0 / std::sqrt(1.0 + 1e-5);
  EXPECT_NEAR(y(0, 0), -s, 1e-12);
  EXPECT_NEAR(y(1, 0), s, 1e-12);
  // running_mean = 0.9 * 0 + 0.1 * 2; running_var = 0.9 * 1 + 0.1 * 2 (unbiased: 2 / 1).
  EXPECT_NEAR(bn.running_mean_(0, 0), 0.2, 1e-15);
  EXPECT_NEAR(bn.running_var_(0, 0), 1.1, 1e-15);
  EXPECT_EQ(bn.num_batches_tracked_, 1);
  // Evaluation uses the running statistics: (1 - 0.2) / sqrt(1.1 + 1e-5).
  Mat<double> y_eval;
  bn.forward(x, y_eval, false);
  EXPECT_NEAR(y_eval(0, 0), 0.8 / std::sqrt(1.1 + 1e-5), 1e-12);
  EXPECT_EQ(bn.num_batches_tracked_, 1);  // evaluation does not count
  const auto params = bn.params();
  EXPECT_EQ(params[0].name, "1.weight");
  EXPECT_EQ(bn.buffers()[1].name, "1.running_var");
  EXPECT_EQ(bn.counters()[0].first, "1.num_batches_tracked");
}

TEST(BatchNorm, GradientCheckInTrainingMode) {
  BatchNorm<double> bn(6, "1.");
  Rng rng(4);
  fill_random(bn.gamma_, rng);
  fill_random(bn.beta_, rng);
  check_layer(bn, 5, 6, /*training=*/true);
}

TEST(BatchNorm, GradientCheckInEvaluationMode) {
  BatchNorm<double> bn(4, "1.");
  Rng rng(8);
  fill_random(bn.gamma_, rng);
  fill_random(bn.running_mean_, rng);
  for (double& v : bn.running_var_) v = 0.5 + rng.uniform();
  // In evaluation the layer is affine in x: dx = dy gamma / sqrt(running_var + eps).
  Mat<double> x(3, 4), y;
  fill_random(x, rng);
  bn.forward(x, y, false);
  for (std::size_t j = 0; j < 4; ++j) {
    const double expected = bn.gamma_(0, j) * (x(0, j) - bn.running_mean_(0, j)) /
                                std::sqrt(bn.running_var_(0, j) + 1e-5) +
                            bn.beta_(0, j);
    EXPECT_NEAR(y(0, j), expected, 1e-12);
  }
}

TEST(Dropout, GradientCheckWithAFixedMask) {
  Dropout<double> layer(0.3);
  Rng rng(0);
  layer.set_rng(&rng);
  // Resetting the generator before each forward fixes the mask across evaluations.
  check_layer(layer, 6, 10, true, 1, [&] { rng.reseed(123); });
}

TEST(Dropout, TrainingDropsAndRescalesEvaluationIsIdentity) {
  Dropout<double> layer(0.5);
  Rng rng(1);
  layer.set_rng(&rng);
  Mat<double> x(100, 100), y;
  x.fill(1.0);
  layer.forward(x, y, true);
  std::size_t zeros = 0;
  for (double v : y) {
    EXPECT_TRUE(v == 0.0 || v == 2.0);
    zeros += v == 0.0;
  }
  EXPECT_NEAR(static_cast<double>(zeros) / 10000.0, 0.5, 0.03);
  Mat<double> y1, y2;
  layer.forward(x, y1, false);
  layer.forward(x, y2, false);
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y1.data()[i], 1.0);
    EXPECT_EQ(y2.data()[i], 1.0);
  }
}

}  // namespace
}  // namespace nanomlp
