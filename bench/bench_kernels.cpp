// Kernel-level benchmarks (Google Benchmark) of the products and element-wise loops of one
// training step.
//
//   sgemm/<net>/b<batch>/<layer>.<op>/<impl>/t<threads>
//     nanomlp::kernels::gemm at exactly the shapes src/layers/dense.cpp calls it with, on 1 and
//     on all threads; impl "openblas" calls cblas_sgemm directly with OpenBLAS's own threads
//     (nanomlp's pool at 1 thread), to compare the pool's split with BLAS threading.
//     Counter FLOP/s = 2 M N K per product.
//   elementwise/<kernel>/<shape>   the loops between the products (bias, ReLU, softmax
//     cross-entropy, batch gather, SGD update); single-threaded, as they are in nanomlp.
//   step/784-128-10/b64/t<threads>  one whole default training step through nanomlp::Network.
//
// Besides Google Benchmark's own output, --lines=FILE writes one tab-separated line per result
// (median of the repetitions when there are several) for bench/run.sh:
//   sgemm  <case> <op> <impl> <threads> <M> <N> <K> <product> <GFLOP/s> <us> <CPU us>
//   kernel <name> <calls per default step> <us> <GB/s>
//   step   <case> <threads> <us>
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/core/tensor.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/sparse.hpp"
#include "nanomlp/fast/sparse_input.hpp"
#include "nanomlp/fast/split_step.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/optim/optim.hpp"
#include "nanomlp/train/step.hpp"

namespace {

using nanomlp::Matrix;
namespace kernels = nanomlp::kernels;

// What --lines needs to know about each registered benchmark, by its registered name.
struct Meta {
  std::string kind;    // "sgemm", "kernel" or "step"
  std::string fields;  // the tab-separated fields between the name and the measurements
  int order = 0;       // registration order: --lines is written in it
};
std::map<std::string, Meta>& registry() {
  static std::map<std::string, Meta> r;
  return r;
}
[[maybe_unused]] void add_meta(const std::string& name, const std::string& kind,
                               const std::string& fields) {
  const auto order = static_cast<int>(registry().size());
  registry()[name] = {kind, fields, order};
}

void fill_random(Matrix& m, std::uint64_t seed) {
  nanomlp::Rng rng(seed);
  for (float& v : m) v = static_cast<float>(rng.uniform() - 0.5);
}

// ---------------------------------------------------------------------------------------------
// sgemm at the shapes of the training step.

struct GemmShape {
  std::string net;      // "784-128-10"
  std::size_t batch;    // N
  std::string op;       // "l1.fwd", "l1.dW", "l2.dX", ...
  bool ta, tb;          // as dense.cpp passes them
  std::size_t M, N, K;  // C (M, N) = op(A) (M, K) op(B) (K, N)
  std::string product;  // e.g. X(64x784)*W^T(784x128)
};

// The products of one Dense layer (D inputs, H outputs, W kept (D, H)) at batch B, as
// Dense<T>::forward and Dense<T>::backward call gemm on the dense input path:
//   forward  y (B, H) = x (B, D) W (D, H)         gemm(false, false, B, H, D)
//   weights  dW (D, H) = x^T (D, B) dy (B, H)     gemm(true,  false, D, H, B)
//   input    dx (B, D) = dy (B, H) W^T (H, D)     gemm(false, true,  B, D, H), not for layer 1
void add_dense(std::vector<GemmShape>& out, const std::string& net, std::size_t B, int layer,
               std::size_t D, std::size_t H) {
  const std::string l = "l" + std::to_string(layer);
  const std::string b = std::to_string(B), d = std::to_string(D), h = std::to_string(H);
  const std::string x = layer == 1 ? "X" : "A" + std::to_string(layer - 1);
  out.push_back({net, B, l + ".fwd", false, false, B, H, D,
                 x + "(" + b + "x" + d + ")*W(" + d + "x" + h + ")"});
  out.push_back({net, B, l + ".dW", true, false, D, H, B,
                 x + "^T(" + d + "x" + b + ")*dY(" + b + "x" + h + ")"});
  if (layer > 1) {
    out.push_back({net, B, l + ".dX", false, true, B, D, H,
                   "dY(" + b + "x" + h + ")*W^T(" + h + "x" + d + ")"});
  }
}

std::vector<GemmShape> training_shapes() {
  std::vector<GemmShape> shapes;
  for (std::size_t B : {64, 128, 256}) {
    add_dense(shapes, "784-128-10", B, 1, 784, 128);
    add_dense(shapes, "784-128-10", B, 2, 128, 10);
  }
  add_dense(shapes, "784-1024-1024-10", 256, 1, 784, 1024);
  add_dense(shapes, "784-1024-1024-10", 256, 2, 1024, 1024);
  add_dense(shapes, "784-1024-1024-10", 256, 3, 1024, 10);
  return shapes;
}

enum class Impl { kNanomlp, kOpenblas };

void bm_sgemm(benchmark::State& state, const GemmShape& s, Impl impl, int threads) {
  // Row-major storage of op(A) and op(B) as dense.cpp has them.
  Matrix A(s.ta ? s.K : s.M, s.ta ? s.M : s.K);
  Matrix B(s.tb ? s.N : s.K, s.tb ? s.K : s.N);
  Matrix C(s.M, s.N);
  fill_random(A, 1);
  fill_random(B, 2);
  const std::size_t lda = A.cols(), ldb = B.cols(), ldc = C.cols();
  if (impl == Impl::kNanomlp) {
    kernels::set_num_threads(threads);
  } else {
    kernels::set_num_threads(1);
    openblas_set_num_threads(threads);
  }
  for (auto _ : state) {
    if (impl == Impl::kNanomlp) {
      kernels::gemm<float>(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f,
                           C.data(), ldc);
    } else {
      cblas_sgemm(CblasRowMajor, s.ta ? CblasTrans : CblasNoTrans, s.tb ? CblasTrans : CblasNoTrans,
                  static_cast<blasint>(s.M), static_cast<blasint>(s.N), static_cast<blasint>(s.K),
                  1.0f, A.data(), static_cast<blasint>(lda), B.data(), static_cast<blasint>(ldb),
                  0.0f, C.data(), static_cast<blasint>(ldc));
    }
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  kernels::set_num_threads(1);  // also puts OpenBLAS back to 1 thread
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(s.M * s.N * s.K),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(s.product);
}

void register_sgemm(int all_threads) {
  std::vector<int> thread_counts{1};
  if (all_threads > 1) thread_counts.push_back(all_threads);
  for (const GemmShape& s : training_shapes()) {
    for (int t : thread_counts) {
      for (Impl impl : {Impl::kNanomlp, Impl::kOpenblas}) {
        // On one thread both call the same cblas_sgemm: measure it once.
        if (t == 1 && impl == Impl::kOpenblas) continue;
        const char* impl_name = impl == Impl::kNanomlp ? "nanomlp" : "openblas";
        const std::string name = "sgemm/" + s.net + "/b" + std::to_string(s.batch) + "/" + s.op +
                                 "/" + impl_name + "/t" + std::to_string(t);
        benchmark::RegisterBenchmark(
            name.c_str(), [s, impl, t](benchmark::State& st) { bm_sgemm(st, s, impl, t); })
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        add_meta(name, "sgemm",
                 s.net + "/b" + std::to_string(s.batch) + "\t" + s.op + "\t" + impl_name + "\t" +
                     std::to_string(t) + "\t" + std::to_string(s.M) + "\t" + std::to_string(s.N) +
                     "\t" + std::to_string(s.K) + "\t" + s.product);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Element-wise kernels. `calls` is how often the default step (784-128-10, batch 64, plain
// SGD) runs each one; bench/run.sh adds them up to see where the step's time goes.

void register_kernel(const std::string& name, int calls,
                     std::function<void(benchmark::State&)> fn) {
  benchmark::RegisterBenchmark(("elementwise/" + name).c_str(), std::move(fn))
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  add_meta("elementwise/" + name, "kernel", name + "\t" + std::to_string(calls));
}

// The batch gather of the trainer: B random images of a 60,000-image uint8 set (47 MB, as
// MNIST) to normalised floats, one u8_to_float per row, plus the labels.
void bm_gather(benchmark::State& state, std::size_t B) {
  constexpr std::size_t kImages = 60000;
  constexpr std::size_t D = nanomlp::kImagePixels;
  std::vector<std::uint8_t> images(kImages * D), labels(kImages), batch_labels(B);
  nanomlp::Rng rng(3);
  for (auto& p : images) p = static_cast<std::uint8_t>(rng.below(256));
  for (auto& l : labels) l = static_cast<std::uint8_t>(rng.below(10));
  std::vector<std::uint32_t> idx(kImages);
  std::iota(idx.begin(), idx.end(), 0u);
  rng.shuffle(idx);
  Matrix x(B, D);
  std::size_t start = 0;
  for (auto _ : state) {
    if (start + B > kImages) start = 0;
    for (std::size_t i = 0; i < B; ++i) {
      kernels::u8_to_float(images.data() + idx[start + i] * D, x.row(i), D, 1.0f / 255.0f, 0.0f);
      batch_labels[i] = labels[idx[start + i]];
    }
    start += B;
    benchmark::DoNotOptimize(x.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * B * D * 5));
}

// 60,000 MNIST-like images (19% of pixels inked, as MNIST) and one first layer, for the sparse
// kernels.
constexpr std::size_t kSparseImages = 60000;
struct SparseStep {
  std::vector<std::uint8_t> images;
  std::vector<std::uint32_t> idx;
  nanomlp::SparseBatch x;
  Matrix W{784, 128}, bias{1, 128}, y{64, 128}, dW{784, 128};
  SparseStep() : images(kSparseImages * 784), idx(kSparseImages) {
    nanomlp::Rng rng(21);
    for (auto& p : images)
      p = rng.uniform() < 0.19 ? static_cast<std::uint8_t>(1 + rng.below(255)) : 0;
    std::iota(idx.begin(), idx.end(), 0u);
    rng.shuffle(idx);
    fill_random(W, 22);
    fill_random(y, 23);
  }
  // Rows idx[start..start+64) as the trainer encodes them (MNIST's normalisation by default),
  // fetching the next 64 rows' images a step ahead.
  void encode(std::size_t start, float scale = 1.0f / 255 / 0.3081f, float shift = -0.4242f) {
    kernels::sparse_reshape(x, 64, 784, shift);
    const std::uint32_t* next = start + 128 <= idx.size() ? idx.data() + start + 64 : nullptr;
    for (std::size_t b = 0; b < x.blocks(); ++b) {
      kernels::sparse_encode_block(x, b, images.data(), 784, idx.data() + start, scale, next);
    }
  }
};

void register_elementwise() {
  struct Shape {
    std::size_t N, H;
    int calls_bias, calls_relu, calls_sum;
  };
  // (64, 128): the hidden layer of the default step, whose bias and db the sparse kernels
  // compute (so none of those calls on its step); (64, 10): its output layer;
  // (256, 1024): a hidden layer of the large network.
  const Shape shapes[] = {{64, 128, 0, 1, 0}, {64, 10, 1, 0, 1}, {256, 1024, 0, 0, 0}};
  for (const Shape& sh : shapes) {
    const std::string tag = std::to_string(sh.N) + "x" + std::to_string(sh.H);
    const std::size_t N = sh.N, H = sh.H;
    const auto bytes = static_cast<std::int64_t>(N * H * sizeof(float));
    register_kernel("add_bias_rows/" + tag, sh.calls_bias, [N, H, bytes](benchmark::State& st) {
      Matrix y(N, H), b(1, H);
      fill_random(y, 4);
      fill_random(b, 5);
      for (auto _ : st) {
        kernels::add_bias_rows(y.data(), b.data(), N, H);
        benchmark::ClobberMemory();
      }
      st.SetBytesProcessed(st.iterations() * bytes * 2);
    });
    register_kernel("sum_rows/" + tag, sh.calls_sum, [N, H, bytes](benchmark::State& st) {
      Matrix dy(N, H), db(1, H);
      fill_random(dy, 6);
      for (auto _ : st) {
        kernels::sum_rows(dy.data(), db.data(), N, H);
        benchmark::ClobberMemory();
      }
      st.SetBytesProcessed(st.iterations() * bytes);
    });
    if (H == 10) continue;  // ReLU runs on hidden layers only
    register_kernel("relu_forward/" + tag, sh.calls_relu, [N, H, bytes](benchmark::State& st) {
      Matrix x(N, H), y(N, H);
      fill_random(x, 7);
      for (auto _ : st) {
        kernels::relu_forward(x.data(), y.data(), N * H);
        benchmark::ClobberMemory();
      }
      st.SetBytesProcessed(st.iterations() * bytes * 2);
    });
    register_kernel("relu_backward/" + tag, sh.calls_relu, [N, H, bytes](benchmark::State& st) {
      Matrix y(N, H), dy(N, H), dx(N, H);
      fill_random(y, 8);
      fill_random(dy, 9);
      for (auto _ : st) {
        kernels::relu_backward(y.data(), dy.data(), dx.data(), N * H);
        benchmark::ClobberMemory();
      }
      st.SetBytesProcessed(st.iterations() * bytes * 3);
    });
  }
  register_kernel("softmax_cross_entropy/64x10", 1, [](benchmark::State& st) {
    constexpr std::size_t N = 64, K = 10;
    Matrix z(N, K), dz(N, K);
    fill_random(z, 10);
    std::vector<std::uint8_t> labels(N);
    for (std::size_t i = 0; i < N; ++i) labels[i] = static_cast<std::uint8_t>(i % K);
    for (auto _ : st) {
      std::size_t correct = 0;
      benchmark::DoNotOptimize(kernels::softmax_cross_entropy<float>(z.data(), labels.data(), N, K,
                                                                     0.0f, dz.data(), &correct));
      benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * static_cast<std::int64_t>(N * K * 8));
  });
  // The dense input path's gather; the default step reads MNIST sparse instead (below).
  register_kernel("gather_batch/64x784", 0, [](benchmark::State& st) { bm_gather(st, 64); });
  register_kernel("gather_batch/256x784", 0, [](benchmark::State& st) { bm_gather(st, 256); });
  // The sparse input path of the default step (nanomlp/fast/sparse.hpp), on MNIST-like images
  // (19% of pixels inked): encode 64 random images, the first layer's forward, its dW and db.
  // Bytes: what each call reads and writes once (images, entries, W or dW).
  register_kernel("sparse_encode/64x784", 1, [](benchmark::State& st) {
    SparseStep s;
    std::size_t start = 0;
    for (auto _ : st) {
      s.encode(start);
      start = (start + 64) % (kSparseImages - 64);
      benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * 64 * 784 * 2));
  });
  register_kernel("sparse_forward/64x784x128", 1, [](benchmark::State& st) {
    SparseStep s;
    s.encode(0);
    for (auto _ : st) {
      for (std::size_t b = 0; b < s.x.blocks(); ++b) {
        kernels::sparse_forward_block(s.x, b, s.W.data(), s.bias.data(),
                                      s.y.row(s.x.block_begin[b]), 128);
      }
      benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * 784 * 128 * 4));
  });
  register_kernel("sparse_weight_grad/64x784x128", 1, [](benchmark::State& st) {
    SparseStep s;
    s.encode(0);
    for (auto _ : st) {
      kernels::sparse_weight_grad(s.x, s.y.data(), 128, 0, 784, s.dW.data(), s.bias.data());
      benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations() * 784 * 128 * 4));
  });
  // Plain SGD over all parameters of 784-128-10 (101,770 floats), via Optimizer::step.
  register_kernel("sgd_step/784-128-10", 1, [](benchmark::State& st) {
    nanomlp::Network<float> net(nanomlp::Architecture{});
    nanomlp::Rng rng(11);
    net.init(rng);
    auto params = net.params();
    std::int64_t floats = 0;
    for (auto& p : params) {
      fill_random(*p.grad, 12);
      for (float& g : *p.grad) g *= 1e-6f;  // keep the weights bounded over many steps
      floats += static_cast<std::int64_t>(p.value->size());
    }
    auto opt = nanomlp::make_optimizer(nanomlp::OptimizerConfig{});
    for (auto _ : st) {
      opt->step(params, 0.1);
      benchmark::ClobberMemory();
    }
    st.SetBytesProcessed(st.iterations() * floats * 12);  // read w and g, write w
  });
}

// ---------------------------------------------------------------------------------------------
// One whole training step of the default network, as train() runs it on MNIST (minus the
// schedule and the progress callback): sparse encode, forward, softmax cross-entropy, backward,
// SGD. On one thread, plain_step over a SparseBatchPath; on several, the split step
// (nanomlp/fast/split_step.hpp), which runs a whole epoch in one job: there an iteration is
// kSplitSteps steps in one job, and the counter steps_per_iteration says so (--lines divides
// by it). Each iteration reports its whole time, so that Google Benchmark's --benchmark_min_time
// still bounds the run.

void bm_step(benchmark::State& state, int threads) {
  constexpr std::size_t B = 64, K = 10, kSplitSteps = 100;
  SparseStep s;
  nanomlp::Dataset data;
  data.count = kSparseImages;
  data.images = s.images;
  data.labels.resize(kSparseImages);
  nanomlp::Rng rng(13);
  for (auto& l : data.labels) l = static_cast<std::uint8_t>(rng.below(10));
  kernels::set_num_threads(threads);
  const nanomlp::Architecture arch;
  nanomlp::Network<float> net(arch);
  net.init(rng);
  auto params = net.params();
  const nanomlp::OptimizerConfig config;
  auto opt = nanomlp::make_optimizer(config);
  const int parts = nanomlp::SplitStep::parts_for(arch.input_dim, threads);
  const std::size_t steps_per_iteration = parts > 0 ? kSplitSteps : 1;
  if (parts > 0) {
    nanomlp::SplitStep split(net, *opt, parts, &data);
    split.load(net, *opt);
    nanomlp::ScheduleConfig schedule;
    schedule.base_lr = 0.01;
    auto no_callback = [](std::size_t, std::size_t, double, std::size_t, double) {};
    // One untimed run first: the parts' buffers are touched for the first time there.
    split.run(data, s.idx.data(), B * kSplitSteps, B, schedule, 0, 0.0f, no_callback);
    std::size_t start = B * kSplitSteps;
    for (auto _ : state) {
      if (start + B * kSplitSteps > kSparseImages) start = 0;
      const auto t0 = std::chrono::steady_clock::now();
      split.run(data, s.idx.data() + start, B * kSplitSteps, B, schedule, 0, 0.0f, no_callback);
      const std::chrono::duration<double> t = std::chrono::steady_clock::now() - t0;
      state.SetIterationTime(t.count());
      start += B * kSplitSteps;
    }
  } else {
    Matrix dz(B, K);
    std::vector<std::uint8_t> batch_labels(B);
    nanomlp::SparseBatchPath batch(arch);
    std::size_t start = 0;
    for (auto _ : state) {
      const auto t0 = std::chrono::steady_clock::now();
      if (start + B > kSparseImages) start = 0;
      const std::uint32_t* next =
          start + 2 * B <= s.idx.size() ? s.idx.data() + start + B : nullptr;
      batch.gather(data, s.idx.data() + start, B, batch_labels.data(), next);
      start += B;
      benchmark::DoNotOptimize(
          nanomlp::plain_step(net, batch, batch_labels.data(), 0.0f, *opt, params, 0.01, dz).loss);
      benchmark::ClobberMemory();
      const std::chrono::duration<double> t = std::chrono::steady_clock::now() - t0;
      state.SetIterationTime(t.count());
    }
  }
  kernels::set_num_threads(1);
  state.counters["steps_per_iteration"] = static_cast<double>(steps_per_iteration);
  state.counters["samples/s"] = benchmark::Counter(static_cast<double>(B * steps_per_iteration),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void register_step(int all_threads) {
  std::vector<int> thread_counts{1};
  if (all_threads > 1) thread_counts.push_back(all_threads);
  for (int t : thread_counts) {
    const std::string name = "step/784-128-10/b64/t" + std::to_string(t);
    benchmark::RegisterBenchmark(name.c_str(), [t](benchmark::State& st) { bm_step(st, t); })
        ->UseManualTime()
        ->Unit(benchmark::kMicrosecond);
    add_meta(name, "step", "784-128-10/b64\t" + std::to_string(t));
  }
}

// ---------------------------------------------------------------------------------------------
// Console output as usual, plus the --lines file.

class LinesReporter : public benchmark::ConsoleReporter {
 public:
  explicit LinesReporter(OutputOptions options) : benchmark::ConsoleReporter(options) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    benchmark::ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      const bool single = run.run_type == Run::RT_Iteration && run.repetitions <= 1;
      const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
      if (!single && !median) continue;
      const auto it = registry().find(run.run_name.function_name);
      if (it == registry().end()) continue;
      const double to_us = 1e6 / benchmark::GetTimeUnitMultiplier(run.time_unit);
      const double us = run.GetAdjustedRealTime() * to_us;
      const Meta& meta = it->second;
      char buf[512];
      if (meta.kind == "sgemm") {
        const double flops = run.counters.at("FLOP/s").value;
        // CPU time is the main thread's: on one thread, cpu_us / us is the share of a core
        // the benchmark got while other work competed for it.
        const double cpu_us = run.GetAdjustedCPUTime() * to_us;
        std::snprintf(buf, sizeof buf, "\t%.3f\t%.3f\t%.3f", flops * 1e-9, us, cpu_us);
      } else if (meta.kind == "kernel") {
        const auto bytes = run.counters.find("bytes_per_second");
        const double gbps = bytes == run.counters.end() ? 0.0 : bytes->second.value * 1e-9;
        std::snprintf(buf, sizeof buf, "\t%.4f\t%.3f", us, gbps);
      } else {  // a step: the time of one, when an iteration ran several
        const auto steps = run.counters.find("steps_per_iteration");
        const double per = steps == run.counters.end() ? 1.0 : steps->second.value;
        std::snprintf(buf, sizeof buf, "\t%.3f", us / per);
      }
      lines_.emplace_back(meta.order, meta.kind + "\t" + meta.fields + buf + "\n");
    }
  }

  // With --benchmark_enable_random_interleaving the runs arrive in random order: write them in
  // the order they were registered.
  void write(std::FILE* out) {
    std::sort(lines_.begin(), lines_.end());
    for (const auto& line : lines_) std::fputs(line.second.c_str(), out);
  }

 private:
  std::vector<std::pair<int, std::string>> lines_;
};

}  // namespace

int main(int argc, char** argv) {
  // Our own flag first; Google Benchmark sees the rest.
  std::string lines_path;
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--lines=", 8) == 0) {
      lines_path = argv[i] + 8;
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  const int all_threads = nanomlp::hardware_threads();
  register_sgemm(all_threads);
  register_elementwise();
  register_step(all_threads);
  benchmark::AddCustomContext("nanomlp.blas", kernels::blas_info());
  benchmark::AddCustomContext("nanomlp.threads", std::to_string(all_threads));

  const auto options =
      isatty(STDOUT_FILENO) != 0
          ? static_cast<benchmark::ConsoleReporter::OutputOptions>(
                benchmark::ConsoleReporter::OO_Color | benchmark::ConsoleReporter::OO_Tabular)
          : benchmark::ConsoleReporter::OO_Tabular;
  LinesReporter reporter(options);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  if (!lines_path.empty()) {
    std::FILE* lines = std::fopen(lines_path.c_str(), "w");
    if (lines == nullptr) {
      std::fprintf(stderr, "bench_kernels: cannot write %s\n", lines_path.c_str());
      return 1;
    }
    reporter.write(lines);
    std::fclose(lines);
  }
  return 0;
}
