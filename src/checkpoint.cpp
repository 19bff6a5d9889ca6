#include <cstdio>
#include <cstring>
#include <filesystem>
#include <regex>

#include "nanomlp/errors.hpp"
#include "nanomlp/json_input.hpp"
#include "nanomlp/metrics.hpp"
#include "nanomlp/model_io.hpp"
#include "nanomlp/safetensors.hpp"
#include "train_state.hpp"

namespace nanomlp {
namespace fs = std::filesystem;

namespace {

constexpr const char* kCheckpointFormat = "nanomlp-checkpoint";
// 2: optimizer state of a Linear weight follows the layer's (in, out) layout; version 1 held it
// (out, in), so its momenta would land on the wrong weights.
constexpr int kCheckpointVersion = 2;

std::string checkpoint_name(std::size_t epoch) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoint-epoch-%04zu.safetensors", epoch);
  return buf;
}

// The newest checkpoint: the highest epoch number in the folder; empty if there is none.
std::string newest_checkpoint(const std::string& dir) {
  static const std::regex pattern(R"(checkpoint-epoch-(\d+)\.safetensors)");
  std::string best;
  long best_epoch = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern) && std::stol(m[1]) > best_epoch) {
      best_epoch = std::stol(m[1]);
      best = entry.path().string();
    }
  }
  return best;
}

std::string rng_to_string(const Rng& rng) {
  std::string s;
  for (std::uint64_t w : rng.state()) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(w));
    s += buf;
  }
  return s;
}

void rng_from_string(Rng& rng, const std::string& s, const std::string& source) {
  if (s.size() != 64) throw ModelFormatError(source + ": corrupt generator state in checkpoint");
  std::array<std::uint64_t, 4> st{};
  for (std::size_t i = 0; i < 4; ++i) st[i] = std::stoull(s.substr(i * 16, 16), nullptr, 16);
  rng.set_state(st);
}

// Doubles travel as their exact bit pattern so a resumed run compares them identically.
std::string double_bits(double v) {
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof u);
  return std::to_string(u);
}
double double_from_bits(const std::string& s) {
  const std::uint64_t u = std::stoull(s);
  double v = 0;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

void copy_into(const TensorEntry* t, Matrix& dst, const std::string& name,
               const std::string& source) {
  if (t == nullptr) throw ModelFormatError(source + ": checkpoint lacks tensor '" + name + "'");
  const std::vector<float> v = t->to_f32();
  if (v.size() != dst.size()) {
    throw ModelFormatError(source + ": checkpoint tensor '" + name + "' has " +
                           std::to_string(v.size()) + " values, expected " +
                           std::to_string(dst.size()));
  }
  std::copy(v.begin(), v.end(), dst.data());
}

}  // namespace

void write_checkpoint(const TrainOptions& options, Network<float>& net, Optimizer& optimizer,
                      const TrainState& state) {
  SafeTensors st = model_to_safetensors(net);
  for (auto& t : st.tensors) t.name = "model." + t.name;
  for (const auto& slot : optimizer.slots()) {
    st.tensors.push_back(TensorEntry::from_f32(
        "optim." + slot.name, {static_cast<std::int64_t>(slot.value->size())}, slot.value->data()));
  }
  for (std::size_t i = 0; i < state.best.tensors.size(); ++i) {
    const Matrix& t = state.best.tensors[i];
    st.tensors.push_back(TensorEntry::from_f32("best." + std::to_string(i),
                                               {static_cast<std::int64_t>(t.size())}, t.data()));
  }
  st.metadata["format"] = kCheckpointFormat;
  st.metadata["checkpoint_version"] = std::to_string(kCheckpointVersion);
  st.metadata["options"] = options.to_json();
  st.metadata["epoch"] = std::to_string(state.epoch);
  st.metadata["step"] = std::to_string(state.step);
  st.metadata["optimizer_steps"] = std::to_string(optimizer.steps());
  st.metadata["shuffle_rng"] = rng_to_string(state.shuffle_rng);
  st.metadata["dropout_rng"] = rng_to_string(state.dropout_rng);
  st.metadata["best_epoch"] = std::to_string(state.best_epoch);
  st.metadata["best_val_accuracy"] = double_bits(state.best_val_accuracy);
  st.metadata["best_count"] = std::to_string(state.best.tensors.size());
  st.metadata["best_counters"] = nlohmann::json(state.best.counters).dump();
  st.metadata["records"] = nlohmann::ordered_json(state.records).dump();
  write_safetensors_file((fs::path(options.checkpoint_dir) / checkpoint_name(state.epoch)).string(),
                         st);
}

std::size_t prepare_checkpoints(const TrainOptions& options, Network<float>& net,
                                Optimizer& optimizer, TrainState& state,
                                const std::function<void(const std::string&)>& on_message) {
  const std::string& dir = options.checkpoint_dir;
  if (!options.resume) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      throw IoError("--checkpoint-dir: cannot create folder " + dir + ": " + ec.message());
    }
    const std::string existing = newest_checkpoint(dir);
    if (!existing.empty()) {
      throw UsageError("--checkpoint-dir: " + dir + " already holds checkpoints (" + existing +
                       "); pass --resume to continue that run, or choose an empty folder");
    }
    return 0;
  }
  const std::string path = newest_checkpoint(dir);
  if (path.empty()) {
    throw UsageError("--resume: no checkpoint-epoch-*.safetensors found in " + dir);
  }
  const SafeTensors st = read_safetensors_file(path);
  auto meta = [&](const std::string& key) -> std::string {
    auto it = st.metadata.find(key);
    if (it == st.metadata.end()) {
      throw ModelFormatError(path + ": corrupt checkpoint: no '" + key + "' in __metadata__");
    }
    return it->second;
  };
  if (meta("format") != kCheckpointFormat) {
    throw ModelFormatError(path + ": not a nanomlp checkpoint (format '" + meta("format") + "')");
  }
  if (meta("checkpoint_version") != std::to_string(kCheckpointVersion)) {
    throw ModelFormatError(path + ": checkpoint version '" + meta("checkpoint_version") +
                           "' is not supported by this nanomlp (reads " +
                           std::to_string(kCheckpointVersion) + ")");
  }
  const Architecture arch = Architecture::from_json(meta("architecture"), path);
  if (arch.to_json() != net.architecture().to_json()) {
    throw UsageError("--resume: checkpoint " + path + " is for a different architecture (" +
                     arch.describe() + "), this run is " + net.architecture().describe());
  }
  if (meta("options") != options.to_json()) {
    throw UsageError("--resume: checkpoint " + path +
                     " was written with different training settings: " + meta("options"));
  }
  try {
    SafeTensors model = st;
    model.tensors.clear();
    for (const auto& t : st.tensors) {
      if (t.name.rfind("model.", 0) == 0) {
        model.tensors.push_back(t);
        model.tensors.back().name = t.name.substr(6);
      }
    }
    // Into the caller's network, whose tensors the trainer and optimizer already point at.
    Network<float> restored = model_from_safetensors(model, path);
    WeightsSnapshot weights;
    weights.take(restored);
    weights.put(net);
    for (const auto& slot : optimizer.slots()) {
      copy_into(st.find("optim." + slot.name), *slot.value, "optim." + slot.name, path);
    }
    optimizer.set_steps(std::stoll(meta("optimizer_steps")));
    state.epoch = std::stoul(meta("epoch"));
    state.step = std::stoll(meta("step"));
    rng_from_string(state.shuffle_rng, meta("shuffle_rng"), path);
    rng_from_string(state.dropout_rng, meta("dropout_rng"), path);
    state.best_epoch = std::stoul(meta("best_epoch"));
    state.best_val_accuracy = double_from_bits(meta("best_val_accuracy"));
    const std::size_t best_count = std::stoul(meta("best_count"));
    state.best = WeightsSnapshot{};
    if (best_count > 0) {
      state.best.take(net);  // the shapes to read into
      if (state.best.tensors.size() != best_count) {
        throw ModelFormatError(path + ": best-weights snapshot does not match the network");
      }
      for (std::size_t i = 0; i < best_count; ++i) {
        copy_into(st.find("best." + std::to_string(i)), state.best.tensors[i],
                  "best." + std::to_string(i), path);
      }
      const std::size_t counters = state.best.counters.size();  // the network's, from above
      state.best.counters =
          parse_untrusted_json(meta("best_counters")).get<std::vector<std::int64_t>>();
      if (state.best.counters.size() != counters) {
        throw ModelFormatError(path + ": corrupt best_counters in checkpoint");
      }
    }
    state.records = parse_untrusted_json(meta("records")).get<std::vector<EpochRecord>>();
  } catch (const nlohmann::json::exception& e) {
    throw ModelFormatError(path + ": corrupt checkpoint metadata: " + e.what());
  } catch (const JsonInputError& e) {
    throw ModelFormatError(path + ": corrupt checkpoint metadata: " + e.what());
  } catch (const std::invalid_argument& e) {
    throw ModelFormatError(path + ": corrupt checkpoint metadata: " + e.what());
  } catch (const std::out_of_range& e) {
    throw ModelFormatError(path + ": corrupt checkpoint metadata: " + e.what());
  }
  if (on_message) {
    on_message("resuming from " + path + " (epoch " + std::to_string(state.epoch) + " of " +
               std::to_string(options.epochs) + ")");
  }
  return state.epoch;
}

}  // namespace nanomlp
