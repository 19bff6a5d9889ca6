// The whole network: a hand-computed forward of a tiny net, a finite-difference check of every
// parameter through the loss, and model-file round trips.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "gradcheck.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::HasSubstr;

Architecture tiny_arch() {
  Architecture a;
  a.input_dim = 2;
  a.hidden = {2};
  a.num_classes = 2;
  return a;
}

Network<float> trained_like_network(const Architecture& arch) {
  Network<float> net(arch);
  Rng rng(9);
  net.init(rng);
  for (auto& p : net.params()) {
    for (float& v : *p.value) v += static_cast<float>(rng.uniform() - 0.5) * 0.1f;
  }
  return net;
}

TEST(Network, HandComputedForwardOfTinyNetwork) {
  // x = (1, 2); PyTorch's (out, in) W1 = [[1, -1], [0.5, 0.5]], b1 = (2, 0)
  //   -> pre = (1, 1.5) -> h = (1, 1.5);
  // W2 = [[1, 0], [-1, 2]], b2 = (0.5, 0) -> z = (1.5, 2).
  // p = softmax(z); loss for label 1 = log(1 + e^{-0.5}).
  Network<double> net(tiny_arch());
  auto params = net.params();
  ASSERT_EQ(params.size(), 4u);
  EXPECT_EQ(params[0].name, "0.weight");
  EXPECT_EQ(params[2].name, "2.weight");
  // Stored (in, out): the transposes of PyTorch's W1 and W2 above.
  const double w1[] = {1, 0.5, -1, 0.5}, b1[] = {2, 0}, w2[] = {1, -1, 0, 2}, b2[] = {0.5, 0};
  std::copy(w1, w1 + 4, params[0].value->data());
  std::copy(b1, b1 + 2, params[1].value->data());
  std::copy(w2, w2 + 4, params[2].value->data());
  std::copy(b2, b2 + 2, params[3].value->data());
  Mat<double> x(1, 2);
  x(0, 0) = 1;
  x(0, 1) = 2;
  const Mat<double>& z = net.forward(x, false);
  EXPECT_DOUBLE_EQ(z(0, 0), 1.5);
  EXPECT_DOUBLE_EQ(z(0, 1), 2.0);
  const std::uint8_t label = 1;
  const double loss =
      kernels::softmax_cross_entropy<double>(z.data(), &label, 1, 2, 0.0, nullptr, nullptr);
  EXPECT_NEAR(loss, std::log(1 + std::exp(-0.5)), 1e-15);
}

void check_network_gradients(const Architecture& arch) {
  Network<double> net(arch);
  Rng rng(5);
  net.init(rng);
  for (auto& p : net.params()) testing::fill_random(*p.value, rng, 0.5);
  const std::size_t N = 5;
  Mat<double> x(N, arch.input_dim);
  testing::fill_random(x, rng);
  std::vector<std::uint8_t> labels(N);
  for (std::size_t i = 0; i < N; ++i) labels[i] = static_cast<std::uint8_t>(i % arch.num_classes);
  const std::size_t K = arch.num_classes;
  auto loss = [&] {
    const Mat<double>& z = net.forward(x, true);
    return kernels::softmax_cross_entropy<double>(z.data(), labels.data(), N, K, 0.0, nullptr,
                                                  nullptr) /
           static_cast<double>(N);
  };
  const Mat<double>& z = net.forward(x, true);
  Mat<double> dz(N, K);
  kernels::softmax_cross_entropy<double>(z.data(), labels.data(), N, K, 0.0, dz.data(), nullptr);
  net.backward(dz);
  std::vector<Mat<double>> grads;
  for (auto& p : net.params()) grads.push_back(*p.grad);
  std::size_t i = 0;
  for (auto& p : net.params()) testing::expect_gradient_matches(loss, *p.value, grads[i++], p.name);
}

TEST(Network, GradientCheckOfEveryParameter) {
  Architecture a;
  a.input_dim = 6;
  a.hidden = {5, 4};
  a.num_classes = 3;
  for (const char* act : {"relu", "leaky_relu", "tanh", "gelu"}) {
    SCOPED_TRACE(act);
    a.activation = act;
    check_network_gradients(a);
  }
}

TEST(Network, GradientCheckWithBatchNormAndDropout) {
  Architecture a;
  a.input_dim = 6;
  a.hidden = {5, 4};
  a.num_classes = 3;
  a.batch_norm = true;
  check_network_gradients(a);  // dropout needs a fixed mask: see Dropout.GradientCheck
}

TEST(Network, SequentialIndicesLeaveRoomForBatchNormAndDropout) {
  Architecture a;
  a.hidden = {32, 16};
  a.batch_norm = true;
  a.dropout = 0.2;
  Network<float> net(a);
  // 0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Dropout, 4 Linear, 5 BatchNorm1d, 6 ReLU, 7 Dropout,
  // 8 Linear: as nn.Sequential numbers them.
  std::vector<std::string> names;
  for (const auto& p : net.params()) names.push_back(p.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias", "4.weight",
                                      "4.bias", "5.weight", "5.bias", "8.weight", "8.bias"}));
  const SafeTensors st = model_to_safetensors(net);
  const TensorEntry* counter = st.find("1.num_batches_tracked");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->dtype, "I64");
  EXPECT_TRUE(counter->shape.empty());
  ASSERT_NE(st.find("5.running_var"), nullptr);
}

TEST(Network, BuildsAndListsTheModulesOfArchitectureLayers) {
  Architecture a;
  a.hidden = {32, 16};
  a.activation = "leaky_relu";
  a.batch_norm = true;
  a.dropout = 0.25;
  Network<float> net(a);
  // The layers built and the model file's nn.Sequential both follow Architecture::layers().
  std::vector<std::string> types;
  for (const auto& layer : net.layers()) types.emplace_back(layer->type());
  EXPECT_EQ(types,
            (std::vector<std::string>{"Linear", "BatchNorm1d", "LeakyReLU", "Dropout", "Linear",
                                      "BatchNorm1d", "LeakyReLU", "Dropout", "Linear"}));
  ASSERT_EQ(a.layers().size(), types.size());
  EXPECT_EQ(a.layers()[4].in, 32u);
  EXPECT_EQ(a.layers()[4].out, 16u);
  const auto modules = nlohmann::json::parse(a.to_json())["modules"];
  EXPECT_EQ(modules, nlohmann::json({"Linear(784, 32)", "BatchNorm1d(32)", "LeakyReLU(0.01)",
                                     "Dropout(0.250000)", "Linear(32, 16)", "BatchNorm1d(16)",
                                     "LeakyReLU(0.01)", "Dropout(0.250000)", "Linear(16, 10)"}));
}

TEST(ModelIo, LinearWeightIsPyTorchsOutByInInTheFile) {
  Architecture a;
  a.hidden = {3};
  Network<float> net(a);
  Rng rng(4);
  net.init(rng);
  const Matrix& W = *net.params()[0].value;  // (D, H) = (784, 3)
  ASSERT_EQ(W.rows(), 784u);
  ASSERT_EQ(W.cols(), 3u);
  const SafeTensors st = model_to_safetensors(net);
  const TensorEntry* t = st.find("0.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<std::int64_t>{3, 784}));
  const std::vector<float> v = t->to_f32();
  for (std::size_t h = 0; h < 3; ++h) {
    for (std::size_t d = 0; d < 784; d += 97) EXPECT_EQ(v[h * 784 + d], W(d, h)) << h << "," << d;
  }
  // And back: the reloaded layer computes the same logits.
  Network<float> back = model_from_safetensors(st, "test");
  Matrix x(2, 784);
  for (float& e : x) e = static_cast<float>(rng.uniform());
  const Matrix z1 = net.forward(x, false);
  const Matrix& z2 = back.forward(x, false);
  for (std::size_t i = 0; i < z1.size(); ++i) EXPECT_EQ(z1.data()[i], z2.data()[i]);
}

TEST(Network, EvaluationIsDeterministicWithDropoutAndBatchNorm) {
  Architecture a;
  a.hidden = {32};
  a.batch_norm = true;
  a.dropout = 0.5;
  Network<float> net(a);
  Rng rng(2);
  net.init(rng);
  net.set_rng(&rng);
  Matrix x(8, 784);
  for (float& v : x) v = static_cast<float>(rng.uniform());
  net.forward(x, true);  // moves the running statistics once
  const Matrix e1 = net.forward(x, false);
  const Matrix e2 = net.forward(x, false);
  const Matrix t1 = net.forward(x, true);
  const Matrix t2 = net.forward(x, true);
  bool train_differs = false;
  for (std::size_t i = 0; i < e1.size(); ++i) {
    EXPECT_EQ(e1.data()[i], e2.data()[i]);
    train_differs |= t1.data()[i] != t2.data()[i];
  }
  EXPECT_TRUE(train_differs) << "dropout should draw a new mask on every training forward";
}

// Inference is batch-invariant for every layer kind: a row's logits are bit-identical alone and
// in a batch of 300 (the property predict and serve rely on), and agree with the GEMM forward.
TEST(Network, InferenceGivesEveryRowTheSameBitsWhateverTheBatch) {
  for (const std::string& activation : activation_names()) {
    Architecture a;
    a.hidden = {70, 33};
    a.activation = activation;
    a.batch_norm = activation == "relu";
    a.dropout = activation == "tanh" ? 0.3 : 0.0;
    Network<float> net = trained_like_network(a);
    Rng rng(5);
    net.set_rng(&rng);
    Matrix x(300, 784);
    for (float& v : x) v = static_cast<float>(rng.uniform() * 3.0 - 0.5);
    if (a.batch_norm) net.forward(x, true);  // running statistics away from (0, 1)
    const Matrix batch = net.infer(x);
    const Matrix reference = net.forward(x, false);
    Matrix one(1, 784);
    for (std::size_t i : {std::size_t{0}, std::size_t{137}, std::size_t{299}}) {
      std::copy(x.row(i), x.row(i) + 784, one.row(0));
      const Matrix alone = net.infer(one);
      for (std::size_t k = 0; k < 10; ++k) {
        ASSERT_EQ(alone(0, k), batch(i, k)) << activation << ", row " << i << ", class " << k;
        ASSERT_NEAR(batch(i, k), reference(i, k), 1e-4) << activation << ", row " << i;
      }
    }
  }
}

TEST(ModelIo, BatchNormNetworkReloadsWithIdenticalPredictions) {
  testing::TempDir dir;
  Architecture a;
  a.hidden = {24, 12};
  a.batch_norm = true;
  a.dropout = 0.25;
  a.activation = "tanh";
  Network<float> net = trained_like_network(a);
  Rng rng(3);
  net.set_rng(&rng);
  Matrix x(9, 784);
  for (float& v : x) v = static_cast<float>(rng.uniform());
  for (int i = 0; i < 3; ++i) net.forward(x, true);  // non-trivial running statistics
  save_model(dir.file("bn.safetensors"), net);
  Network<float> loaded = load_model(dir.file("bn.safetensors"));
  const Matrix z1 = net.forward(x, false);
  const Matrix z2 = loaded.forward(x, false);
  for (std::size_t i = 0; i < z1.size(); ++i) EXPECT_EQ(z1.data()[i], z2.data()[i]);
  auto* bn = dynamic_cast<BatchNorm<float>*>(loaded.layers()[1].get());
  ASSERT_NE(bn, nullptr);
  EXPECT_EQ(bn->num_batches_tracked_, 3);
}

TEST(Network, HeInitHasTheRightScale) {
  Architecture a;
  a.hidden = {256};
  Network<float> net(a);
  Rng rng(0);
  net.init(rng);
  const Matrix& W = *net.params()[0].value;  // (256, 784)
  double sq = 0;
  for (float w : W) sq += static_cast<double>(w) * w;
  const double var = sq / static_cast<double>(W.size());
  EXPECT_NEAR(var, 2.0 / 784.0, 0.05 * 2.0 / 784.0);
  for (float b : *net.params()[1].value) EXPECT_EQ(b, 0.0f);
}

TEST(ModelIo, RoundTripGivesIdenticalPredictions) {
  testing::TempDir dir;
  Architecture a;
  a.hidden = {32, 16};
  a.activation = "gelu";
  Network<float> net = trained_like_network(a);
  const std::string path = dir.file("m.safetensors");
  save_model(path, net);
  Network<float> loaded = load_model(path);
  EXPECT_EQ(loaded.architecture().to_json(), a.to_json());
  Rng rng(1);
  Matrix x(17, 784);
  for (float& v : x) v = static_cast<float>(rng.uniform());
  const Matrix z1 = net.forward(x, false);
  const Matrix z2 = loaded.forward(x, false);
  ASSERT_EQ(z1.size(), z2.size());
  for (std::size_t i = 0; i < z1.size(); ++i) EXPECT_EQ(z1.data()[i], z2.data()[i]);
  // Saving the loaded network again gives the same bytes.
  save_model(dir.file("again.safetensors"), loaded);
  EXPECT_EQ(testing::read_bytes(path), testing::read_bytes(dir.file("again.safetensors")));
}

TEST(ModelIo, UsesPyTorchSequentialNamesAndShapes) {
  Architecture a;
  a.hidden = {128};
  Network<float> net(a);
  const SafeTensors st = model_to_safetensors(net);
  ASSERT_EQ(st.tensors.size(), 4u);
  EXPECT_EQ(st.tensors[0].name, "0.weight");
  EXPECT_EQ(st.tensors[0].shape, (std::vector<std::int64_t>{128, 784}));
  EXPECT_EQ(st.tensors[1].name, "0.bias");
  EXPECT_EQ(st.tensors[1].shape, (std::vector<std::int64_t>{128}));
  EXPECT_EQ(st.tensors[2].name, "2.weight");
  EXPECT_EQ(st.tensors[2].shape, (std::vector<std::int64_t>{10, 128}));
  EXPECT_EQ(st.tensors[3].name, "2.bias");
  EXPECT_EQ(st.metadata.at("format_version"), "2");
  EXPECT_THAT(st.metadata.at("architecture"), HasSubstr("\"hidden\":[128]"));
}

// Format version 2 stores a batch-norm layer as PyTorch's BatchNorm1d state dict does: weight,
// bias, running_mean and running_var [H], num_batches_tracked an I64 scalar.
TEST(ModelIo, BatchNormTensorsHavePyTorchsShapes) {
  Architecture a;
  a.hidden = {5};
  a.batch_norm = true;
  Network<float> net(a);
  const SafeTensors st = model_to_safetensors(net);
  EXPECT_EQ(st.metadata.at("format_version"), "2");
  for (const char* name : {"1.weight", "1.bias", "1.running_mean", "1.running_var"}) {
    const TensorEntry* t = st.find(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->dtype, "F32") << name;
    EXPECT_EQ(t->shape, (std::vector<std::int64_t>{5})) << name;
  }
  const TensorEntry* n = st.find("1.num_batches_tracked");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->dtype, "I64");
  EXPECT_TRUE(n->shape.empty());
}

// A file of format version 1, written here in that version's layout (a batch-norm weight
// [1, H]), still loads, each value where it belongs.
TEST(ModelIo, VersionOneBatchNormFileLoadsWithItsValues) {
  testing::TempDir dir;
  Architecture a = tiny_arch();  // 2-3-2 with batch norm: Linear 0, BatchNorm1d 1, Linear 3
  a.hidden = {3};
  a.batch_norm = true;
  const std::vector<float> w0 = {1, 2, 3, 4, 5, 6};  // (3, 2) as PyTorch's (out, in)
  const std::vector<float> b0 = {0.5f, -0.5f, 0.25f};
  const std::vector<float> gamma = {1.5f, 0.75f, -2};
  const std::vector<float> beta = {0.125f, 0.0625f, -1};
  const std::vector<float> mean = {0.3f, -0.2f, 0.1f};
  const std::vector<float> var = {2, 0.5f, 4};
  const std::int64_t batches = 7;
  const std::vector<float> w3 = {-1, 0.5f, 2, 3, -0.25f, 1};  // (2, 3)
  const std::vector<float> b3 = {0.01f, -0.02f};
  SafeTensors v1;
  v1.metadata = {{"format", "nanomlp"}, {"format_version", "1"}, {"architecture", a.to_json()}};
  v1.tensors = {TensorEntry::from_f32("0.weight", {3, 2}, w0.data()),
                TensorEntry::from_f32("0.bias", {3}, b0.data()),
                TensorEntry::from_f32("1.weight", {1, 3}, gamma.data()),
                TensorEntry::from_f32("1.bias", {3}, beta.data()),
                TensorEntry::from_f32("1.running_mean", {3}, mean.data()),
                TensorEntry::from_f32("1.running_var", {3}, var.data()),
                TensorEntry::from_i64("1.num_batches_tracked", {}, &batches),
                TensorEntry::from_f32("3.weight", {2, 3}, w3.data()),
                TensorEntry::from_f32("3.bias", {2}, b3.data())};
  const std::string path = dir.file("v1.safetensors");
  write_safetensors_file(path, v1);

  Network<float> net = load_model(path);
  auto* first = dynamic_cast<Dense<float>*>(net.layers()[0].get());
  auto* bn = dynamic_cast<BatchNorm<float>*>(net.layers()[1].get());
  auto* last = dynamic_cast<Dense<float>*>(net.layers()[3].get());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(bn, nullptr);
  ASSERT_NE(last, nullptr);
  for (std::size_t h = 0; h < 3; ++h) {
    EXPECT_EQ(first->W_(0, h), w0[h * 2]) << h;  // (in, out) in memory
    EXPECT_EQ(first->W_(1, h), w0[h * 2 + 1]) << h;
    EXPECT_EQ(first->b_(0, h), b0[h]) << h;
    EXPECT_EQ(bn->gamma_(0, h), gamma[h]) << h;
    EXPECT_EQ(bn->beta_(0, h), beta[h]) << h;
    EXPECT_EQ(bn->running_mean_(0, h), mean[h]) << h;
    EXPECT_EQ(bn->running_var_(0, h), var[h]) << h;
    for (std::size_t k = 0; k < 2; ++k) EXPECT_EQ(last->W_(h, k), w3[k * 3 + h]) << h << k;
  }
  EXPECT_EQ(last->b_(0, 1), b3[1]);
  EXPECT_EQ(bn->num_batches_tracked_, 7);

  // Written again it is a version 2 file, the batch-norm weight [3], the values unchanged.
  const SafeTensors v2 = model_to_safetensors(net);
  EXPECT_EQ(v2.metadata.at("format_version"), "2");
  ASSERT_NE(v2.find("1.weight"), nullptr);
  EXPECT_EQ(v2.find("1.weight")->shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(v2.find("1.weight")->to_f32(), gamma);

  // Each version's layout under the other's number is refused, naming the expected shape.
  SafeTensors mislabelled = v1;
  mislabelled.metadata["format_version"] = "2";
  EXPECT_THAT(testing::message_of<ModelFormatError>(
                  [&] { model_from_safetensors(mislabelled, "m.safetensors"); }),
              HasSubstr("m.safetensors: tensor '1.weight' should be F32 [3]"));
  SafeTensors v2_as_v1 = v2;
  v2_as_v1.metadata["format_version"] = "1";
  EXPECT_THAT(testing::message_of<ModelFormatError>(
                  [&] { model_from_safetensors(v2_as_v1, "m.safetensors"); }),
              HasSubstr("m.safetensors: tensor '1.weight' should be F32 [1, 3]"));
}

// Without batch norm the two versions lay a network out alike: a version 2 file differs from
// version 1 in the version string only, and read as version 1 gives the same network.
TEST(ModelIo, NetworkWithoutBatchNormHasTheSameBytesInBothVersions) {
  Architecture a;
  a.hidden = {6, 4};
  a.activation = "tanh";
  Network<float> net = trained_like_network(a);
  const SafeTensors v2 = model_to_safetensors(net);
  SafeTensors v1 = v2;
  v1.metadata["format_version"] = "1";
  const std::vector<std::uint8_t> b1 = serialize_safetensors(v1);
  const std::vector<std::uint8_t> b2 = serialize_safetensors(v2);
  ASSERT_EQ(b1.size(), b2.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < b1.size(); ++i) differing += b1[i] != b2[i];
  EXPECT_EQ(differing, 1u);  // the digit of "format_version"
  Network<float> back = model_from_safetensors(v1, "v1.safetensors");
  EXPECT_EQ(serialize_safetensors(model_to_safetensors(back)), b2);
}

TEST(ModelIo, ShapeThatContradictsTheArchitectureIsRejected) {
  Architecture a;
  a.hidden = {8};
  Network<float> net(a);
  SafeTensors st = model_to_safetensors(net);
  st.metadata["architecture"] = [&] {
    Architecture b = a;
    b.hidden = {9};
    return b.to_json();
  }();
  try {
    model_from_safetensors(st, "bad.safetensors");
    FAIL() << "expected ModelFormatError";
  } catch (const ModelFormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr("bad.safetensors"));
    EXPECT_THAT(e.what(), HasSubstr("0.weight"));
    EXPECT_THAT(e.what(), HasSubstr("[9, 784]"));
    EXPECT_THAT(e.what(), HasSubstr("[8, 784]"));
  }
}

TEST(ModelIo, MissingTensorUnexpectedTensorAndBadMetadataAreRejected) {
  Architecture a;
  a.hidden = {8};
  Network<float> net(a);
  const SafeTensors good = model_to_safetensors(net);

  SafeTensors missing = good;
  missing.tensors.pop_back();
  EXPECT_THROW(
      {
        try {
          model_from_safetensors(missing, "m.safetensors");
        } catch (const ModelFormatError& e) {
          EXPECT_THAT(e.what(), HasSubstr("'2.bias'"));
          EXPECT_THAT(e.what(), HasSubstr("missing"));
          throw;
        }
      },
      ModelFormatError);

  SafeTensors extra = good;
  const float one = 1.0f;
  extra.tensors.push_back(TensorEntry::from_f32("9.weight", {1}, &one));
  EXPECT_THROW(model_from_safetensors(extra, "m.safetensors"), ModelFormatError);

  SafeTensors no_meta = good;
  no_meta.metadata.erase("architecture");
  EXPECT_THROW(model_from_safetensors(no_meta, "m.safetensors"), ModelFormatError);

  SafeTensors future = good;
  future.metadata["format_version"] = "99";
  try {
    model_from_safetensors(future, "m.safetensors");
    FAIL();
  } catch (const ModelFormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr("version 99"));
  }

  SafeTensors garbage_arch = good;
  garbage_arch.metadata["architecture"] = "{not json";
  EXPECT_THROW(model_from_safetensors(garbage_arch, "m.safetensors"), ModelFormatError);

  SafeTensors nan = good;
  const std::vector<float> bad(10, std::nanf(""));
  nan.tensors[3] = TensorEntry::from_f32("2.bias", {10}, bad.data());
  EXPECT_THROW(model_from_safetensors(nan, "m.safetensors"), ModelFormatError);
}

// A 184-byte file with no tensors whose architecture claims a million hidden units used to
// build the whole network (6.2 GB, 40 s) before noticing the missing tensor. The architecture is
// now checked against the tensors first: nothing is allocated.
TEST(ModelIo, ArchitectureIsCheckedAgainstTheTensorsBeforeAnythingIsBuilt) {
  Architecture a;
  a.hidden = {1000000};
  SafeTensors st;
  st.metadata = {{"format", "nanomlp"}, {"format_version", "1"}, {"architecture", a.to_json()}};
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  const std::string msg =
      testing::message_of<ModelFormatError>([&] { model_from_safetensors(st, "big.safetensors"); });
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  EXPECT_THAT(msg, HasSubstr("big.safetensors: tensor '0.weight' required by the architecture "
                             "(784-1000000-10, relu) is missing"));
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 100 * 1024) << "KiB grown while refusing";

  // A file whose numbers overflow a double names the file, not the JSON library.
  st.metadata["architecture"] = R"({"input_dim":784,"hidden":[1e309],"num_classes":10})";
  EXPECT_THAT(
      testing::message_of<ModelFormatError>([&] { model_from_safetensors(st, "m.safetensors"); }),
      HasSubstr("m.safetensors: invalid architecture in __metadata__: number overflow"));
}

TEST(ModelIo, TruncatedAndCorruptFilesAreRejectedWithTheFileName) {
  testing::TempDir dir;
  Architecture a;
  a.hidden = {8};
  Network<float> net(a);
  const std::string path = dir.file("m.safetensors");
  save_model(path, net);
  auto bytes = testing::read_bytes(path);

  auto truncated = bytes;
  truncated.resize(bytes.size() / 2);
  testing::write_bytes(dir.file("t.safetensors"), truncated);
  try {
    load_model(dir.file("t.safetensors"));
    FAIL();
  } catch (const ModelFormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr("t.safetensors"));
  }

  auto corrupt = bytes;
  for (std::size_t i = 8; i < 20; ++i) corrupt[i] = '#';
  testing::write_bytes(dir.file("c.safetensors"), corrupt);
  try {
    load_model(dir.file("c.safetensors"));
    FAIL();
  } catch (const ModelFormatError& e) {
    EXPECT_THAT(e.what(), HasSubstr("c.safetensors"));
  }
  EXPECT_THROW(load_model(dir.file("absent.safetensors")), IoError);
}

}  // namespace
}  // namespace nanomlp
