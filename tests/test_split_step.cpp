// The split step (nanomlp/fast/split_step.hpp) against the one-thread trainer: which runs it
// takes, that moving weights and optimizer state into parts and back loses nothing, that its
// steps follow the serial ones (2 and 3 parts, widths that are not multiples of 16, a last
// batch of one row), how it cuts the pixels (the head, which also takes every row through the
// output layer, gets fewer), that it is deterministic, and how it stops on a NaN loss or a
// throwing callback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "nanomlp/app/training.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/fast/sparse_input.hpp"
#include "nanomlp/fast/split_step.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;
using testing::message_of;

// MNIST-like input: the blob digits on a black background.
Dataset inked(std::size_t count, std::uint64_t seed) {
  return testing::blob_digits(count, seed, /*noisy_background=*/false);
}

Architecture arch(std::size_t hidden) {
  Architecture a;
  a.hidden = {hidden};
  a.norm_mean = 0.13;  // a nonzero shift, as with --normalize
  a.norm_std = 0.31;
  return a;
}

// A split step for a network of `a`, trained with `config` (the step keeps neither).
SplitStep split_for(const Architecture& a, const OptimizerConfig& config, int parts,
                    const Dataset* ink_of = nullptr) {
  Network<float> net(a);
  return SplitStep(net, *make_optimizer(config), parts, ink_of);
}

std::vector<Matrix> weights(Network<float>& net) {
  std::vector<Matrix> w;
  for (auto& p : net.params()) w.push_back(*p.value);
  return w;
}

float max_abs_diff(const Matrix& a, const Matrix& b) {
  float m = 0.0f;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a.data()[i] - b.data()[i]));
  return m;
}

class SplitStepTest : public ::testing::Test {
 protected:
  void SetUp() override { kernels::set_num_threads(2); }
  void TearDown() override { kernels::set_num_threads(1); }
};

// The step the plan picks for a network, options and thread count (fast/plan.hpp).
std::string planned(const Architecture& a, const OptimizerConfig& optimizer, int threads,
                    const std::string& sparse_input = "on") {
  DataSplit data;
  data.train = inked(200, 1);
  data.test = inked(50, 2);
  Network<float> net(a);
  TrainOptions o;
  o.optimizer = optimizer;
  o.sparse_input = sparse_input;
  return plan_training(net, o, data, threads).description;
}

TEST_F(SplitStepTest, TakesOnlyOneHiddenLayerSparseRunsOnSeveralThreads) {
  OptimizerConfig sgd;
  const auto sgd_optimizer = make_optimizer(sgd);
  EXPECT_EQ(SplitStep::parts_for(784, 2), 2);
  EXPECT_EQ(SplitStep::parts_for(784, 64), 12);  // 784 pixels: 64 or more each
  EXPECT_EQ(SplitStep::parts_for(100, 2), 0);    // fewer than 2 x 64 pixels
  EXPECT_EQ(SplitStep::parts_for(784, 1), 0);
  Network<float> wide(arch(128)), narrow(arch(7));
  EXPECT_TRUE(SplitStep::computes(wide, *sgd_optimizer));
  EXPECT_TRUE(SplitStep::computes(narrow, *sgd_optimizer));  // any width
  EXPECT_THAT(planned(arch(128), sgd, 2), HasSubstr("split step on 2 threads, sparse input"));
  EXPECT_THAT(planned(arch(128), sgd, 64), HasSubstr("split step on 12 threads"));
  EXPECT_THAT(planned(arch(128), sgd, 1), HasSubstr("plain step (1 thread)"));
  EXPECT_THAT(planned(arch(128), sgd, 2, "off"),  // dense input
              HasSubstr("plain step (the split step needs sparse input), dense input"));
  // The built layers must be exactly Linear, activation, Linear.
  Architecture deep = arch(128);
  deep.hidden = {128, 64};
  Architecture bn = arch(128);
  bn.batch_norm = true;
  Architecture dropout = arch(128);
  dropout.dropout = 0.1;
  for (const Architecture& a : {deep, bn, dropout}) {
    Network<float> net(a);
    EXPECT_FALSE(SplitStep::computes(net, *sgd_optimizer)) << a.describe();
    EXPECT_THAT(planned(a, sgd, 2), HasSubstr("plain step (not Linear, activation, Linear)"));
  }
  // And the optimizer element-wise: a clipping norm needs every gradient at one place.
  OptimizerConfig clipped;
  clipped.clip_grad_norm = 1.0;
  EXPECT_FALSE(SplitStep::computes(wide, *make_optimizer(clipped)));
  EXPECT_THAT(planned(arch(128), clipped, 2), HasSubstr("the optimizer is not element-wise"));
  EXPECT_THROW(split_for(deep, sgd, 2), std::invalid_argument);
  EXPECT_THROW(SplitStep(wide, *make_optimizer(clipped), 2), std::invalid_argument);
  // Loading a network it does not compute is refused too.
  Network<float> deep_net(deep);
  SplitStep split = split_for(arch(128), sgd, 2);
  EXPECT_THROW(split.load(deep_net, *make_optimizer(sgd)), std::invalid_argument);
}

TEST_F(SplitStepTest, TheHeadTakesFewerPixelsToMakeUpForItsRows) {
  // 784-128-10 with 150 inked pixels per image (MNIST's mean is 149):
  // r = 128 (30 + 16) / (1.8 x 128 x 150 + 25 x 784) = 5888 / 54160 = 0.108715;
  // two parts: 1.108715 / 2 - r = 0.445642; three: 1.108715 / 3 - r = 0.260857.
  EXPECT_NEAR(SplitStep::head_share(arch(128), 150.0, 2), 0.445642, 1e-6);
  EXPECT_NEAR(SplitStep::head_share(arch(128), 150.0, 3), 0.260857, 1e-6);
  // With many parts the rows alone outweigh a part's share: the head gets no share (and the
  // cut then gives it the least number of pixels).
  EXPECT_EQ(SplitStep::head_share(arch(128), 150.0, 12), 0.0);
  // More ink, more pixel work: the rows weigh less and the head's share nears 1/2.
  EXPECT_GT(SplitStep::head_share(arch(128), 390.0, 2), 0.47);
}

TEST_F(SplitStepTest, CutsThePixelsIntoPartsOfEqualWork) {
  OptimizerConfig sgd;
  // Without images, every pixel weighs 1 and an image is taken to ink 784 / 5 of them:
  // 784-32-10: r = 32 x 46 / (1.8 x 32 x 156.8 + 19600) = 1472 / 28631.7 = 0.051411.
  // Two parts: the head's share is 0.474294, 371.85 pixels: the cut is at 372.
  EXPECT_EQ(split_for(arch(32), sgd, 2).pixel_cuts(), (std::vector<std::size_t>{0, 372, 784}));
  // Three: the head's share is 0.299059 (234.46: 235), the others' 0.350471 each
  // (234.46 + 274.77 = 509.23: 510).
  kernels::set_num_threads(3);
  EXPECT_EQ(split_for(arch(32), sgd, 3).pixel_cuts(), (std::vector<std::size_t>{0, 235, 510, 784}));
  // `images` images inked on their last `inked` pixels only: a pixel weighs 1, plus 1 for each
  // image that inks it.
  auto bottom_ink = [](std::size_t images, std::size_t inked) {
    Dataset d;
    d.count = images;
    d.images.assign(images * kImagePixels, 0);
    d.labels.assign(images, 0);
    for (std::size_t i = 0; i < images; ++i) {
      std::fill(d.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * kImagePixels - inked),
                d.images.begin() + static_cast<std::ptrdiff_t>((i + 1) * kImagePixels), 200);
    }
    return d;
  };
  kernels::set_num_threads(2);
  // 100 inked pixels per image: r = 1472 / (1.8 x 32 x 100 + 19600) = 0.058044, the head's
  // share 0.470978 of 684 x 1 + 100 x 11 = 1784, 840.22: reached 15 pixels into the ink
  // (684 + 15 x 11 = 849).
  const Dataset some = bottom_ink(10, 100);
  EXPECT_EQ(split_for(arch(32), sgd, 2, &some).pixel_cuts(),
            (std::vector<std::size_t>{0, 699, 784}));
  // The head's share (0.464534 of 764 + 20 x 101) is reached at pixel 770, but the last part
  // keeps at least 64 pixels.
  const Dataset heavy = bottom_ink(100, 20);
  EXPECT_EQ(split_for(arch(32), sgd, 2, &heavy).pixel_cuts(),
            (std::vector<std::size_t>{0, 720, 784}));
}

TEST_F(SplitStepTest, LoadThenStoreGivesBackWeightsAndOptimizerStateBitForBit) {
  for (const char* name : {"sgd", "adam", "rmsprop"}) {
    SCOPED_TRACE(name);
    OptimizerConfig config;
    config.name = name;
    config.momentum = 0.9;
    Network<float> net(arch(50));  // not a multiple of 16
    Rng rng(3);
    net.init(rng);
    for (auto& p : net.params()) {
      for (float& v : *p.value) v = static_cast<float>(rng.normal());
    }
    auto optimizer = make_optimizer(config);
    optimizer->prepare(net.params());
    for (auto& slot : optimizer->slots()) {
      for (float& v : *slot.value) v = static_cast<float>(rng.uniform());
    }
    optimizer->set_steps(17);
    const std::vector<Matrix> before = weights(net);
    std::vector<Matrix> state_before;
    for (auto& slot : optimizer->slots()) state_before.push_back(*slot.value);

    SplitStep split(net, *optimizer, 2);
    split.load(net, *optimizer);
    for (auto& p : net.params()) p.value->fill(0.0f);
    for (auto& slot : optimizer->slots()) slot.value->fill(0.0f);
    optimizer->set_steps(0);
    split.store(net, *optimizer);

    const std::vector<Matrix> after = weights(net);
    for (std::size_t i = 0; i < before.size(); ++i) EXPECT_EQ(max_abs_diff(before[i], after[i]), 0);
    const auto slots = optimizer->slots();
    ASSERT_EQ(slots.size(), state_before.size());
    for (std::size_t j = 0; j < slots.size(); ++j) {
      EXPECT_EQ(max_abs_diff(state_before[j], *slots[j].value), 0) << slots[j].name;
    }
    EXPECT_EQ(optimizer->steps(), 17);
  }
}

// One epoch through the split and through the serial step (Network + Optimizer on one
// thread), from the same weights: the losses and the weights agree up to float rounding (only
// the order of the sums over parts differs). Two and three parts (784 pixels cut 261, 261,
// 262; rows of 32 cut 10, 11, 11); the last batch has one row, so some parts have none.
TEST_F(SplitStepTest, StepsFollowTheSerialStep) {
  const Dataset data = inked(97, 5);  // batches of 32: the last has 1 row
  std::vector<std::uint32_t> idx(data.count);
  std::iota(idx.begin(), idx.end(), 0u);
  Rng shuffle(9);
  shuffle.shuffle(idx);
  struct Case {
    const char* optimizer;
    int parts;
  };
  for (const Case c : {Case{"sgd", 2}, Case{"adam", 2}, Case{"sgd", 3}}) {
    const char* name = c.optimizer;
    SCOPED_TRACE(std::string(name) + ", " + std::to_string(c.parts) + " parts");
    OptimizerConfig config;
    config.name = name;
    config.momentum = 0.9;
    config.nesterov = true;
    config.weight_decay = 1e-3;
    ScheduleConfig schedule;
    schedule.name = "cosine";
    schedule.base_lr = std::string(name) == "sgd" ? 0.05 : 0.002;
    schedule.total_steps = 8;
    const std::size_t B = 32, steps = 4;
    const float smoothing = 0.1f;

    Network<float> serial(arch(40));
    Rng rng(1);
    serial.init(rng);
    Network<float> parallel(serial.architecture());
    {
      auto src = serial.params(), dst = parallel.params();
      for (std::size_t i = 0; i < src.size(); ++i) *dst[i].value = *src[i].value;
    }

    // Serial: the plain step on one thread, over the same sparse input.
    kernels::set_num_threads(1);
    auto serial_opt = make_optimizer(config);
    SparseBatchPath batch(serial.architecture());
    Matrix dz;
    std::vector<std::uint8_t> labels(B);
    const auto params = serial.params();
    std::vector<double> serial_loss;
    for (std::size_t s = 0; s < steps; ++s) {
      const std::size_t N = std::min(B, data.count - s * B);
      batch.gather(data, idx.data() + s * B, N, labels.data());
      const double lr = learning_rate(schedule, static_cast<std::int64_t>(s));
      serial_loss.push_back(
          plain_step(serial, batch, labels.data(), smoothing, *serial_opt, params, lr, dz).loss);
    }

    // Split over the parts' threads.
    kernels::set_num_threads(c.parts);
    auto parallel_opt = make_optimizer(config);
    SplitStep split(parallel, *parallel_opt, c.parts);
    split.load(parallel, *parallel_opt);
    std::vector<double> split_loss;
    std::vector<std::size_t> rows;
    const SplitStep::Outcome out =
        split.run(data, idx.data(), data.count, B, schedule, 0, smoothing,
                  [&](std::size_t s, std::size_t n, double loss, std::size_t, double lr) {
                    EXPECT_EQ(s, split_loss.size());
                    EXPECT_DOUBLE_EQ(lr, learning_rate(schedule, static_cast<std::int64_t>(s)));
                    split_loss.push_back(loss);
                    rows.push_back(n);
                  });
    split.store(parallel, *parallel_opt);

    EXPECT_EQ(out.steps, steps);
    EXPECT_EQ(rows, (std::vector<std::size_t>{32, 32, 32, 1}));
    ASSERT_EQ(split_loss.size(), steps);
    for (std::size_t s = 0; s < steps; ++s) {
      EXPECT_NEAR(split_loss[s], serial_loss[s], 1e-4 * std::fabs(serial_loss[s])) << s;
    }
    const std::vector<Matrix> a = weights(serial), b = weights(parallel);
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_LT(max_abs_diff(a[i], b[i]), 2e-5) << i;
    EXPECT_EQ(parallel_opt->steps(), serial_opt->steps());
    const auto sa = serial_opt->slots(), sb = parallel_opt->slots();
    ASSERT_EQ(sa.size(), sb.size());
    for (std::size_t j = 0; j < sa.size(); ++j) {
      EXPECT_LT(max_abs_diff(*sa[j].value, *sb[j].value), 2e-5) << sa[j].name;
    }
  }
}

Network<float> trained(std::size_t epochs, int threads, double lr = 0.1) {
  kernels::set_num_threads(threads);
  DataSplit split;
  split.name = "inked";
  split.train = inked(300, 1);
  split.test = inked(100, 2);
  Network<float> net(arch(48));
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.seed = 4;
  o.sparse_input = "on";
  o.schedule.base_lr = lr;
  run_training(net, split, o);
  return net;
}

TEST_F(SplitStepTest, TrainingIsDeterministicAndCloseToOneThread) {
  Network<float> a = trained(2, 2), b = trained(2, 2), one = trained(2, 1);
  const std::vector<Matrix> wa = weights(a), wb = weights(b), w1 = weights(one);
  for (std::size_t i = 0; i < wa.size(); ++i) {
    EXPECT_EQ(max_abs_diff(wa[i], wb[i]), 0) << "two runs on two threads differ in tensor " << i;
    EXPECT_LT(max_abs_diff(wa[i], w1[i]), 1e-6) << i;  // float rounding: about 6e-8
  }
}

TEST_F(SplitStepTest, ANanLossStopsTrainingWithTheStepNamed) {
  const std::string msg = message_of<TrainingError>([] { trained(1, 2, 1e30); });
  EXPECT_THAT(msg, HasSubstr("training diverged at epoch 1, step "));
  EXPECT_THAT(msg, HasSubstr("try a lower learning rate"));
}

TEST_F(SplitStepTest, AThrowingCallbackEndsTheRunAfterItsStepAndLeavesThePoolUsable) {
  const Dataset data = inked(200, 7);
  std::vector<std::uint32_t> idx(data.count);
  std::iota(idx.begin(), idx.end(), 0u);
  Network<float> net(arch(32));
  Rng rng(2);
  net.init(rng);
  OptimizerConfig config;
  auto optimizer = make_optimizer(config);
  SplitStep split(net, *optimizer, 2);
  split.load(net, *optimizer);
  ScheduleConfig schedule;
  std::size_t calls = 0;
  EXPECT_THROW(split.run(data, idx.data(), data.count, 16, schedule, 0, 0.0f,
                         [&](std::size_t s, std::size_t, double, std::size_t, double) {
                           ++calls;
                           if (s == 2) throw std::runtime_error("callback failed");
                         }),
               std::runtime_error);
  EXPECT_EQ(calls, 3u);
  // Every part still completed step 2: the weights are those of a run of three steps.
  Network<float> three(arch(32));
  Rng same(2);
  three.init(same);
  auto three_optimizer = make_optimizer(config);
  SplitStep three_split(three, *three_optimizer, 2);
  three_split.load(three, *three_optimizer);
  EXPECT_EQ(three_split
                .run(data, idx.data(), 3 * 16, 16, schedule, 0, 0.0f,
                     [](std::size_t, std::size_t, double, std::size_t, double) {})
                .steps,
            3u);
  three_split.store(three, *three_optimizer);
  split.store(net, *optimizer);
  const std::vector<Matrix> got = weights(net), want = weights(three);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(max_abs_diff(got[i], want[i]), 0) << i;
  // Both threads left the job: the pool runs the next one, and so does the split.
  std::vector<int> ran(2, 0);
  ThreadPool::global().run(2, [&](int part) { ran[static_cast<std::size_t>(part)] = 1; });
  EXPECT_EQ(ran, (std::vector<int>{1, 1}));
  const SplitStep::Outcome out =
      split.run(data, idx.data(), data.count, 16, schedule, 0, 0.0f,
                [](std::size_t, std::size_t, double, std::size_t, double) {});
  EXPECT_EQ(out.steps, 13u);
}

TEST_F(SplitStepTest, RefusesToRunWithoutAThreadPerPart) {
  const Dataset data = inked(20, 7);
  std::vector<std::uint32_t> idx(data.count);
  std::iota(idx.begin(), idx.end(), 0u);
  OptimizerConfig config;
  SplitStep split = split_for(arch(32), config, 2);
  kernels::set_num_threads(1);
  EXPECT_THAT(message_of<std::logic_error>([&] {
                split.run(data, idx.data(), data.count, 16, ScheduleConfig{}, 0, 0.0f,
                          [](std::size_t, std::size_t, double, std::size_t, double) {});
              }),
              HasSubstr("2 parts need as many idle threads"));
}

}  // namespace
}  // namespace nanomlp
