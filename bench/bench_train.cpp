// End-to-end figures through the library, on the real MNIST files: data load time, seconds per
// training epoch (nanomlp::train, EpochRecord::seconds, median over several epochs) for
// 784-128-10 at batch 64, 128 and 256 and for 784-1024-1024-10 at batch 256, on 1 and on all
// threads, and the time nanomlp::evaluate takes over the 10,000 test images.
//
// Usage: bench_train [--data DIR] [--epochs N] [--large-seconds S] [--threads 1,2]
//   --data           the data root holding mnist/ (default: $NANOMLP_DATA, else ./data)
//   --epochs         epochs per measurement of 784-128-10 (default 5; the median is reported)
//   --large-seconds  784-1024-1024-10 trains 3 passes; when a full epoch would take longer
//                    than this many seconds, each pass covers only the first images of the
//                    training set (a whole number of batches, about this many seconds) and
//                    seconds per epoch are scaled up from it (default 5)
//   --threads        thread counts to measure (default: 1 and all cores)
//
// stdout: tab-separated records that bench/run.sh turns into the results table:
//   kv     <key> <value>
//   train  <net> <batch> <threads> <s/epoch> <samples/s> <GFLOP/epoch> <passes> <images/pass>
//          <test accuracy> <CPU share>
// CPU share: process CPU time / (wall time x threads) over the whole nanomlp::train call; well
// under 1 on one thread means other work on the machine took the core part of the time.
//   eval   <net> <threads> <seconds> <runs>
// Progress goes to stderr.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/nn/kernels.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  }
  return "unknown";
}

std::string compiler() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("GCC ") + __VERSION__;
#else
  return "unknown";
#endif
}

// The widest vector ISA the library was compiled for (NANOMLP_NATIVE adds -march=native).
const char* isa() {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__)
  return "AVX2";
#else
  return "SSE2 (no -march=native?)";
#endif
}

// FLOPs of one epoch of n images: per Dense layer (D inputs, H outputs) 2 N D H for the
// forward product, 2 N D H for dW and, except for the first layer (no gradient for the
// pixels), 2 N D H for dX. Element-wise work (bias, ReLU, softmax, SGD) is not counted.
double flops_per_epoch(nanomlp::Network<float>& net, std::size_t n) {
  double per_image = 0.0;
  bool first = true;
  for (auto& layer : net.layers()) {
    if (auto* dense = dynamic_cast<nanomlp::Dense<float>*>(layer.get())) {
      const double dh = static_cast<double>(dense->W_.rows() * dense->W_.cols());
      per_image += 2.0 * dh * (first ? 2.0 : 3.0);
      first = false;
    }
  }
  return per_image * static_cast<double>(n);
}

std::string describe(const std::vector<std::size_t>& hidden) {
  std::string s = std::to_string(nanomlp::kImagePixels);
  for (std::size_t h : hidden) {
    s += '-';
    s += std::to_string(h);
  }
  s += "-10";
  return s;
}

nanomlp::DataSplit first_images(const nanomlp::DataSplit& data, std::size_t n) {
  nanomlp::DataSplit sub;
  sub.name = data.name;
  sub.dir = data.dir;
  sub.test = data.test;
  sub.train.count = n;
  sub.train.images.assign(
      data.train.images.begin(),
      data.train.images.begin() + static_cast<std::ptrdiff_t>(n * nanomlp::kImagePixels));
  sub.train.labels.assign(data.train.labels.begin(),
                          data.train.labels.begin() + static_cast<std::ptrdiff_t>(n));
  return sub;
}

double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

// CPU share of the last train_passes call.
double g_cpu_share = 0.0;

nanomlp::TrainResult train_passes(nanomlp::Network<float>& net, const nanomlp::DataSplit& data,
                                  std::size_t batch, std::size_t passes) {
  nanomlp::TrainOptions opt;  // SGD, lr 0.1, He init, seed 0: the CLI's defaults
  opt.epochs = passes;
  opt.batch_size = batch;
  opt.eval_test_every_epoch = false;
  const double cpu0 = process_cpu_seconds();
  const auto t0 = Clock::now();
  auto result = nanomlp::train_planned(net, data, opt);
  const double wall = seconds_since(t0);
  g_cpu_share = (process_cpu_seconds() - cpu0) /
                (wall * static_cast<double>(nanomlp::kernels::num_threads()));
  return result;
}

struct Settings {
  std::optional<std::string> data;
  std::size_t epochs = 5;
  double large_seconds = 5.0;
  std::vector<int> threads;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "bench_train: %s\nusage: bench_train [--data DIR] [--epochs N] "
               "[--large-seconds S] [--threads 1,2]\n",
               why);
  std::exit(2);
}

Settings parse(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: bench_train [--data DIR] [--epochs N] [--large-seconds S] [--threads 1,2]\n"
          "Times nanomlp::load_dataset, nanomlp::train and nanomlp::evaluate on MNIST and\n"
          "prints tab-separated records for bench/run.sh (see the top of bench_train.cpp).\n");
      std::exit(0);
    }
    if (arg == "--data") {
      s.data = value();
    } else if (arg == "--epochs") {
      s.epochs = std::strtoul(value().c_str(), nullptr, 10);
      if (s.epochs == 0) usage("--epochs: expected a positive integer");
    } else if (arg == "--large-seconds") {
      s.large_seconds = std::strtod(value().c_str(), nullptr);
      if (!(s.large_seconds > 0.0)) usage("--large-seconds: expected a positive number");
    } else if (arg == "--threads") {
      const std::string list = value();
      std::size_t pos = 0;
      while (pos <= list.size()) {
        const std::size_t comma = std::min(list.find(',', pos), list.size());
        const int t = std::atoi(list.substr(pos, comma - pos).c_str());
        if (t < 1) usage("--threads: expected positive integers such as 1,2");
        s.threads.push_back(t);
        pos = comma + 1;
      }
    } else {
      usage(("unknown argument " + arg).c_str());
    }
  }
  if (s.threads.empty()) {
    s.threads.push_back(1);
    if (nanomlp::hardware_threads() > 1) s.threads.push_back(nanomlp::hardware_threads());
  }
  return s;
}

void record_train(const std::string& net_name, std::size_t batch, int threads,
                  const nanomlp::TrainResult& r, std::size_t images_per_pass,
                  double gflop_per_epoch) {
  std::vector<double> secs;
  for (const auto& e : r.epochs) secs.push_back(e.seconds);
  const double pass = median(secs);
  const double per_epoch = pass * 60000.0 / static_cast<double>(images_per_pass);
  std::printf("train\t%s\t%zu\t%d\t%.5f\t%.1f\t%.4f\t%zu\t%zu\t%.4f\t%.3f\n", net_name.c_str(),
              batch, threads, per_epoch, static_cast<double>(images_per_pass) / pass,
              gflop_per_epoch, secs.size(), images_per_pass, r.test.accuracy, g_cpu_share);
  std::fflush(stdout);
  std::fprintf(stderr, "  %s batch %zu, %d thread(s): %.3f s/epoch (passes:", net_name.c_str(),
               batch, threads, per_epoch);
  for (double s : secs) std::fprintf(stderr, " %.3f", s);
  std::fprintf(stderr, " s over %zu images; CPU share %.2f)\n", images_per_pass, g_cpu_share);
}

}  // namespace

int main(int argc, char** argv) {
  const Settings settings = parse(argc, argv);
  try {
    std::printf("kv\tmachine.cpu\t%s\n", cpu_model().c_str());
    std::printf("kv\tmachine.cores\t%d\n", nanomlp::hardware_threads());
    std::printf("kv\tmachine.blas\t%s\n", nanomlp::kernels::blas_info());
    std::printf("kv\tbuild.compiler\t%s\n", compiler().c_str());
    std::printf("kv\tbuild.isa\t%s\n", isa());
#ifdef NDEBUG
    std::printf("kv\tbuild.asserts\toff (NDEBUG)\n");
#else
    std::printf("kv\tbuild.asserts\ton: not a release build, figures are not representative\n");
#endif

    // Data load: nanomlp::load_dataset of mnist (gunzip + IDX checks), median of 3.
    const std::string root = nanomlp::resolve_data_root(settings.data);
    std::fprintf(stderr, "bench_train: loading mnist from %s\n", root.c_str());
    std::vector<double> load_secs;
    nanomlp::DataSplit data;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = Clock::now();
      data = nanomlp::load_dataset(root, "mnist");
      load_secs.push_back(seconds_since(t0));
    }
    std::printf("kv\tload.seconds\t%.4f\n", median(load_secs));
    std::printf("kv\tload.runs\t%zu\n", load_secs.size());
    std::printf("kv\tdata.train_images\t%zu\n", data.train.count);
    std::printf("kv\tdata.test_images\t%zu\n", data.test.count);
    std::fflush(stdout);
    if (data.train.count != 60000) {
      std::fprintf(stderr, "bench_train: note: %zu training images, not 60,000\n",
                   data.train.count);
    }

    // 784-128-10 at batch 64, 128, 256: whole epochs.
    const std::vector<std::size_t> default_hidden{128};
    std::optional<nanomlp::Network<float>> default_net;
    for (std::size_t batch : {64, 128, 256}) {
      for (int t : settings.threads) {
        nanomlp::kernels::set_num_threads(t);
        nanomlp::Architecture arch;
        arch.hidden = default_hidden;
        nanomlp::Network<float> net(arch);
        const auto r = train_passes(net, data, batch, settings.epochs);
        record_train(describe(arch.hidden), batch, t, r, data.train.count,
                     flops_per_epoch(net, 60000) * 1e-9);
        if (batch == 64 && t == settings.threads.back()) default_net.emplace(std::move(net));
      }
    }

    // 784-1024-1024-10 at batch 256: 3 passes of a full epoch, or of its first images when an
    // epoch would take longer than --large-seconds (estimated from a probe of 16 batches).
    {
      const std::vector<std::size_t> hidden{1024, 1024};
      constexpr std::size_t kBatch = 256, kPasses = 3;
      for (int t : settings.threads) {
        nanomlp::kernels::set_num_threads(t);
        nanomlp::Architecture arch;
        arch.hidden = hidden;
        std::size_t images = data.train.count;
        {
          nanomlp::Network<float> probe(arch);
          const std::size_t n = std::min<std::size_t>(16 * kBatch, data.train.count);
          const auto r = train_passes(probe, first_images(data, n), kBatch, 1);
          const double est = r.epochs.front().seconds * static_cast<double>(data.train.count) /
                             static_cast<double>(n);
          if (est > settings.large_seconds) {
            const double want =
                settings.large_seconds / est * static_cast<double>(data.train.count);
            images = std::max<std::size_t>(4, static_cast<std::size_t>(want) / kBatch) * kBatch;
            images = std::min(images, data.train.count);
          }
        }
        nanomlp::Network<float> net(arch);
        const auto r = images == data.train.count
                           ? train_passes(net, data, kBatch, kPasses)
                           : train_passes(net, first_images(data, images), kBatch, kPasses);
        record_train(describe(arch.hidden), kBatch, t, r, images,
                     flops_per_epoch(net, 60000) * 1e-9);
      }
    }

    // nanomlp::evaluate over the 10,000 test images with the trained default network.
    if (default_net) {
      for (int t : settings.threads) {
        nanomlp::kernels::set_num_threads(t);
        const auto input = nanomlp::plan_input(default_net->architecture(), data.test);
        nanomlp::evaluate(*default_net, data.test, nullptr, false, input.get());  // warm-up
        std::vector<double> secs;
        for (int i = 0; i < 7; ++i) {
          const auto t0 = Clock::now();
          const auto r = nanomlp::evaluate(*default_net, data.test, nullptr, false, input.get());
          secs.push_back(seconds_since(t0));
          if (r.count != data.test.count) throw nanomlp::Error("evaluate skipped images");
        }
        std::printf("eval\t%s\t%d\t%.6f\t%zu\n", describe(default_hidden).c_str(), t, median(secs),
                    secs.size());
        std::fflush(stdout);
        std::fprintf(stderr, "  evaluate, %d thread(s): %.2f ms\n", t, median(secs) * 1e3);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
