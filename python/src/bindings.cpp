// nanomlp._nanomlp: the library's Network, optimizers and plain_step behind a small class that
// the Python estimator (python/nanomlp/) drives. The library's train() reads a Dataset of
// 28x28 uint8 images with labels below 10, so the fit loop is here instead: any (N, D) matrix
// of float32 or uint8 features, any number of classes up to 256 (the labels of plain_step are
// uint8). Every array is read in place when it is C-contiguous; the GIL is released while the
// library computes, and nanomlp's thread pool does the parallel work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"
#include "nanomlp/train/step.hpp"

namespace py = pybind11;

namespace nanomlp {
namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

// Features (N, D) as float32 or uint8, whichever the caller passed: no conversion copy.
struct Features {
  const float* f32 = nullptr;
  const std::uint8_t* u8 = nullptr;
  std::size_t rows = 0, cols = 0;
};

Features features_of(const py::array& x) {
  if (x.ndim() != 2) throw py::value_error("expected a 2-D array of features");
  if (!(x.flags() & py::array::c_style)) throw py::value_error("expected a C-contiguous array");
  Features f;
  f.rows = static_cast<std::size_t>(x.shape(0));
  f.cols = static_cast<std::size_t>(x.shape(1));
  if (py::isinstance<py::array_t<float>>(x)) {
    f.f32 = static_cast<const float*>(x.data());
  } else if (py::isinstance<py::array_t<std::uint8_t>>(x)) {
    f.u8 = static_cast<const std::uint8_t*>(x.data());
  } else {
    throw py::type_error("expected float32 or uint8 features");
  }
  return f;
}

// The library's thread pool takes one job at a time, and a Model is not for two threads at
// once: every call that releases the GIL to compute holds this lock, so that Python threads
// (joblib's threading backend, a user's) take turns instead of corrupting a job.
std::mutex& compute_mutex() {
  static std::mutex m;
  return m;
}

// A network being trained: its Architecture, weights, optimizer and generator.
class Model {
 public:
  Model(Architecture arch, std::uint64_t seed, const std::string& init)
      : net_(arch), rng_(seed), batch_(arch) {
    net_.init(rng_, init);
    net_.set_rng(&rng_);
    cache_scale();
  }
  explicit Model(Network<float> net) : net_(std::move(net)), rng_(0), batch_(net_.architecture()) {
    net_.set_rng(&rng_);
    cache_scale();
  }

  void set_optimizer(const OptimizerConfig& config) {
    optimizer_config_ = config;
    optimizer_ = make_optimizer(config);
    images_.reset();  // a plan holds the optimizer's settings
  }
  std::int64_t optimizer_steps() const { return optimizer_ ? optimizer_->steps() : 0; }
  bool has_optimizer() const { return optimizer_ != nullptr; }

  // One pass over the rows order[0..n) in batches of B at the schedule's rates. Returns the
  // summed loss and the hits.
  std::pair<double, std::size_t> run_epoch(const Features& x, const std::uint8_t* y,
                                           const std::uint32_t* order, std::size_t n, std::size_t B,
                                           const Epoch& rates);

  // MNIST-shaped data (uint8 (N, 784), 10 classes) copied into a Dataset once, so that the
  // epochs run through the library's fast paths (fast/plan.hpp): the sparse first layer and
  // the split step, as the CLI trains.
  void prepare_images(const Features& x, const std::uint8_t* y, std::size_t B);
  bool has_images() const { return images_ != nullptr; }
  void drop_images() { images_.reset(); }
  std::pair<double, std::size_t> run_image_epoch(const std::uint32_t* order, std::size_t n,
                                                 std::size_t B, const Epoch& rates);

  // Probabilities (N, K) into out, in chunks that bound the activations' memory.
  void predict_proba(const Features& x, float* out);

  Network<float>& net() { return net_; }

 private:
  void cache_scale() {
    scale_ = net_.architecture().input_scale();
    shift_ = net_.architecture().input_shift();
  }
  // Rows idx[0..N) of x into m (N, D) as scale * x + shift.
  void gather(const Features& x, const std::uint32_t* idx, std::size_t N, Matrix& m) const;

  Network<float> net_;
  Rng rng_;
  DenseBatchPath batch_;
  std::unique_ptr<Optimizer> optimizer_;
  OptimizerConfig optimizer_config_;
  // The MNIST-shaped training set and the plan's runner over it (prepare_images).
  struct Images {
    DataSplit split;
    TrainMethod method;
  };
  std::unique_ptr<Images> images_;
  float scale_ = 1.0f, shift_ = 0.0f;
  Matrix dz_;                         // (B, K)
  std::vector<std::uint8_t> labels_;  // (B)
  std::vector<std::uint32_t> rows_;   // (chunk) row indices for prediction
};

void Model::gather(const Features& x, const std::uint32_t* idx, std::size_t N, Matrix& m) const {
  const std::size_t D = x.cols;
  m.resize(N, D);
  const bool identity = scale_ == 1.0f && shift_ == 0.0f;
  for (std::size_t i = 0; i < N; ++i) {
    const std::size_t r = idx[i];
    if (x.u8 != nullptr) {
      kernels::u8_to_float(x.u8 + r * D, m.row(i), D, scale_, shift_);
    } else if (identity) {
      std::memcpy(m.row(i), x.f32 + r * D, D * sizeof(float));
    } else {
      const float* src = x.f32 + r * D;
      float* dst = m.row(i);
      for (std::size_t j = 0; j < D; ++j) dst[j] = scale_ * src[j] + shift_;
    }
  }
}

std::pair<double, std::size_t> Model::run_epoch(const Features& x, const std::uint8_t* y,
                                                const std::uint32_t* order, std::size_t n,
                                                std::size_t B, const Epoch& rates) {
  if (!optimizer_) throw UsageError("set_optimizer() must come before training");
  const std::vector<Param<float>> params = net_.params();
  if (labels_.size() < B) labels_.resize(B);
  double loss = 0;
  std::size_t hits = 0;
  std::int64_t step = rates.first_step;
  for (std::size_t start = 0; start < n; start += B, ++step) {
    const std::size_t nb = std::min(B, n - start);
    if (net_.architecture().batch_norm && nb < 2) continue;  // batch statistics need two rows
    gather(x, order + start, nb, batch_.input());
    for (std::size_t i = 0; i < nb; ++i) labels_[i] = y[order[start + i]];
    const double lr = learning_rate(*rates.schedule, step);
    const StepResult r = plain_step(net_, batch_, labels_.data(), rates.label_smoothing,
                                    *optimizer_, params, lr, dz_);
    loss += r.loss;
    hits += r.hits;
    if (!std::isfinite(r.loss)) break;  // diverged: the caller reports it
  }
  return {loss, hits};
}

void Model::prepare_images(const Features& x, const std::uint8_t* y, std::size_t B) {
  if (!optimizer_) throw UsageError("set_optimizer() must come before training");
  auto images = std::make_unique<Images>();
  Dataset& d = images->split.train;
  d.count = x.rows;
  d.images.assign(x.u8, x.u8 + x.rows * kImagePixels);
  d.labels.assign(y, y + x.rows);
  TrainOptions options;
  options.batch_size = B;
  options.optimizer = optimizer_config_;
  images->method = plan_training(net_, options, images->split, ThreadPool::global().max_parts());
  if (!images->method.runner) {
    images->method.runner =
        std::make_unique<PlainEpochRunner>(std::make_unique<DenseBatchPath>(net_.architecture()));
  }
  images_ = std::move(images);
}

std::pair<double, std::size_t> Model::run_image_epoch(const std::uint32_t* order, std::size_t n,
                                                      std::size_t B, const Epoch& rates) {
  Epoch epoch = rates;
  epoch.data = &images_->split.train;
  epoch.order = order;
  epoch.n = n;
  epoch.batch_size = B;
  double loss = 0;
  std::size_t hits = 0;
  const EpochOutcome outcome = images_->method.runner->run_epoch(
      net_, *optimizer_, epoch,
      [&](std::size_t, std::size_t, double batch_loss, std::size_t batch_hits, double) {
        loss += batch_loss;
        hits += batch_hits;
      });
  if (outcome.diverged) loss = outcome.bad_loss;
  return {loss, hits};
}

void Model::predict_proba(const Features& x, float* out) {
  constexpr std::size_t kChunk = 4096;
  const std::size_t K = net_.architecture().num_classes;
  Matrix m;  // (chunk, D)
  for (std::size_t start = 0; start < x.rows; start += kChunk) {
    const std::size_t nb = std::min(kChunk, x.rows - start);
    rows_.resize(nb);
    for (std::size_t i = 0; i < nb; ++i) rows_[i] = static_cast<std::uint32_t>(start + i);
    gather(x, rows_.data(), nb, m);
    const Matrix& z = net_.forward(m, /*training=*/false);  // (nb, K)
    kernels::softmax_rows(z.data(), out + start * K, nb, K);
  }
}

Architecture make_architecture(std::size_t input_dim, std::vector<std::size_t> hidden,
                               std::size_t num_classes, std::string activation, bool batch_norm,
                               double dropout, double norm_std, std::string dataset) {
  Architecture a;
  a.input_dim = input_dim;
  a.hidden = std::move(hidden);
  a.num_classes = num_classes;
  a.activation = std::move(activation);
  a.batch_norm = batch_norm;
  a.dropout = dropout;
  a.norm_std = norm_std;
  a.dataset = std::move(dataset);
  a.validate();
  return a;
}

// The learning rates of one epoch: the library's schedule from its first step.
struct Rates {
  ScheduleConfig schedule;
  Epoch epoch;
};

Rates make_rates(const std::string& name, double base_lr, std::int64_t total_steps,
                 std::int64_t steps_per_epoch, std::int64_t first_step, float label_smoothing) {
  Rates r;
  r.schedule.name = name;
  r.schedule.base_lr = base_lr;
  r.schedule.total_steps = total_steps;
  r.schedule.steps_per_epoch = steps_per_epoch;
  validate_schedule(r.schedule);
  r.epoch.first_step = first_step;
  r.epoch.label_smoothing = label_smoothing;
  return r;
}

const std::uint32_t* checked_order(const CArray<std::uint32_t>& order, std::size_t rows,
                                   std::size_t batch_size) {
  if (batch_size == 0) throw py::value_error("batch_size must be positive");
  const std::uint32_t* idx = order.data();
  for (py::ssize_t i = 0; i < order.size(); ++i) {
    if (idx[i] >= rows) throw py::value_error("fit_epoch: row index out of range");
  }
  return idx;
}

py::tuple fit_epoch(Model& m, const py::array& x, const CArray<std::uint8_t>& y,
                    const CArray<std::uint32_t>& order, std::size_t batch_size,
                    const std::string& schedule, double base_lr, std::int64_t total_steps,
                    std::int64_t first_step, float label_smoothing) {
  const Features f = features_of(x);
  if (f.cols != m.net().architecture().input_dim) throw py::value_error("wrong feature count");
  if (static_cast<std::size_t>(y.size()) != f.rows) throw py::value_error("X and y differ");
  const std::uint32_t* idx = checked_order(order, f.rows, batch_size);
  const auto n = static_cast<std::size_t>(order.size());
  const auto steps = static_cast<std::int64_t>((n + batch_size - 1) / batch_size);
  Rates rates = make_rates(schedule, base_lr, total_steps, steps, first_step, label_smoothing);
  rates.epoch.schedule = &rates.schedule;
  std::pair<double, std::size_t> r;
  {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(compute_mutex());
    r = m.has_images() ? m.run_image_epoch(idx, n, batch_size, rates.epoch)
                       : m.run_epoch(f, y.data(), idx, n, batch_size, rates.epoch);
  }
  return py::make_tuple(r.first, r.second);
}

// Whether the fast paths of MNIST-shaped data train the next epochs: then the model keeps a
// copy of x and y, which the following fit_epoch calls read instead of theirs.
bool prepare_images(Model& m, const py::array& x, const CArray<std::uint8_t>& y,
                    std::size_t batch_size) {
  const Features f = features_of(x);
  const Architecture& arch = m.net().architecture();
  py::gil_scoped_release release;
  const std::lock_guard<std::mutex> lock(compute_mutex());
  m.drop_images();
  if (f.u8 == nullptr || f.cols != kImagePixels || arch.input_dim != kImagePixels ||
      arch.num_classes != kNumClasses || static_cast<std::size_t>(y.size()) != f.rows) {
    return false;
  }
  m.prepare_images(f, y.data(), batch_size);
  return true;
}

CArray<float> predict_proba(Model& m, const py::array& x) {
  const Features f = features_of(x);
  if (f.cols != m.net().architecture().input_dim) throw py::value_error("wrong feature count");
  const std::size_t K = m.net().architecture().num_classes;
  CArray<float> out({f.rows, K});
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(compute_mutex());
    m.predict_proba(f, dst);
  }
  return out;
}

// (W (in, out), b (out)) of every Linear layer, copied: the layout of sklearn's coefs_.
py::list linear_params(Model& m) {
  py::list out;
  for (auto& layer : m.net().layers()) {
    auto* dense = dynamic_cast<Dense<float>*>(layer.get());
    if (dense == nullptr) continue;
    CArray<float> W({dense->W_.rows(), dense->W_.cols()});
    std::copy(dense->W_.begin(), dense->W_.end(), W.mutable_data());
    CArray<float> b(static_cast<py::ssize_t>(dense->b_.size()));
    std::copy(dense->b_.begin(), dense->b_.end(), b.mutable_data());
    out.append(py::make_tuple(W, b));
  }
  return out;
}

py::bytes to_bytes(Model& m) {
  const std::vector<std::uint8_t> bytes = serialize_safetensors(model_to_safetensors(m.net()));
  return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::unique_ptr<Model> from_bytes(const py::bytes& data, const std::string& source) {
  const std::string s = data;
  const std::vector<std::uint8_t> bytes(s.begin(), s.end());
  return std::make_unique<Model>(model_from_safetensors(parse_safetensors(bytes, source), source));
}

// The model of a file with its __metadata__ (where save() keeps the estimator's classes).
py::tuple load_file(const std::string& path) {
  const SafeTensors st = read_safetensors_file(path);
  auto model = std::make_unique<Model>(model_from_safetensors(st, path));
  return py::make_tuple(std::move(model), st.metadata);
}

// A split of an IDX data set as NumPy arrays: images (count, 784) uint8, labels (count) uint8.
py::tuple split_arrays(const Dataset& d) {
  CArray<std::uint8_t> images({d.count, kImagePixels});
  std::copy(d.images.begin(), d.images.end(), images.mutable_data());
  CArray<std::uint8_t> labels(static_cast<py::ssize_t>(d.count));
  std::copy(d.labels.begin(), d.labels.end(), labels.mutable_data());
  return py::make_tuple(images, labels);
}

py::tuple load_split(const std::string& root, const std::string& name) {
  DataSplit split;
  {
    py::gil_scoped_release release;
    split = load_dataset(root, name);
  }
  return py::make_tuple(split_arrays(split.train), split_arrays(split.test));
}

OptimizerConfig optimizer_config(const std::string& name, double momentum, bool nesterov,
                                 double beta1, double beta2, double eps, double weight_decay) {
  OptimizerConfig c;
  c.name = name;
  c.momentum = momentum;
  c.nesterov = nesterov;
  c.beta1 = beta1;
  c.beta2 = beta2;
  c.eps = eps;
  c.weight_decay = weight_decay;
  return c;
}

double schedule_rate(const std::string& name, double base_lr, std::int64_t total_steps,
                     std::int64_t steps_per_epoch, std::int64_t step) {
  ScheduleConfig s;
  s.name = name;
  s.base_lr = base_lr;
  s.total_steps = total_steps;
  s.steps_per_epoch = steps_per_epoch;
  validate_schedule(s);
  return learning_rate(s, step);
}

void bind_model(py::module_& m) {
  py::class_<Model>(m, "Model")
      .def(py::init([](std::size_t input_dim, std::vector<std::size_t> hidden,
                       std::size_t num_classes, std::string activation, bool batch_norm,
                       double dropout, double norm_std, std::string dataset, std::uint64_t seed,
                       const std::string& init) {
             return std::make_unique<Model>(
                 make_architecture(input_dim, std::move(hidden), num_classes, std::move(activation),
                                   batch_norm, dropout, norm_std, std::move(dataset)),
                 seed, init);
           }),
           py::arg("input_dim"), py::arg("hidden"), py::arg("num_classes"), py::arg("activation"),
           py::arg("batch_norm"), py::arg("dropout"), py::arg("norm_std"), py::arg("dataset"),
           py::arg("seed"), py::arg("init"))
      .def("set_optimizer",
           [](Model& self, const std::string& name, double momentum, bool nesterov, double beta1,
              double beta2, double eps, double weight_decay) {
             self.set_optimizer(
                 optimizer_config(name, momentum, nesterov, beta1, beta2, eps, weight_decay));
           })
      .def_property_readonly("optimizer_steps", &Model::optimizer_steps)
      .def_property_readonly("has_optimizer", &Model::has_optimizer)
      .def("fit_epoch", &fit_epoch)
      .def("prepare_images", &prepare_images)
      .def("predict_proba", &predict_proba)
      .def("linear_params", &linear_params)
      .def("to_bytes", &to_bytes)
      .def_static("from_bytes", &from_bytes)
      .def("save",
           [](Model& self, const std::string& path,
              const std::map<std::string, std::string>& metadata) {
             save_model(path, self.net(), metadata);
           })
      .def_static("load", &load_file)
      .def_property_readonly("architecture_json",
                             [](Model& self) { return self.net().architecture().to_json(); })
      .def_property_readonly("summary", [](Model& self) { return model_summary(self.net()); });
}

}  // namespace
}  // namespace nanomlp

PYBIND11_MODULE(_nanomlp, m) {
  using namespace nanomlp;
  m.doc() = "nanomlp's C++ library: networks, optimizers and the training step";
  // pybind11 tries the last registered first: the general Error before the specific ones.
  py::register_exception<Error>(m, "Error", PyExc_RuntimeError);
  py::register_exception<IoError>(m, "IoError", PyExc_OSError);
  py::register_exception<DataError>(m, "DataError", PyExc_ValueError);
  py::register_exception<ModelFormatError>(m, "ModelFormatError", PyExc_ValueError);
  py::register_exception<UsageError>(m, "UsageError", PyExc_ValueError);
  bind_model(m);
  // n < 1: every core. OpenBLAS stays single-threaded inside nanomlp's own threads.
  m.def("set_num_threads", [](int n) {
    py::gil_scoped_release release;
    const std::lock_guard<std::mutex> lock(compute_mutex());  // not while a job runs
    kernels::set_num_threads(n);
  });
  m.def("num_threads", &kernels::num_threads);
  m.def("activation_names", &activation_names);
  m.def("schedule_names", &schedule_names);
  m.def("learning_rate", &schedule_rate);
  m.def("load_dataset", &load_split);
}
