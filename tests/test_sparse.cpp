// The sparse input path (nanomlp/fast/sparse.hpp) against the naive oracle: odd batch sizes (blocks
// that are not full), widths that are not multiples of the SIMD width, empty and fully inked
// images, with and without the normalisation shift.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "gradcheck.hpp"
#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/fast/sparse.hpp"
#include "nanomlp/fast/sparse_input.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/layers.hpp"
#include "nanomlp/train/trainer.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;
using testing::message_of;

// `count` images of D pixels, about `density` of them inked; image 0 is blank and image 1
// fully inked (when there are that many), the two edge cases of a block.
std::vector<std::uint8_t> random_images(std::size_t count, std::size_t D, double density,
                                        Rng& rng) {
  std::vector<std::uint8_t> img(count * D);
  for (std::size_t i = 0; i < img.size(); ++i) {
    img[i] = rng.uniform() < density ? static_cast<std::uint8_t>(1 + rng.below(255)) : 0;
  }
  if (count > 0) std::fill(img.begin(), img.begin() + static_cast<std::ptrdiff_t>(D), 0);
  if (count > 1) std::fill(img.begin() + static_cast<std::ptrdiff_t>(D), img.begin() + 2 * D, 7);
  return img;
}

struct Case {
  std::size_t N, D, H;
  float shift;
};

class SparseTest : public ::testing::TestWithParam<Case> {};

TEST_P(SparseTest, EncodeForwardAndWeightGradMatchTheNaiveOracle) {
  const auto [N, D, H, shift] = GetParam();
  Rng rng(N * 131 + D * 7 + H);
  const std::size_t count = N + 5;
  const auto images = random_images(count, D, 0.2, rng);
  // Rows drawn out of order, with a repeat, as a shuffled epoch would.
  std::vector<std::uint32_t> idx(N);
  for (std::size_t i = 0; i < N; ++i) idx[i] = static_cast<std::uint32_t>((i * 7 + 3) % count);
  if (N > 2) idx[2] = idx[0];
  const float scale = 1.0f / 255.0f / 0.3081f;

  SparseBatch s;
  kernels::sparse_reshape(s, N, D, shift);
  for (std::size_t b = 0; b < s.blocks(); ++b) {
    kernels::sparse_encode_block(s, b, images.data(), idx.data(), scale);
  }
  // Encoding: the dense view is x = scale * u + shift (to rounding: the stored part is scale * u).
  Matrix x(N, D);
  kernels::sparse_to_dense(s, x.data());
  std::size_t inked = 0;
  for (std::size_t i = 0; i < N; ++i) {
    for (std::size_t k = 0; k < D; ++k) {
      const std::uint8_t u = images[idx[i] * D + k];
      inked += u != 0;
      if (u == 0) {
        ASSERT_EQ(x(i, k), shift) << i << "," << k;
      } else {
        ASSERT_NEAR(x(i, k), scale * u + shift, 1e-6) << i << "," << k;
      }
    }
  }
  EXPECT_EQ(s.nonzeros(), inked);

  Matrix W(D, H), bias(1, H), dy(N, H);
  testing::fill_random(W, rng, 0.5);
  testing::fill_random(bias, rng, 0.5);
  testing::fill_random(dy, rng, 1.0);

  // Forward: y = x W + b.
  Matrix y(N, H), want(N, H);
  for (std::size_t b = 0; b < s.blocks(); ++b) {
    kernels::sparse_forward_block(s, b, W.data(), bias.data(), y.row(s.block_begin[b]), H);
  }
  kernels::gemm_naive<float>(false, false, N, H, D, 1.0f, x.data(), D, W.data(), H, 0.0f,
                             want.data(), H);
  for (std::size_t i = 0; i < N; ++i) {
    for (std::size_t h = 0; h < H; ++h) {
      const double w = want(i, h) + bias(0, h);
      ASSERT_NEAR(y(i, h), w, 1e-4 * (1 + std::fabs(w))) << i << "," << h;
    }
  }

  // Weight gradient in two uneven pixel ranges: dW = x^T dy, db = column sums of dy.
  Matrix dW(D, H), db(1, H), want_dW(D, H);
  dW.fill(NAN);
  const std::size_t cut = D / 3;
  kernels::sparse_weight_grad(s, dy.data(), H, 0, cut, dW.data(), db.data());
  kernels::sparse_weight_grad(s, dy.data(), H, cut, D, dW.data(), nullptr);
  kernels::gemm_naive<float>(true, false, D, H, N, 1.0f, x.data(), D, dy.data(), H, 0.0f,
                             want_dW.data(), H);
  for (std::size_t k = 0; k < D; ++k) {
    for (std::size_t h = 0; h < H; ++h) {
      ASSERT_NEAR(dW(k, h), want_dW(k, h), 1e-4 * (1 + std::fabs(want_dW(k, h)))) << k << "," << h;
    }
  }
  for (std::size_t h = 0; h < H; ++h) {
    double sum = 0;
    for (std::size_t i = 0; i < N; ++i) sum += dy(i, h);
    EXPECT_NEAR(db(0, h), sum, 1e-4 * (1 + std::fabs(sum)));
  }
}

INSTANTIATE_TEST_SUITE_P(OddShapes, SparseTest,
                         ::testing::Values(Case{1, 784, 128, -0.4242f}, Case{64, 784, 128, 0.0f},
                                           Case{33, 29, 37, 0.25f}, Case{100, 784, 130, -0.42f},
                                           Case{7, 3, 1, 0.0f}, Case{65, 50, 300, -1.0f},
                                           Case{2, 64, 16, 0.5f}));

// The kernels the build runs (AVX-512 where the compiler targets it) against the portable
// reference, which every build compiles: widths around the 16-column vectors and the 128-column
// tiles, a block of one row, a nonzero shift, and a stretch of the pixels for the gradient.
TEST(Sparse, TheBuildsKernelsMatchThePortableReference) {
  Rng rng(31);
  for (const std::size_t N : {1, 33, 70}) {
    for (const std::size_t H : {1, 15, 16, 17, 127, 129, 300}) {
      SCOPED_TRACE("N=" + std::to_string(N) + " H=" + std::to_string(H));
      const std::size_t D = 97;
      const auto images = random_images(N, D, 0.3, rng);
      std::vector<std::uint32_t> idx(N);
      std::iota(idx.begin(), idx.end(), 0u);
      SparseBatch s;
      kernels::sparse_reshape(s, N, D, -0.25f);
      for (std::size_t b = 0; b < s.blocks(); ++b) {
        kernels::sparse_encode_block(s, b, images.data(), idx.data(), 1.0f / 255.0f);
      }
      Matrix W(D, H), bias(1, H), dy(N, H);
      testing::fill_random(W, rng, 0.5);
      testing::fill_random(bias, rng, 0.5);
      testing::fill_random(dy, rng, 1.0);
      Matrix y(N, H), y_ref(N, H), dW(D, H), dW_ref(D, H), db(1, H), db_ref(1, H);
      for (std::size_t b = 0; b < s.blocks(); ++b) {
        kernels::sparse_forward_block(s, b, W.data(), bias.data(), y.row(s.block_begin[b]), H);
        kernels::portable::sparse_forward_block(s, b, W.data(), bias.data(),
                                                y_ref.row(s.block_begin[b]), H);
      }
      kernels::sparse_weight_grad(s, dy.data(), H, 3, D, dW.data(), db.data());
      kernels::portable::sparse_weight_grad(s, dy.data(), H, 3, D, dW_ref.data(), db_ref.data());
      for (std::size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y.data()[i], y_ref.data()[i], 1e-5 * (1 + std::fabs(y_ref.data()[i]))) << i;
      }
      for (std::size_t i = 3 * H; i < dW.size(); ++i) {
        ASSERT_NEAR(dW.data()[i], dW_ref.data()[i], 1e-5 * (1 + std::fabs(dW_ref.data()[i]))) << i;
      }
      for (std::size_t h = 0; h < H; ++h) ASSERT_NEAR(db(0, h), db_ref(0, h), 1e-5) << h;
    }
  }
}

TEST(Sparse, BlocksAreNearEqualAndIndependentOfThreads) {
  SparseBatch s;
  kernels::sparse_reshape(s, 100, 784, 0.0f);
  EXPECT_EQ(s.block_begin, (std::vector<std::size_t>{0, 25, 50, 75, 100}));
  kernels::sparse_reshape(s, 64, 784, 0.0f);
  EXPECT_EQ(s.block_begin, (std::vector<std::size_t>{0, 32, 64}));
  kernels::sparse_reshape(s, 0, 784, 0.0f);
  EXPECT_EQ(s.blocks(), 0u);
}

TEST(Sparse, RejectsOutOfRangeArguments) {
  SparseBatch s;
  EXPECT_THROW(kernels::sparse_reshape(s, 4, 0, 0.0f), std::invalid_argument);
  kernels::sparse_reshape(s, 4, 8, 0.0f);
  std::vector<std::uint8_t> img(32, 1);
  std::vector<std::uint32_t> idx = {0, 1, 2, 3};
  EXPECT_THROW(kernels::sparse_encode_block(s, 1, img.data(), idx.data(), 1.0f),
               std::invalid_argument);
  std::vector<float> dy(4 * 2), dW(8 * 2);
  EXPECT_THROW(kernels::sparse_weight_grad(s, dy.data(), 2, 5, 9, dW.data(), nullptr),
               std::invalid_argument);
}

// A stretch of pixels of longer images (the split step encodes its own pixels): the
// columns [k0, k0 + Dp) of the whole batch's dense view, for stretches that start and end
// off the 64-byte scan.
TEST(Sparse, EncodesAStretchOfPixelsOfLongerImages) {
  const std::size_t N = 37, D = 784;
  Rng rng(5);
  const auto images = random_images(N, D, 0.3, rng);
  std::vector<std::uint32_t> idx(N);
  for (std::size_t i = 0; i < N; ++i) idx[i] = static_cast<std::uint32_t>((i * 5 + 1) % N);
  const float scale = 0.5f, shift = -0.25f;
  SparseBatch whole;
  kernels::sparse_reshape(whole, N, D, shift);
  for (std::size_t b = 0; b < whole.blocks(); ++b) {
    kernels::sparse_encode_block(whole, b, images.data(), idx.data(), scale);
  }
  std::vector<float> dense(N * D);
  kernels::sparse_to_dense(whole, dense.data());
  for (const auto& [k0, Dp] :
       {std::pair<std::size_t, std::size_t>{0, 392}, {392, 392}, {70, 1}, {13, 771}, {700, 84}}) {
    SCOPED_TRACE("pixels [" + std::to_string(k0) + ", " + std::to_string(k0 + Dp) + ")");
    SparseBatch part;
    kernels::sparse_reshape(part, N, Dp, shift);
    // Fetching a next batch's images (here the rows in reverse) changes nothing encoded.
    std::vector<std::uint32_t> next(idx.rbegin(), idx.rend());
    for (std::size_t b = 0; b < part.blocks(); ++b) {
      kernels::sparse_encode_block(part, b, images.data() + k0, D, idx.data(), scale,
                                   b % 2 == 0 ? next.data() : nullptr);
    }
    std::vector<float> got(N * Dp);
    kernels::sparse_to_dense(part, got.data());
    for (std::size_t i = 0; i < N; ++i) {
      for (std::size_t k = 0; k < Dp; ++k) {
        ASSERT_EQ(got[i * Dp + k], dense[i * D + k0 + k]) << "row " << i << ", pixel " << k;
      }
    }
  }
  SparseBatch part;
  kernels::sparse_reshape(part, N, 100, shift);
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                kernels::sparse_encode_block(part, 0, images.data(), 99, idx.data(), scale);
              }),
              HasSubstr("image stride 99 < D=100"));
}

// The Dense layer gives the same output and gradients from a sparse batch as from its dense
// view, on 1 and 2 threads (the split must not change a single bit between runs).
TEST(Sparse, DenseLayerMatchesItsDensePathOnOneAndTwoThreads) {
  Rng rng(11);
  const std::size_t N = 70, D = 784, H = 300;  // wide enough for the threaded split
  const auto images = random_images(N, D, 0.2, rng);
  std::vector<std::uint32_t> idx(N);
  std::iota(idx.begin(), idx.end(), 0u);
  const float scale = 1.0f / 255.0f, shift = -0.5f;
  SparseBatch s;
  kernels::sparse_reshape(s, N, D, shift);
  for (std::size_t b = 0; b < s.blocks(); ++b) {
    kernels::sparse_encode_block(s, b, images.data(), idx.data(), scale);
  }
  Matrix x(N, D), dy(N, H);
  kernels::sparse_to_dense(s, x.data());
  testing::fill_random(dy, rng, 1.0);

  Dense<float> layer(D, H, "0.");
  testing::fill_random(layer.W_, rng, 0.1);
  testing::fill_random(layer.b_, rng, 0.1);
  Matrix y_dense;
  layer.forward(x, y_dense, true);
  layer.backward(dy, nullptr);
  const Matrix dW_dense = layer.dW_, db_dense = layer.db_;

  std::vector<Matrix> runs;
  Matrix scratch;
  for (int threads : {1, 2, 2}) {
    kernels::set_num_threads(threads);
    Matrix y;
    sparse_linear_forward(s, layer, y, scratch);
    sparse_linear_backward(s, dy, layer);
    for (std::size_t i = 0; i < y.size(); ++i) {
      ASSERT_NEAR(y.data()[i], y_dense.data()[i], 1e-4 * (1 + std::fabs(y_dense.data()[i])));
    }
    for (std::size_t i = 0; i < dW_dense.size(); ++i) {
      ASSERT_NEAR(layer.dW_.data()[i], dW_dense.data()[i],
                  1e-4 * (1 + std::fabs(dW_dense.data()[i])));
    }
    for (std::size_t h = 0; h < H; ++h) ASSERT_NEAR(layer.db_(0, h), db_dense(0, h), 1e-3);
    runs.push_back(y);
    runs.push_back(layer.dW_);
  }
  kernels::set_num_threads(1);
  // Blocks and pixel ranges never change the order of a sum: bit-identical on 1 and 2 threads.
  for (std::size_t r = 2; r < runs.size(); ++r) {
    for (std::size_t i = 0; i < runs[r].size(); ++i) {
      ASSERT_EQ(runs[r].data()[i], runs[r % 2].data()[i]) << "run " << r << " element " << i;
    }
  }
  // A layer that takes another number of inputs is refused, naming both.
  Dense<float> wider(D + 1, H, "0.");
  Matrix y;
  const std::string msg =
      message_of<std::invalid_argument>([&] { sparse_linear_forward(s, wider, y, scratch); });
  EXPECT_NE(msg.find("784 columns, the layer takes 785"), std::string::npos) << msg;
}

TEST(Sparse, AutoPicksSparseForInkSparseDataAndNarrowFirstLayers) {
  Rng rng(5);
  Dataset sparse_data, dense_data;
  sparse_data.images = random_images(50, kImagePixels, 0.2, rng);
  sparse_data.count = 50;
  dense_data.images = random_images(50, kImagePixels, 0.8, rng);
  dense_data.count = 50;
  EXPECT_TRUE(use_sparse_input(sparse_data, "auto", 128));
  EXPECT_FALSE(use_sparse_input(sparse_data, "auto", 1024));
  EXPECT_FALSE(use_sparse_input(dense_data, "auto", 128));
  // Half the pixels inked (Fashion-MNIST has 49%): sparse only when the split step trains.
  Dataset half_data;
  half_data.images = random_images(50, kImagePixels, 0.5, rng);
  half_data.count = 50;
  EXPECT_FALSE(use_sparse_input(half_data, "auto", 128));
  EXPECT_TRUE(use_sparse_input(half_data, "auto", 128, /*split=*/true));
  EXPECT_FALSE(use_sparse_input(half_data, "auto", 512, /*split=*/true));
  EXPECT_FALSE(use_sparse_input(dense_data, "auto", 128, /*split=*/true));
  EXPECT_TRUE(use_sparse_input(dense_data, "on", 1024));
  EXPECT_FALSE(use_sparse_input(sparse_data, "off", 128));
  try {
    use_sparse_input(sparse_data, "yes", 128);
    FAIL() << "expected UsageError";
  } catch (const UsageError& e) {
    EXPECT_THAT(e.what(), HasSubstr("--sparse-input"));
    EXPECT_THAT(e.what(), HasSubstr("auto, on or off"));
    EXPECT_THAT(e.what(), HasSubstr("'yes'"));
  }
}

}  // namespace
}  // namespace nanomlp
