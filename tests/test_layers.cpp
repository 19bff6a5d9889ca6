// Each layer: a hand-computed forward and a finite-difference gradient check in double.
#include <gtest/gtest.h>

#include <cmath>

#include "gradcheck.hpp"
#include "nanomlp/kernels.hpp"
#include "nanomlp/layers.hpp"

namespace nanomlp {
namespace {

using testing::check_layer;
using testing::fill_random;

TEST(Dense, HandComputedForward) {
  // W = [[1, 2], [3, 4], [5, 6]] (out 3, in 2), b = (0.5, -1, 0); x = (1, -1).
  Dense<double> layer(2, 3, "0.");
  layer.W_ = Mat<double>(3, 2);
  const double w[] = {1, 2, 3, 4, 5, 6};
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
