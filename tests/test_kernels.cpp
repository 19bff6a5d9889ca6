// Kernels against naive references on odd shapes, with one and several threads.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "nanomlp/core/rng.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

template <typename T>
std::vector<T> random_vector(std::size_t n, Rng& rng) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(rng.uniform() * 2.0 - 1.0);
  return v;
}

struct GemmCase {
  std::size_t M, N, K;
};

class GemmTest : public ::testing::TestWithParam<std::tuple<bool, bool, int>> {};

TEST_P(GemmTest, MatchesNaiveOnOddShapes) {
  const auto [ta, tb, threads] = GetParam();
  kernels::set_num_threads(threads);
  Rng rng(42);
  // Odd sizes, sizes below and above the parallel threshold and the SIMD width, and the
  // training step's shapes with a batch that does not divide the data set.
  const std::vector<GemmCase> cases{{1, 1, 1},     {3, 5, 7},      {17, 33, 9},    {64, 128, 784},
                                    {96, 10, 128}, {128, 784, 37}, {37, 784, 128}, {513, 129, 65}};
  for (const auto& c : cases) {
    // Leading dimensions padded by 3 to catch stride mistakes.
    const std::size_t a_rows = ta ? c.K : c.M, a_cols = ta ? c.M : c.K;
    const std::size_t b_rows = tb ? c.N : c.K, b_cols = tb ? c.K : c.N;
    const std::size_t lda = a_cols + 3, ldb = b_cols + 3, ldc = c.N + 3;
    const auto A = random_vector<float>(a_rows * lda, rng);
    const auto B = random_vector<float>(b_rows * ldb, rng);
    auto C = random_vector<float>(c.M * ldc, rng);
    auto C_ref = C;
    kernels::gemm<float>(ta, tb, c.M, c.N, c.K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f, C.data(),
                         ldc);
    kernels::gemm_naive<float>(ta, tb, c.M, c.N, c.K, 0.5f, A.data(), lda, B.data(), ldb, 0.25f,
                               C_ref.data(), ldc);
    for (std::size_t i = 0; i < c.M; ++i) {
      for (std::size_t j = 0; j < ldc; ++j) {
        const float tol = 1e-5f * static_cast<float>(c.K) + 1e-6f;
        ASSERT_NEAR(C[i * ldc + j], C_ref[i * ldc + j], tol)
            << "ta=" << ta << " tb=" << tb << " M=" << c.M << " N=" << c.N << " K=" << c.K
            << " at (" << i << "," << j << ")";
      }
    }
  }
  kernels::set_num_threads(1);
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, GemmTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(1, 2, 3)));

TEST(Gemm, DoubleMatchesNaive) {
  Rng rng(7);
  const std::size_t M = 13, N = 11, K = 29;
  const auto A = random_vector<double>(M * K, rng);
  const auto B = random_vector<double>(K * N, rng);
  std::vector<double> C(M * N), C_ref(M * N);
  kernels::gemm<double>(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0, C.data(), N);
  kernels::gemm_naive<double>(false, false, M, N, K, 1.0, A.data(), K, B.data(), N, 0.0,
                              C_ref.data(), N);
  for (std::size_t i = 0; i < C.size(); ++i) EXPECT_NEAR(C[i], C_ref[i], 1e-12);
}

TEST(Gemm, BetaZeroIgnoresNaNInOutput) {
  const std::vector<float> A{1, 2, 3, 4}, B{1, 0, 0, 1};
  std::vector<float> C(4, std::nanf(""));
  kernels::gemm<float>(false, false, 2, 2, 2, 1.0f, A.data(), 2, B.data(), 2, 0.0f, C.data(), 2);
  EXPECT_EQ(C, (std::vector<float>{1, 2, 3, 4}));
}

TEST(Gemm, RejectsInconsistentLeadingDimension) {
  std::vector<float> A(6), B(6), C(4);
  EXPECT_THROW(kernels::gemm<float>(false, false, 2, 2, 3, 1.0f, A.data(), 2, B.data(), 2, 0.0f,
                                    C.data(), 2),
               std::invalid_argument);
}

TEST(Gemm, SameThreadCountGivesBitIdenticalResults) {
  kernels::set_num_threads(2);
  Rng rng(3);
  const std::size_t M = 64, N = 784, K = 128;
  const auto A = random_vector<float>(M * K, rng);
  const auto B = random_vector<float>(K * N, rng);
  std::vector<float> C1(M * N), C2(M * N);
  kernels::gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C1.data(), N);
  kernels::gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C2.data(), N);
  EXPECT_EQ(C1, C2);
  kernels::set_num_threads(1);
}

// The batch-invariant affine map: close to a GEMM plus bias on odd shapes (widths below, at and
// above its 64-column stretch), and each row bit-identical whatever batch it is computed in.
TEST(AffineRows, MatchesGemmAndIsBatchInvariant) {
  Rng rng(11);
  const std::vector<GemmCase> cases{{1, 1, 1},   {3, 5, 7},     {300, 16, 784}, {7, 64, 33},
                                    {9, 65, 19}, {5, 130, 129}, {2, 10, 128}};
  for (const auto& c : cases) {
    const auto x = random_vector<float>(c.M * c.K, rng);  // (M, K)
    const auto W = random_vector<float>(c.K * c.N, rng);  // (K, N)
    const auto b = random_vector<float>(c.N, rng);        // (N)
    std::vector<float> y(c.M * c.N), ref(c.M * c.N);
    kernels::affine_rows<float>(x.data(), c.M, c.K, W.data(), b.data(), y.data(), c.N);
    kernels::gemm_naive<float>(false, false, c.M, c.N, c.K, 1.0f, x.data(), c.K, W.data(), c.N,
                               0.0f, ref.data(), c.N);
    for (std::size_t i = 0; i < c.M; ++i) {
      for (std::size_t j = 0; j < c.N; ++j) {
        ASSERT_NEAR(y[i * c.N + j], ref[i * c.N + j] + b[j], 1e-5f * static_cast<float>(c.K))
            << "M=" << c.M << " N=" << c.N << " K=" << c.K << " at (" << i << "," << j << ")";
      }
    }
    // Every row again, alone: the same bits.
    std::vector<float> one(c.N);
    for (std::size_t i = 0; i < c.M; ++i) {
      kernels::affine_rows<float>(x.data() + i * c.K, 1, c.K, W.data(), b.data(), one.data(), c.N);
      for (std::size_t j = 0; j < c.N; ++j) {
        ASSERT_EQ(one[j], y[i * c.N + j]) << "row " << i << " of " << c.M << ", column " << j;
      }
    }
  }
  std::vector<double> xd{1.5, -2.0}, Wd{1, 2, 3, 4, 5, 6}, bd{0.5, 0.25, -1}, yd(3);
  kernels::affine_rows<double>(xd.data(), 1, 2, Wd.data(), bd.data(), yd.data(), 3);
  EXPECT_EQ(yd, (std::vector<double>{1.5 - 8 + 0.5, 3 - 10 + 0.25, 4.5 - 12 - 1}));
  EXPECT_THROW(kernels::affine_rows<float>(nullptr, 1, 2, nullptr, nullptr, nullptr, 3),
               std::invalid_argument);
}

TEST(Elementwise, BiasReluAndRowSumsMatchLoops) {
  Rng rng(5);
  const std::size_t N = 7, H = 19;
  auto y = random_vector<float>(N * H, rng);
  const auto b = random_vector<float>(H, rng);
  auto expected = y;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < H; ++j) expected[i * H + j] += b[j];
  kernels::add_bias_rows(y.data(), b.data(), N, H);
  EXPECT_EQ(y, expected);

  std::vector<float> sums(H);
  kernels::sum_rows(y.data(), sums.data(), N, H);
  for (std::size_t j = 0; j < H; ++j) {
    float s = 0;
    for (std::size_t i = 0; i < N; ++i) s += y[i * H + j];
    EXPECT_FLOAT_EQ(sums[j], s);
  }

  std::vector<float> r(N * H), dx(N * H);
  const auto dy = random_vector<float>(N * H, rng);
  kernels::relu_forward(y.data(), r.data(), N * H);
  kernels::relu_backward(r.data(), dy.data(), dx.data(), N * H);
  for (std::size_t i = 0; i < N * H; ++i) {
    EXPECT_EQ(r[i], y[i] > 0 ? y[i] : 0.0f);
    EXPECT_EQ(dx[i], y[i] > 0 ? dy[i] : 0.0f);
  }
}

TEST(Elementwise, ParallelSlicesMatchLoopsOnOddLargeShapes) {
  // Above 2^16 elements the passes split over the pool; 1237 x 131 is odd in both dimensions.
  kernels::set_num_threads(2);
  Rng rng(9);
  const std::size_t N = 1237, H = 131;
  auto y = random_vector<float>(N * H, rng);
  const auto b = random_vector<float>(H, rng);
  const auto dy = random_vector<float>(N * H, rng);
  auto expected = y;
  for (std::size_t i = 0; i < N; ++i)
    for (std::size_t j = 0; j < H; ++j) expected[i * H + j] += b[j];
  kernels::add_bias_rows(y.data(), b.data(), N, H);
  EXPECT_EQ(y, expected);
  std::vector<float> r(N * H), dx(N * H);
  kernels::relu_forward(y.data(), r.data(), N * H);
  kernels::relu_backward(r.data(), dy.data(), dx.data(), N * H);
  for (std::size_t i = 0; i < N * H; ++i) {
    ASSERT_EQ(r[i], y[i] > 0 ? y[i] : 0.0f);
    ASSERT_EQ(dx[i], y[i] > 0 ? dy[i] : 0.0f);
  }
  kernels::set_num_threads(1);
}

TEST(Elementwise, U8ToFloatScalesAndShifts) {
  const std::vector<std::uint8_t> px{0, 1, 128, 255, 17};
  std::vector<float> out(px.size());
  kernels::u8_to_float(px.data(), out.data(), px.size(), 1.0f / 255.0f, -0.5f);
  for (std::size_t i = 0; i < px.size(); ++i) {
    EXPECT_FLOAT_EQ(out[i], static_cast<float>(px[i]) / 255.0f - 0.5f);
  }
}

TEST(SoftmaxCrossEntropy, HandComputedTwoClassCase) {
  // z = (0, ln 3): p = (1/4, 3/4); label 1: loss = -ln(3/4); dz = (p - onehot) / N.
  const std::vector<double> z{0.0, std::log(3.0)};
  const std::vector<std::uint8_t> y{1};
  std::vector<double> dz(2);
  std::size_t correct = 0;
  const double loss =
      kernels::softmax_cross_entropy<double>(z.data(), y.data(), 1, 2, 0.0, dz.data(), &correct);
  EXPECT_NEAR(loss, -std::log(0.75), 1e-15);
  EXPECT_NEAR(dz[0], 0.25, 1e-15);
  EXPECT_NEAR(dz[1], -0.25, 1e-15);
  EXPECT_EQ(correct, 1u);
}

TEST(SoftmaxCrossEntropy, StableForHugeLogits) {
  const std::vector<float> z{1000.0f, -1000.0f, 0.0f};
  const std::vector<std::uint8_t> y{0};
  std::vector<float> dz(3);
  const double loss =
      kernels::softmax_cross_entropy<float>(z.data(), y.data(), 1, 3, 0.0f, dz.data(), nullptr);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, 0.0, 1e-6);
  for (float d : dz) EXPECT_TRUE(std::isfinite(d));
}

TEST(SoftmaxCrossEntropy, LabelSmoothingMatchesDefinition) {
  // With eps, the target is q = (1 - eps) onehot + eps / K.
  const std::vector<double> z{0.3, -1.2, 2.0, 0.1};
  const std::vector<std::uint8_t> y{2};
  const double eps = 0.1;
  std::vector<double> dz(4);
  const double loss =
      kernels::softmax_cross_entropy<double>(z.data(), y.data(), 1, 4, eps, dz.data(), nullptr);
  double m = 2.0, s = 0;
  for (double v : z) s += std::exp(v - m);
  const double lse = m + std::log(s);
  double expected = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const double q = (k == 2 ? 1 - eps : 0) + eps / 4;
    expected += q * (lse - z[k]);
    EXPECT_NEAR(dz[k], std::exp(z[k] - lse) - q, 1e-14);
  }
  EXPECT_NEAR(loss, expected, 1e-14);
}

TEST(Softmax, RowsSumToOne) {
  const std::vector<float> z{1, 2, 3, -5, 0, 5};
  std::vector<float> p(6);
  kernels::softmax_rows(z.data(), p.data(), 2, 3);
  EXPECT_NEAR(p[0] + p[1] + p[2], 1.0f, 1e-6f);
  EXPECT_NEAR(p[3] + p[4] + p[5], 1.0f, 1e-6f);
  EXPECT_GT(p[2], p[1]);
}

}  // namespace
}  // namespace nanomlp
