// The checkpoint loader (src/train/checkpoint.cpp), through its public entry point: train() with
// --resume. Each input becomes DIR/checkpoint-epoch-0001.safetensors in a fresh folder in /tmp
// and a tiny run (784-1-10, 4 training images, 1 epoch, 1 thread) resumes from it, so the
// whole path is fuzzed: safetensors parsing, the metadata checks (format, version,
// architecture, the settings), model_from_safetensors, optimizer slots, generator states,
// best-weights snapshot, the epoch records, then the rest of the run.
//
// NANOMLP_FUZZ_WRITE_SEED=DIR fuzz_checkpoint writes the seed (a real checkpoint of this run,
// DIR/checkpoint-epoch-0001.safetensors) and exits; fuzz/make_seeds.py uses it.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "fuzz_util.hpp"
#include "nanomlp/app/training.hpp"
#include "nanomlp/core/dataset.hpp"
#include "nanomlp/core/thread_pool.hpp"
#include "nanomlp/fast/plan.hpp"
#include "nanomlp/nn/network.hpp"
#include "nanomlp/train/trainer.hpp"

namespace fs = std::filesystem;

namespace {

nanomlp::Architecture architecture() {
  nanomlp::Architecture arch;
  arch.hidden = {1};
  return arch;
}

nanomlp::TrainOptions options(const std::string& dir, bool resume) {
  nanomlp::TrainOptions o;
  o.epochs = 1;
  o.batch_size = 2;
  o.sparse_input = "off";
  o.checkpoint_dir = dir;
  o.resume = resume;
  return o;
}

nanomlp::Dataset tiny_dataset(std::size_t count) {
  nanomlp::Dataset d;
  d.count = count;
  d.images.assign(count * nanomlp::kImagePixels, 0);
  d.labels.resize(count);
  for (std::size_t i = 0; i < count; ++i) {
    d.labels[i] = static_cast<std::uint8_t>(i % nanomlp::kNumClasses);
    for (std::size_t p = 0; p < 40; ++p) {
      d.images[i * nanomlp::kImagePixels + 300 + 7 * i + p] = 200;
    }
  }
  return d;
}

const nanomlp::DataSplit& data() {
  static const nanomlp::DataSplit split = [] {
    nanomlp::DataSplit s;
    s.name = "mnist";
    s.dir = "fuzz";
    s.train = tiny_dataset(4);
    s.test = tiny_dataset(2);
    return s;
  }();
  return split;
}

const std::string& folder() {
  // Never destroyed: the atexit handler below may outlive function-local statics.
  static const std::string* dir = new std::string(nanomlp_fuzz::temp_path("checkpoints"));
  return *dir;
}

void remove_folder() {
  std::error_code ec;
  fs::remove_all(folder(), ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nanomlp::ThreadPool::global().set_num_threads(1);
  if (const char* out = std::getenv("NANOMLP_FUZZ_WRITE_SEED"); out != nullptr) {
    nanomlp::Network<float> net(architecture());
    nanomlp::run_training(net, data(), options(out, false));
    std::printf("wrote %s/checkpoint-epoch-0001.safetensors\n", out);
    std::exit(0);
  }
  std::atexit(remove_folder);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  remove_folder();  // the run may have written checkpoints of its own
  fs::create_directories(folder());
  nanomlp_fuzz::write_bytes(folder() + "/checkpoint-epoch-0001.safetensors", bytes, size);
  nanomlp_fuzz::expect_typed_errors([&] {
    nanomlp::Network<float> net(architecture());
    (void)nanomlp::run_training(net, data(), options(folder(), true));
  });
  return 0;
}
