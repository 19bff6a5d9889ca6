// Finite-difference gradient checks in double precision (central differences, h = 1e-6, so
// the truncation error is O(h^2) ~ 1e-12 and the check can demand ~1e-7 relative agreement).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "nanomlp/core/rng.hpp"
#include "nanomlp/nn/layers.hpp"

namespace nanomlp::testing {

template <typename T>
void fill_random(Mat<T>& m, Rng& rng, double scale = 1.0) {
  for (T& v : m) v = static_cast<T>((rng.uniform() * 2.0 - 1.0) * scale);
}

// |a - b| / max(1, |a|, |b|): relative for large values, absolute near zero.
inline double rel_error(double a, double b) {
  return std::abs(a - b) / std::max({1.0, std::abs(a), std::abs(b)});
}

// Compares d(loss)/d(value[i]) from `analytic` with central differences of `loss`.
inline void expect_gradient_matches(const std::function<double()>& loss, Mat<double>& value,
                                    const Mat<double>& analytic, const std::string& what,
                                    double tol = 1e-7) {
  ASSERT_EQ(value.size(), analytic.size()) << what;
  const double h = 1e-6;
  double worst = 0.0;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const double saved = value.data()[i];
    value.data()[i] = saved + h;
    const double up = loss();
    value.data()[i] = saved - h;
    const double down = loss();
    value.data()[i] = saved;
    const double numeric = (up - down) / (2 * h);
    const double err = rel_error(numeric, analytic.data()[i]);
    worst = std::max(worst, err);
    ASSERT_LT(err, tol) << what << "[" << i << "]: numeric " << numeric << " analytic "
                        << analytic.data()[i];
  }
  ::testing::Test::RecordProperty(what + "_max_rel_error", std::to_string(worst));
}

// Checks a layer's backward against finite differences of L = sum(R * layer(x)), R random,
// for the input and every parameter. `before_forward` runs before each forward (e.g. to reset
// the dropout generator so that every evaluation sees the same mask).
inline void check_layer(
    Layer<double>& layer, std::size_t N, std::size_t D, bool training, std::uint64_t seed = 1,
    const std::function<void()>& before_forward = [] {}) {
  Rng rng(seed);
  Mat<double> x(N, D);
  fill_random(x, rng);
  Mat<double> y;
  before_forward();
  layer.forward(x, y, training);
  Mat<double> R(y.rows(), y.cols());
  fill_random(R, rng);
  auto loss = [&] {
    Mat<double> out;
    before_forward();
    layer.forward(x, out, training);
    double s = 0;
    for (std::size_t i = 0; i < out.size(); ++i) s += R.data()[i] * out.data()[i];
    return s;
  };
  // Analytic gradients at x.
  before_forward();
  layer.forward(x, y, training);
  Mat<double> dx;
  layer.backward(R, &dx);
  std::vector<Mat<double>> grads;
  for (auto& p : layer.params()) grads.push_back(*p.grad);
  const Mat<double> dx_copy = dx;
  expect_gradient_matches(loss, x, dx_copy, std::string(layer.type()) + " dx");
  std::size_t i = 0;
  for (auto& p : layer.params()) {
    expect_gradient_matches(loss, *p.value, grads[i++], std::string(layer.type()) + " " + p.name);
  }
}

}  // namespace nanomlp::testing
