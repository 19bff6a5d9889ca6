// The training loop on a small synthetic dataset built in memory: that it learns, that a seed
// fixes the model to the byte, validation and early stopping, checkpoints and exact resume,
// resume failures, divergence and label smoothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "nanomlp/app/training.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/fast/split_step.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/presets.hpp"
#include "nanomlp/train/trainer.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using testing::blob_digits;
using ::testing::HasSubstr;
using testing::message_of;
using ::testing::Not;
using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

const DataSplit& data() {
  static const DataSplit split = [] {
    DataSplit s;
    s.name = "synthetic";
    s.train = blob_digits(600, 1);
    s.test = blob_digits(200, 2);
    return s;
  }();
  return split;
}

// evaluate() as train() and `nanomlp eval` read the images (fast/plan.hpp's plan_input).
EvalResult evaluate_planned(Network<float>& net, const Dataset& set) {
  const auto input = plan_input(net.architecture(), set);
  return evaluate(net, set, nullptr, false, input.get());
}

Architecture arch(std::vector<std::size_t> hidden = {32}) {
  Architecture a;
  a.hidden = std::move(hidden);
  return a;
}

TrainOptions options(std::size_t epochs = 4) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.seed = 7;
  return o;
}

std::vector<unsigned char> model_bytes(Network<float>& net) {
  TempDir dir;
  save_model(dir.file("model.safetensors"), net);
  return read_bytes(dir.file("model.safetensors"));
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { kernels::set_num_threads(2); }
};

// --- Learning ------------------------------------------------------------------------------------

TEST_F(TrainerTest, DefaultSgdLearnsTheSyntheticData) {
  Network<float> net(arch());
  std::vector<EpochRecord> seen;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochRecord& r) { seen.push_back(r); };
  const TrainResult r = run_training(net, data(), options(4), cb);
  ASSERT_EQ(r.epochs.size(), 4u);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_GT(r.test.accuracy, 0.9);
  EXPECT_EQ(r.test.count, 200u);
  EXPECT_LT(r.epochs.back().train_loss, r.epochs.front().train_loss);
  for (std::size_t e = 0; e < 4; ++e) {
    EXPECT_EQ(r.epochs[e].epoch, e + 1);
    EXPECT_EQ(seen[e].epoch, e + 1);
    EXPECT_DOUBLE_EQ(r.epochs[e].lr, 0.1);
    // Without a validation split the test set is evaluated every epoch, and no val metrics.
    EXPECT_TRUE(r.epochs[e].test_accuracy.has_value());
    EXPECT_FALSE(r.epochs[e].val_accuracy.has_value());
  }
  // The last per-epoch test figure is the final evaluation.
  EXPECT_DOUBLE_EQ(*r.epochs.back().test_accuracy, r.test.accuracy);
  EXPECT_DOUBLE_EQ(evaluate_planned(net, data().test).accuracy, r.test.accuracy);
  EXPECT_FALSE(r.stopped_early);
  EXPECT_EQ(r.best_epoch, 0u);
  EXPECT_EQ(r.resumed_from_epoch, 0u);
}

// --- Determinism ---------------------------------------------------------------------------------

TEST_F(TrainerTest, SameSeedGivesByteIdenticalModelsAndAnotherSeedDoesNot) {
  auto run = [](std::uint64_t seed) {
    Network<float> net(arch());
    TrainOptions o = options(3);
    o.seed = seed;
    run_training(net, data(), o);
    return model_bytes(net);
  };
  const auto a = run(11), b = run(11), c = run(12);
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == b) << "same seed, different model files";
  EXPECT_TRUE(a != c) << "different seeds, same model file";
}

TEST_F(TrainerTest, SameSeedIsDeterministicWithBatchNormAndDropout) {
  Architecture a = arch();
  a.batch_norm = true;
  a.dropout = 0.2;
  auto run = [&](std::uint64_t seed) {
    Network<float> net(a);
    TrainOptions o = options(2);
    o.seed = seed;
    run_training(net, data(), o);
    return model_bytes(net);
  };
  const auto x = run(3), y = run(3), z = run(4);
  EXPECT_TRUE(x == y) << "same seed, different model files";
  EXPECT_TRUE(x != z) << "different seeds, same model file";
}

// --- Sparse input --------------------------------------------------------------------------------

TEST_F(TrainerTest, AutoReadsHalfInkedImagesSparseOnlyWhenTheSplitStepTrains) {
  // The synthetic digits on a black background, with every other pixel inked: about as dense
  // as Fashion-MNIST.
  DataSplit half = data();
  half.train = blob_digits(600, 1, /*noisy_background=*/false);
  std::size_t inked = 0;
  for (std::size_t j = 0; j < half.train.images.size(); ++j) {
    if (j % 2 == 0 && half.train.images[j] == 0) half.train.images[j] = 9;
    inked += half.train.images[j] != 0 ? 1 : 0;
  }
  const double density = static_cast<double>(inked) / static_cast<double>(half.train.images.size());
  ASSERT_GT(density, kSparseInputMaxDensity);
  ASSERT_LT(density, kSparseInputMaxDensitySplit);
  auto run = [&](const std::string& mode, std::vector<std::size_t> hidden) {
    Network<float> net(arch(std::move(hidden)));
    TrainOptions o = options(1);
    o.sparse_input = mode;
    run_training(net, half, o);
    return model_bytes(net);
  };
  // One hidden layer on two threads: the split step, so sparse (its rounding differs from the
  // dense path's, so the model files tell the paths apart).
  EXPECT_TRUE(run("auto", {32}) == run("on", {32}));
  EXPECT_TRUE(run("auto", {32}) != run("off", {32}));
  // Two hidden layers, or one thread: dense.
  EXPECT_TRUE(run("auto", {32, 16}) == run("off", {32, 16}));
  kernels::set_num_threads(1);
  EXPECT_TRUE(run("auto", {32}) == run("off", {32}));
  EXPECT_TRUE(run("auto", {32}) != run("on", {32}));
}

// --- Validation split and early stopping ---------------------------------------------------------

TEST_F(TrainerTest, ValidationSplitRecordsValMetricsAndTestOnlyWhenAsked) {
  Network<float> net(arch());
  TrainOptions o = options(3);
  o.val_split = 100;
  const TrainResult r = run_training(net, data(), o);
  ASSERT_EQ(r.epochs.size(), 3u);
  for (const auto& rec : r.epochs) {
    ASSERT_TRUE(rec.val_loss.has_value());
    ASSERT_TRUE(rec.val_accuracy.has_value());
    EXPECT_GE(*rec.val_accuracy, 0.0);
    EXPECT_LE(*rec.val_accuracy, 1.0);
    EXPECT_TRUE(std::isfinite(*rec.val_loss));
    EXPECT_FALSE(rec.test_loss.has_value());
    EXPECT_FALSE(rec.test_accuracy.has_value());
  }
  EXPECT_GT(*r.epochs.back().val_accuracy, 0.8);
  EXPECT_EQ(r.test.count, 200u);  // reported at the end all the same

  Network<float> every(arch());
  o.eval_test_every_epoch = true;
  const TrainResult e = run_training(every, data(), o);
  for (const auto& rec : e.epochs) {
    EXPECT_TRUE(rec.val_accuracy.has_value());
    EXPECT_TRUE(rec.test_accuracy.has_value());
    EXPECT_TRUE(rec.test_loss.has_value());
  }
  // Evaluating the test set does not disturb training.
  EXPECT_TRUE(model_bytes(net) == model_bytes(every));
  EXPECT_EQ(e.epochs.back().train_loss, r.epochs.back().train_loss);
}

TEST_F(TrainerTest, TestSetPerEpochCanBeTurnedOffWithoutValidationSplit) {
  Network<float> net(arch());
  TrainOptions o = options(2);
  o.eval_test_every_epoch = false;
  const TrainResult r = run_training(net, data(), o);
  for (const auto& rec : r.epochs) {
    EXPECT_FALSE(rec.test_accuracy.has_value());
    EXPECT_FALSE(rec.val_accuracy.has_value());
  }
  EXPECT_EQ(r.test.count, 200u);
}

TEST_F(TrainerTest, EarlyStoppingKeepsTheWeightsOfTheBestEpoch) {
  // Patience 1 over many epochs: as soon as validation accuracy fails to improve once, it
  // stops, keeping the best epoch's weights.
  TrainOptions o = options(30);
  o.val_split = 100;
  o.early_stop = 1;
  Network<float> net(arch());
  std::vector<std::string> messages;
  TrainCallbacks cb;
  cb.on_message = [&](const std::string& m) { messages.push_back(m); };
  const TrainResult r = run_training(net, data(), o, cb);
  ASSERT_TRUE(r.stopped_early);
  ASSERT_LT(r.epochs.size(), 30u);
  ASSERT_GE(r.best_epoch, 1u);
  // Patience 1: the run ends one epoch after the best.
  EXPECT_EQ(r.epochs.size(), r.best_epoch + 1);
  // The best epoch is the first with the highest validation accuracy.
  double best = -1;
  std::size_t best_epoch = 0;
  for (const auto& rec : r.epochs) {
    if (*rec.val_accuracy > best) {
      best = *rec.val_accuracy;
      best_epoch = rec.epoch;
    }
  }
  EXPECT_EQ(r.best_epoch, best_epoch);
  EXPECT_LE(*r.epochs.back().val_accuracy, best);
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.back(), HasSubstr("epoch " + std::to_string(r.best_epoch)));
  // The final test figure is that of the returned network.
  EXPECT_DOUBLE_EQ(evaluate_planned(net, data().test).accuracy, r.test.accuracy);

  // With a constant lr, training for best_epoch epochs without early stopping reaches the very
  // same weights: the returned network is the snapshot of the best epoch, to the byte.
  TrainOptions plain = o;
  plain.early_stop = 0;
  plain.epochs = r.best_epoch;
  Network<float> again(arch());
  const TrainResult p = run_training(again, data(), plain);
  EXPECT_TRUE(model_bytes(net) == model_bytes(again));
  EXPECT_EQ(p.test.accuracy, r.test.accuracy);
  EXPECT_EQ(*p.epochs.back().val_accuracy, best);
}

TEST(Presets, AreTheRecipesOfTheReadme) {
  const Preset seed = make_preset("seed");
  EXPECT_EQ(seed.arch.hidden, (std::vector<std::size_t>{128}));
  EXPECT_EQ(seed.options.schedule.base_lr, 0.1);
  EXPECT_EQ(seed.options.schedule.name, "constant");
  EXPECT_EQ(seed.options.optimizer.momentum, 0.0);
  EXPECT_EQ(seed.options.batch_size, 64u);
  EXPECT_EQ(seed.options.epochs, 10u);
  EXPECT_FALSE(seed.normalize);
  const Preset tuned = make_preset("");  // the default
  EXPECT_EQ(tuned.options.schedule.name, "cosine");
  EXPECT_EQ(tuned.options.schedule.base_lr, 0.05);
  EXPECT_TRUE(tuned.options.optimizer.nesterov);
  EXPECT_EQ(tuned.options.optimizer.weight_decay, 5e-4);
  EXPECT_EQ(tuned.warmup_epochs, 1.0);
  EXPECT_TRUE(tuned.normalize);
  const Preset best = make_preset("best");
  EXPECT_EQ(best.arch.hidden, (std::vector<std::size_t>{1024, 1024}));
  EXPECT_TRUE(best.arch.batch_norm);
  EXPECT_EQ(best.arch.dropout, 0.3);
  EXPECT_EQ(best.options.epochs, 30u);
  EXPECT_EQ(best.options.label_smoothing, 0.1);
  EXPECT_EQ(preset_names(), (std::vector<std::string>{"seed", "default", "best"}));
  EXPECT_THAT(message_of<UsageError>([] { make_preset("fast"); }),
              HasSubstr("--preset: expected one of seed, default, best, got 'fast'"));
  EXPECT_EQ(default_lr("adam"), 1e-3);
  EXPECT_EQ(default_lr("rmsprop"), 1e-2);
}

TEST_F(TrainerTest, EarlyStoppingWithoutValidationSplitIsAUsageError) {
  Network<float> net(arch());
  TrainOptions o = options(2);
  o.early_stop = 2;
  EXPECT_THAT(message_of<UsageError>([&] { run_training(net, data(), o); }),
              HasSubstr("--early-stop"));
}

// --- Checkpoints and resume ----------------------------------------------------------------------

struct Interrupted {};

std::vector<std::string> checkpoint_files(const TempDir& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(TrainerTest, ACheckpointFolderWithoutACheckpointWriterIsRefusedBeforeTraining) {
  // train() itself knows no files (io/checkpoint.hpp does): given a folder and no writer, it
  // refuses to start rather than train without the checkpoints asked for.
  TempDir dir;
  Network<float> net(arch());
  TrainOptions o = options(1);
  o.checkpoint_dir = dir.path().string();
  bool trained = false;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochRecord&) { trained = true; };
  EXPECT_THAT(message_of<std::invalid_argument>([&] { train(net, data(), o, cb); }),
              HasSubstr("a checkpoint folder needs a Checkpoints writer"));
  EXPECT_FALSE(trained);
  EXPECT_TRUE(checkpoint_files(dir).empty());
  run_training(net, data(), o);  // the command line's writer: one file per epoch
  EXPECT_EQ(checkpoint_files(dir).size(), 1u);
}

std::string checkpoint_name(std::size_t epoch) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoint-epoch-%04zu.safetensors", epoch);
  return buf;
}

// Run A uninterrupted; run B interrupted after the checkpoint of epoch interrupt_at - 1 (the
// checkpoint of an epoch is written after its on_epoch callback, so throwing from epoch
// interrupt_at's callback leaves the previous epoch's as the newest), then resumed in a fresh
// network. The models must be identical to the byte, and so must every record. Returns run A's
// result.
TrainResult expect_resume_is_exact(const Architecture& a, TrainOptions o,
                                   std::size_t interrupt_at = 3) {
  TempDir dir_a, dir_b;

  Network<float> net_a(a);
  o.checkpoint_dir = dir_a.path().string();
  const TrainResult ra = run_training(net_a, data(), o);
  const auto bytes_a = model_bytes(net_a);
  const std::size_t epochs_a = ra.epochs.size();
  std::vector<std::string> expected_files;
  for (std::size_t e = 1; e <= epochs_a; ++e) expected_files.push_back(checkpoint_name(e));
  EXPECT_EQ(checkpoint_files(dir_a), expected_files);
  EXPECT_LE(interrupt_at, epochs_a) << "the interruption must fall inside the run";

  o.checkpoint_dir = dir_b.path().string();
  {
    Network<float> net_b(a);
    TrainCallbacks cb;
    cb.on_epoch = [&](const EpochRecord& rec) {
      if (rec.epoch == interrupt_at) throw Interrupted{};
    };
    EXPECT_THROW(run_training(net_b, data(), o, cb), Interrupted);
  }
  const std::vector<std::string> before_resume(expected_files.begin(),
                                               expected_files.begin() + (interrupt_at - 1));
  EXPECT_EQ(checkpoint_files(dir_b), before_resume);

  Network<float> resumed(a);
  o.resume = true;
  std::vector<std::string> messages;
  std::vector<std::size_t> epochs_run, expected_run;
  for (std::size_t e = interrupt_at; e <= epochs_a; ++e) expected_run.push_back(e);
  TrainCallbacks cb;
  cb.on_message = [&](const std::string& m) { messages.push_back(m); };
  cb.on_epoch = [&](const EpochRecord& rec) { epochs_run.push_back(rec.epoch); };
  const TrainResult rb = run_training(resumed, data(), o, cb);
  EXPECT_EQ(rb.resumed_from_epoch, interrupt_at - 1);
  EXPECT_EQ(epochs_run, expected_run);
  EXPECT_FALSE(messages.empty());
  if (!messages.empty()) {
    EXPECT_THAT(messages.front(), HasSubstr(checkpoint_name(interrupt_at - 1)));
  }

  EXPECT_TRUE(model_bytes(resumed) == bytes_a) << "resumed run differs from the uninterrupted one";
  // Every epoch is in the records, with the same figures as the uninterrupted run.
  EXPECT_EQ(rb.epochs.size(), epochs_a);
  for (std::size_t e = 0; e < std::min(epochs_a, rb.epochs.size()); ++e) {
    EXPECT_EQ(rb.epochs[e].epoch, e + 1);
    EXPECT_EQ(rb.epochs[e].lr, ra.epochs[e].lr) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].train_loss, ra.epochs[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].train_accuracy, ra.epochs[e].train_accuracy) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].val_loss, ra.epochs[e].val_loss) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].val_accuracy, ra.epochs[e].val_accuracy) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].test_loss, ra.epochs[e].test_loss) << "epoch " << e + 1;
    EXPECT_EQ(rb.epochs[e].test_accuracy, ra.epochs[e].test_accuracy) << "epoch " << e + 1;
  }
  EXPECT_EQ(rb.test.accuracy, ra.test.accuracy);
  EXPECT_EQ(rb.test.loss, ra.test.loss);
  EXPECT_EQ(rb.stopped_early, ra.stopped_early);
  EXPECT_EQ(rb.best_epoch, ra.best_epoch);
  // The resumed run continued the folder with the remaining epochs.
  EXPECT_EQ(checkpoint_files(dir_b), expected_files);
  return ra;
}

TEST_F(TrainerTest, ResumeIsExactForPlainSgd) {
  expect_resume_is_exact(arch(), options());
}

TEST_F(TrainerTest, ResumeIsExactForSgdWithNesterovMomentum) {
  TrainOptions o = options();
  o.optimizer.momentum = 0.9;
  o.optimizer.nesterov = true;
  o.optimizer.clip_grad_norm = 1.0;
  o.schedule.name = "step";
  o.schedule.step_epochs = 3;
  expect_resume_is_exact(arch(), o);
}

TEST_F(TrainerTest, ResumeIsExactOnTheSplitStep) {
  // Sparse input, one hidden layer, two threads: the split step (nanomlp/fast/split_step.hpp)
  // trains, and its momentum buffers go through the checkpoints of the whole network and come back.
  TrainOptions o = options();
  o.sparse_input = "on";
  o.optimizer.momentum = 0.9;
  Network<float> net(arch());
  ASSERT_EQ(plan_training(net, o, data(), 2).description.rfind("split step on 2 threads", 0), 0u);
  expect_resume_is_exact(arch(), o);
}

TEST_F(TrainerTest, ResumeIsExactForAdamWithCosineWarmup) {
  TrainOptions o = options();
  o.optimizer.name = "adam";
  o.schedule.base_lr = 1e-3;
  o.schedule.name = "cosine";
  o.schedule.warmup_steps = 30;
  expect_resume_is_exact(arch(), o);
}

TEST_F(TrainerTest, ResumeIsExactForRmsPropWithOneCycle) {
  TrainOptions o = options();
  o.optimizer.name = "rmsprop";
  o.optimizer.momentum = 0.5;
  o.schedule.base_lr = 1e-3;
  o.schedule.name = "onecycle";
  expect_resume_is_exact(arch(), o);
}

TEST_F(TrainerTest, ResumeIsExactWithBatchNormAndDropout) {
  // Dropout's generator, AdamW's moments and batch norm's running statistics and
  // num_batches_tracked must all come back.
  Architecture a = arch({32, 16});
  a.batch_norm = true;
  a.dropout = 0.3;
  TrainOptions o = options();
  o.optimizer.name = "adamw";
  o.schedule.base_lr = 1e-3;
  expect_resume_is_exact(a, o);
}

TEST_F(TrainerTest, ResumeIsExactWithValidationAndEarlyStopping) {
  TrainOptions o = options(4);
  o.val_split = 100;
  o.early_stop = 3;
  o.eval_test_every_epoch = true;
  expect_resume_is_exact(arch(), o);
}

TEST_F(TrainerTest, ResumeBetweenTheBestEpochAndTheEarlyStopRestoresTheBestSnapshot) {
  // Find where a patience-2 run stops, then interrupt it after the best epoch and before the
  // stop: the kept weights then come only from the best-epoch snapshot in the checkpoint.
  TrainOptions o = options(30);
  o.val_split = 100;
  o.early_stop = 2;
  Network<float> probe(arch());
  const TrainResult r = run_training(probe, data(), o);
  ASSERT_TRUE(r.stopped_early);
  ASSERT_EQ(r.epochs.size(), r.best_epoch + 2);
  const TrainResult ra = expect_resume_is_exact(arch(), o, r.best_epoch + 2);
  EXPECT_TRUE(ra.stopped_early);
  EXPECT_EQ(ra.best_epoch, r.best_epoch);
}

TEST_F(TrainerTest, ResumingAFinishedRunTrainsNoMore) {
  TempDir dir;
  TrainOptions o = options(2);
  o.checkpoint_dir = dir.path().string();
  Network<float> first(arch());
  const TrainResult r = run_training(first, data(), o);
  o.resume = true;
  Network<float> again(arch());
  std::size_t epochs_run = 0;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochRecord&) { ++epochs_run; };
  const TrainResult rr = run_training(again, data(), o, cb);
  EXPECT_EQ(epochs_run, 0u);
  EXPECT_EQ(rr.resumed_from_epoch, 2u);
  EXPECT_EQ(rr.epochs.size(), 2u);
  EXPECT_EQ(rr.test.accuracy, r.test.accuracy);
  EXPECT_TRUE(model_bytes(again) == model_bytes(first));
}

TEST_F(TrainerTest, ResumingARunThatStoppedEarlyTrainsNoMore) {
  // A run that early stopping ended is finished: resuming it must not train past the stop
  // (which would also move the kept weights if the extra epoch happened to improve).
  TempDir dir;
  TrainOptions o = options(30);
  o.val_split = 100;
  o.early_stop = 1;
  o.checkpoint_dir = dir.path().string();
  Network<float> first(arch());
  const TrainResult r = run_training(first, data(), o);
  ASSERT_TRUE(r.stopped_early);
  o.resume = true;
  Network<float> again(arch());
  std::size_t epochs_run = 0;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochRecord&) { ++epochs_run; };
  const TrainResult rr = run_training(again, data(), o, cb);
  EXPECT_EQ(epochs_run, 0u);
  EXPECT_EQ(rr.epochs.size(), r.epochs.size());
  EXPECT_TRUE(rr.stopped_early);
  EXPECT_EQ(rr.best_epoch, r.best_epoch);
  EXPECT_TRUE(model_bytes(again) == model_bytes(first));
  EXPECT_EQ(checkpoint_files(dir).size(), r.epochs.size());
}

// --- Resume failures -----------------------------------------------------------------------------

// Trains two epochs into dir and returns the newest checkpoint's path.
// Reads a checkpoint, lets `edit` change it and writes it back (a well-formed file whose
// content is wrong).
void rewrite_checkpoint(const std::string& path, const std::function<void(SafeTensors&)>& edit) {
  SafeTensors st = read_safetensors_file(path);
  edit(st);
  write_safetensors_file(path, st);
}

std::string two_epochs_into(const TempDir& dir, const Architecture& a = arch()) {
  Network<float> net(a);
  TrainOptions o = options(2);
  o.checkpoint_dir = dir.path().string();
  run_training(net, data(), o);
  return dir.file("checkpoint-epoch-0002.safetensors");
}

TrainOptions resume_options(const TempDir& dir) {
  TrainOptions o = options(2);
  o.checkpoint_dir = dir.path().string();
  o.resume = true;
  return o;
}

TEST_F(TrainerTest, ResumeWithoutACheckpointIsAUsageErrorNamingTheFolder) {
  TempDir dir;
  Network<float> net(arch());
  const std::string msg =
      message_of<UsageError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr(dir.path().string()));
  EXPECT_THAT(msg, HasSubstr("no checkpoint"));
  // Stray files that merely look alike are not checkpoints.
  write_bytes(dir.file("checkpoint-epoch-0001.safetensors.tmp.123"), {1, 2, 3});
  write_bytes(dir.file("notes.txt"), {'h', 'i'});
  EXPECT_THROW(run_training(net, data(), resume_options(dir)), UsageError);
}

TEST_F(TrainerTest, ResumeWithoutCheckpointDirIsAUsageError) {
  Network<float> net(arch());
  TrainOptions o = options(2);
  o.resume = true;
  EXPECT_THAT(message_of<UsageError>([&] { run_training(net, data(), o); }),
              HasSubstr("--checkpoint-dir"));
}

TEST_F(TrainerTest, ResumeFromAGarbageCheckpointIsAModelFormatErrorNamingTheFile) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  std::filesystem::remove(dir.file(checkpoint_name(1)));  // no older one to fall back to
  std::vector<unsigned char> garbage(4096);
  for (std::size_t i = 0; i < garbage.size(); ++i) {
    garbage[i] = static_cast<unsigned char>(i * 37 + 11);
  }
  write_bytes(path, garbage);
  Network<float> net(arch());
  const std::string msg =
      message_of<ModelFormatError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr(path));
  // The corrupt file is left as it was for the user to inspect.
  EXPECT_EQ(read_bytes(path), garbage);
}

TEST_F(TrainerTest, ResumeFromATruncatedCheckpointIsAModelFormatErrorNamingTheFile) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  std::filesystem::remove(dir.file(checkpoint_name(1)));  // no older one to fall back to
  std::vector<unsigned char> bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 1000u);
  bytes.resize(bytes.size() / 2);
  write_bytes(path, bytes);
  Network<float> net(arch());
  const std::string msg =
      message_of<ModelFormatError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr(path));
}

// A power cut during the newest checkpoint's write (or any damage to it) falls back, with a
// warning, to the previous complete checkpoint, and the resumed model is still byte-identical
// to an uninterrupted run's.
TEST_F(TrainerTest, ResumeFromADamagedNewestCheckpointFallsBackToThePreviousOne) {
  TempDir dir_a, dir_b;
  TrainOptions o = options(3);
  Network<float> net_a(arch());
  o.checkpoint_dir = dir_a.path().string();
  run_training(net_a, data(), o);
  o.checkpoint_dir = dir_b.path().string();
  {
    Network<float> net_b(arch());
    run_training(net_b, data(), o);
  }
  const std::string newest = dir_b.file(checkpoint_name(3));
  std::vector<unsigned char> bytes = read_bytes(newest);
  bytes.resize(bytes.size() / 3);
  write_bytes(newest, bytes);

  o.resume = true;
  std::vector<std::string> messages;
  TrainCallbacks cb;
  cb.on_message = [&](const std::string& m) { messages.push_back(m); };
  Network<float> resumed(arch());
  const TrainResult r = run_training(resumed, data(), o, cb);
  EXPECT_EQ(r.resumed_from_epoch, 2u);
  EXPECT_TRUE(model_bytes(resumed) == model_bytes(net_a));
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.front(), HasSubstr("warning: " + newest));
  EXPECT_THAT(messages.front(), HasSubstr("resuming from the previous checkpoint, " +
                                          dir_b.file(checkpoint_name(2))));
}

// A checkpoint write killed before its rename leaves NAME.tmp.PID; the next run removes the ones
// whose process is gone (and keeps a live process's).
TEST_F(TrainerTest, LeftoverTemporaryFilesOfDeadProcessesAreRemovedAtStart) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  const std::string dead = path + ".tmp.999999999";  // above any Linux pid_max
  const std::string live = path + ".tmp." + std::to_string(::getppid());
  write_bytes(dead, std::vector<unsigned char>(100, 7));
  write_bytes(live, std::vector<unsigned char>(100, 7));
  std::vector<std::string> messages;
  TrainCallbacks cb;
  cb.on_message = [&](const std::string& m) { messages.push_back(m); };
  Network<float> net(arch());
  run_training(net, data(), resume_options(dir), cb);
  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(live));
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.front(), HasSubstr("removed " + dead));
}

TEST_F(TrainerTest, ACheckpointNameWhoseEpochDoesNotFitIsAUsageError) {
  TempDir dir;
  two_epochs_into(dir);
  const std::string odd = "checkpoint-epoch-99999999999999999999.safetensors";
  write_bytes(dir.file(odd), std::vector<unsigned char>(8, 0));
  Network<float> net(arch());
  const std::string msg =
      message_of<UsageError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr(odd));
  EXPECT_THAT(msg, HasSubstr("more than 9 digits"));
  EXPECT_THAT(msg, Not(HasSubstr("stol")));
}

// A checkpoint is a model file too: load_model takes its "model." tensors and architecture,
// and gives the network of that epoch, the very one the run went on from (here: the last, which
// the run also returns).
TEST_F(TrainerTest, LoadModelTakesACheckpointAsTheNetworkOfItsEpoch) {
  for (const bool batch_norm : {false, true}) {
    TempDir dir;
    Architecture a = arch({24, 12});
    a.batch_norm = batch_norm;
    Network<float> net(a);
    TrainOptions o = options(2);
    o.checkpoint_dir = dir.path().string();
    run_training(net, data(), o);
    Network<float> loaded = load_model(dir.file("checkpoint-epoch-0002.safetensors"));
    EXPECT_EQ(loaded.architecture().to_json(), a.to_json());
    EXPECT_EQ(model_bytes(loaded), model_bytes(net)) << "batch norm " << batch_norm;
    const SafeTensors first = read_safetensors_file(dir.file("checkpoint-epoch-0001.safetensors"));
    ASSERT_TRUE(is_checkpoint(first));
    Network<float> epoch1 = model_from_safetensors(first, "checkpoint-epoch-0001.safetensors");
    EXPECT_NE(model_bytes(epoch1), model_bytes(net)) << "epoch 1 loaded the weights of epoch 2";
  }
}

// A checkpoint whose model part is damaged is refused by load_model with the file, the tensor
// as the checkpoint names it, and what is wrong; so is one that lost its architecture.
TEST_F(TrainerTest, LoadModelRefusesACheckpointWithADamagedModel) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  const auto intact = read_bytes(path);
  rewrite_checkpoint(path, [](SafeTensors& st) {
    std::erase_if(st.tensors, [](const TensorEntry& t) { return t.name == "model.0.weight"; });
  });
  EXPECT_THAT(message_of<ModelFormatError>([&] { load_model(path); }),
              HasSubstr(path + ": tensor 'model.0.weight' required by the architecture "
                               "(784-32-10, relu) is missing"));
  write_bytes(path, intact);
  rewrite_checkpoint(path, [](SafeTensors& st) {
    const float one = 1.0f;
    st.tensors.push_back(TensorEntry::from_f32("model.9.weight", {1}, &one));
  });
  EXPECT_THAT(message_of<ModelFormatError>([&] { load_model(path); }),
              HasSubstr(path + ": unexpected tensor 'model.9.weight'"));
  write_bytes(path, intact);
  rewrite_checkpoint(path, [](SafeTensors& st) { st.metadata.erase("architecture"); });
  EXPECT_THAT(message_of<ModelFormatError>([&] { load_model(path); }),
              HasSubstr(path + ": corrupt checkpoint: __metadata__ has no 'architecture' entry"));
  write_bytes(path, std::vector<unsigned char>(intact.begin(), intact.begin() + 100));
  EXPECT_THAT(message_of<ModelFormatError>([&] { load_model(path); }), HasSubstr(path));
}

TEST_F(TrainerTest, ResumeFromAModelFileIsAModelFormatError) {
  // A model file saved where a checkpoint should be: valid safetensors, wrong format.
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  Network<float> model(arch());
  save_model(path, model);
  Network<float> net(arch());
  const std::string msg =
      message_of<ModelFormatError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("not a nanomlp checkpoint"));
}

std::string resume_error(const TempDir& dir, const Architecture& a, TrainOptions o) {
  o.checkpoint_dir = dir.path().string();
  o.resume = true;
  Network<float> net(a);
  return message_of<ModelFormatError>([&] { run_training(net, data(), o); });
}

TEST_F(TrainerTest, ResumeFromACheckpointWithInconsistentContentIsAModelFormatError) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  const auto intact = read_bytes(path);
  auto expect_rejected = [&](const std::function<void(SafeTensors&)>& edit,
                             const std::string& what) {
    write_bytes(path, intact);
    rewrite_checkpoint(path, edit);
    const std::string msg = resume_error(dir, arch(), options(2));
    EXPECT_THAT(msg, HasSubstr(path)) << what;
    EXPECT_THAT(msg, HasSubstr(what));
  };
  expect_rejected([](SafeTensors& st) { st.metadata["checkpoint_version"] = "1"; },
                  "checkpoint version");
  expect_rejected([](SafeTensors& st) { st.metadata.erase("shuffle_rng"); }, "shuffle_rng");
  expect_rejected([](SafeTensors& st) { st.metadata["shuffle_rng"] = "xyz"; }, "generator");
  expect_rejected([](SafeTensors& st) { st.metadata["epoch"] = "two"; }, "corrupt");
  expect_rejected([](SafeTensors& st) { st.metadata["records"] = "[{]"; }, "corrupt");
  expect_rejected(
      [](SafeTensors& st) {
        std::erase_if(st.tensors, [](const TensorEntry& t) { return t.name == "model.0.bias"; });
      },
      "0.bias");
}

TEST_F(TrainerTest, ResumeWithACorruptBestSnapshotIsAModelFormatError) {
  // Batch norm has a num_batches_tracked counter per hidden layer; the best-epoch snapshot
  // records them. A checkpoint whose list has the wrong length must be refused, not indexed
  // past its end when the best weights are restored.
  Architecture a = arch();
  a.batch_norm = true;
  TempDir dir;
  TrainOptions o = options(2);
  o.val_split = 100;
  o.early_stop = 5;
  o.checkpoint_dir = dir.path().string();
  {
    Network<float> net(a);
    run_training(net, data(), o);
  }
  const std::string path = dir.file("checkpoint-epoch-0002.safetensors");
  const auto intact = read_bytes(path);
  rewrite_checkpoint(path, [](SafeTensors& st) { st.metadata["best_counters"] = "[]"; });
  std::string msg = resume_error(dir, a, o);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("best_counters"));
  write_bytes(path, intact);
  rewrite_checkpoint(path, [](SafeTensors& st) { st.metadata["best_count"] = "3"; });
  msg = resume_error(dir, a, o);
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_THAT(msg, HasSubstr("best"));
  // Intact, it resumes (the run is complete: nothing more to train).
  write_bytes(path, intact);
  o.resume = true;
  Network<float> net(a);
  EXPECT_EQ(run_training(net, data(), o).resumed_from_epoch, 2u);
}

TEST_F(TrainerTest, ResumeWithADifferentArchitectureIsAUsageError) {
  TempDir dir;
  const std::string path = two_epochs_into(dir, arch({32}));
  const auto before = read_bytes(path);
  Network<float> net(arch({16}));
  const std::string msg =
      message_of<UsageError>([&] { run_training(net, data(), resume_options(dir)); });
  EXPECT_THAT(msg, HasSubstr("different architecture"));
  EXPECT_THAT(msg, HasSubstr(path));
  EXPECT_EQ(read_bytes(path), before);
}

TEST_F(TrainerTest, ResumeWithDifferentTrainingSettingsIsAUsageError) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  Network<float> net(arch());
  TrainOptions o = resume_options(dir);
  o.schedule.base_lr = 0.05;
  const std::string msg = message_of<UsageError>([&] { run_training(net, data(), o); });
  EXPECT_THAT(msg, HasSubstr("different training settings"));
  EXPECT_THAT(msg, HasSubstr(path));
  // It names the field that differs, with both values, and not the ones that match.
  EXPECT_THAT(msg, HasSubstr("(checkpoint -> this run: lr "));
  EXPECT_THAT(msg, HasSubstr(" -> 0.05)"));
  EXPECT_THAT(msg, Not(HasSubstr("batch_size")));
  // Fewer epochs than the checkpoint has is a difference too.
  TrainOptions fewer = resume_options(dir);
  fewer.epochs = 1;
  EXPECT_THAT(message_of<UsageError>([&] { run_training(net, data(), fewer); }),
              HasSubstr("epochs 2 -> 1"));
}

// Only --epochs changed, and grew: the run (here a finished one) goes on to the new length.
TEST_F(TrainerTest, AFinishedRunCanBeExtendedWithMoreEpochs) {
  TempDir dir;
  two_epochs_into(dir);
  TrainOptions o = resume_options(dir);
  o.epochs = 4;
  std::vector<std::string> messages;
  TrainCallbacks cb;
  cb.on_message = [&](const std::string& m) { messages.push_back(m); };
  Network<float> net(arch());
  const TrainResult r = run_training(net, data(), o, cb);
  EXPECT_EQ(r.resumed_from_epoch, 2u);
  EXPECT_EQ(r.epochs.size(), 4u);
  EXPECT_TRUE(std::filesystem::exists(dir.file(checkpoint_name(4))));
  ASSERT_FALSE(messages.empty());
  EXPECT_THAT(messages.front(), HasSubstr("extending the run from 2 to 4 epochs"));
}

TEST_F(TrainerTest, ResumeWithADifferentScheduleSettingIsAUsageError) {
  // Every setting that changes the weights must match, the schedule's shape included
  // (--min-lr, --gamma, --step-epochs); otherwise the resumed run silently mixes two runs.
  const std::vector<std::pair<std::string, std::function<void(TrainOptions&)>>> changes{
      {"min_lr", [](TrainOptions& o) { o.schedule.min_lr = 0.01; }},
      {"gamma", [](TrainOptions& o) { o.schedule.gamma = 0.5; }},
      {"step_epochs", [](TrainOptions& o) { o.schedule.step_epochs = 1; }},
  };
  for (const auto& [what, change] : changes) {
    TempDir dir;
    TrainOptions o = options(2);
    o.schedule.name = what == "min_lr" ? "cosine" : "step";
    o.checkpoint_dir = dir.path().string();
    {
      Network<float> net(arch());
      run_training(net, data(), o);
    }
    o.resume = true;
    change(o);
    Network<float> net(arch());
    EXPECT_THAT(message_of<UsageError>([&] { run_training(net, data(), o); }),
                HasSubstr("different training settings"))
        << what;
  }
}

TEST_F(TrainerTest, NewRunIntoAFolderWithCheckpointsFailsAndOverwritesNothing) {
  TempDir dir;
  const std::string path = two_epochs_into(dir);
  const auto before = read_bytes(path);
  const auto first_before = read_bytes(dir.file("checkpoint-epoch-0001.safetensors"));
  Network<float> net(arch());
  TrainOptions o = options(2);
  o.checkpoint_dir = dir.path().string();
  bool trained = false;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochRecord&) { trained = true; };
  const std::string msg = message_of<UsageError>([&] { run_training(net, data(), o, cb); });
  EXPECT_THAT(msg, HasSubstr(dir.path().string()));
  EXPECT_THAT(msg, HasSubstr("--resume"));
  EXPECT_FALSE(trained);
  // An existing checkpoint is never overwritten by a failed start.
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(read_bytes(dir.file("checkpoint-epoch-0001.safetensors")), first_before);
  EXPECT_EQ(checkpoint_files(dir).size(), 2u);
}

TEST_F(TrainerTest, CheckpointDirIsCreatedWhenMissing) {
  TempDir dir;
  Network<float> net(arch());
  TrainOptions o = options(1);
  o.checkpoint_dir = dir.file("a/b");
  run_training(net, data(), o);
  EXPECT_TRUE(std::filesystem::exists(dir.file("a/b/checkpoint-epoch-0001.safetensors")));
}

// --- Divergence and label smoothing --------------------------------------------------------------

TEST_F(TrainerTest, DivergenceIsATrainingErrorNamingEpochAndStep) {
  Network<float> net(arch());
  TrainOptions o = options(3);
  o.schedule.base_lr = 1e8;
  const std::string msg = message_of<TrainingError>([&] { run_training(net, data(), o); });
  EXPECT_THAT(msg, ::testing::ContainsRegex("epoch [0-9]+, step [0-9]+"));
  EXPECT_THAT(msg, HasSubstr("lower learning rate"));
  EXPECT_THAT(msg, ::testing::AnyOf(HasSubstr("NaN"), HasSubstr("infinite")));
}

TEST_F(TrainerTest, LabelSmoothingTrainsWithAHigherTrainLoss) {
  Network<float> plain_net(arch()), smooth_net(arch());
  TrainOptions o = options(4);
  const TrainResult plain = run_training(plain_net, data(), o);
  o.label_smoothing = 0.1;
  const TrainResult smooth = run_training(smooth_net, data(), o);
  EXPECT_GT(smooth.test.accuracy, 0.9);
  // Smoothed targets keep the loss above their entropy (about 0.5 for eps 0.1, K 10).
  EXPECT_GT(smooth.epochs.back().train_loss, plain.epochs.back().train_loss);
  EXPECT_GT(smooth.epochs.back().train_loss, 0.5);
}

}  // namespace
}  // namespace nanomlp
