#include "nanomlp/io/checkpoint.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <regex>
#include <utility>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/json_input.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/train/metrics.hpp"
#include "nanomlp/train/train_state.hpp"

namespace nanomlp {
namespace fs = std::filesystem;

namespace {

// 2: optimizer state of a Linear weight follows the layer's (in, out) layout; version 1 held it
// (out, in), so its momenta would land on the wrong weights.
constexpr int kCheckpointVersion = 2;

std::string checkpoint_name(std::size_t epoch) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoint-epoch-%04zu.safetensors", epoch);
  return buf;
}

// The checkpoints in dir, newest (highest epoch) first. A name that matches the pattern but
// whose epoch does not fit (checkpoint-epoch-99999999999999999999) is a clear error, not a
// std::stol exception.
std::vector<std::string> checkpoints_newest_first(const std::string& dir) {
  static const std::regex pattern(R"(checkpoint-epoch-(\d+)\.safetensors)");
  std::vector<std::pair<unsigned long, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    if (m[1].length() > 9) {
      throw UsageError("--checkpoint-dir: " + dir + " holds " + printable(name) +
                       ", whose epoch number has more than 9 digits (expected "
                       "checkpoint-epoch-NNNN.safetensors as nanomlp writes them)");
    }
    found.emplace_back(std::stoul(m[1]), entry.path().string());
  }
  std::sort(found.begin(), found.end(), std::greater<>());
  std::vector<std::string> paths;
  for (auto& [epoch, path] : found) paths.push_back(std::move(path));
  return paths;
}

// Temporary files of checkpoint writes that a killed run left behind
// (checkpoint-epoch-0003.safetensors.tmp.PID, see write_safetensors_file, and the probe of
// check_checkpoint_dir), whose process is gone.
void remove_leftover_temporaries(const std::string& dir,
                                 const std::function<void(const std::string&)>& on_message) {
  static const std::regex pattern(R"(checkpoint-epoch-\d+\.safetensors\.(?:tmp|probe)\.(\d{1,9}))");
  std::error_code ec;
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    const auto pid = static_cast<pid_t>(std::stol(m[1]));
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(entry.path());
  }
  for (const fs::path& path : stale) {
    if (fs::remove(path, ec) && on_message) {
      on_message("removed " + path.string() + ", left by an interrupted checkpoint write");
    }
  }
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

// The settings the checkpoint was written with against this run's, field by field. Every field
// that changes the weights must match; only --epochs may grow, which extends a run (finished or
// not) with the schedule recomputed for the new length.
void check_same_settings(const std::string& path, const std::string& stored,
                         const TrainOptions& options,
                         const std::function<void(const std::string&)>& on_message) {
  nlohmann::json was;
  try {
    was = parse_untrusted_json(stored);
  } catch (const JsonInputError& e) {
    throw ModelFormatError(path + ": corrupt checkpoint metadata: options: " + e.what());
  }
  const nlohmann::json now = nlohmann::json::parse(options.to_json());
  // A value as the user would type it; a structured one (a damaged file) by its size.
  const auto shown = [](const nlohmann::json& v) {
    return v.is_primitive()
               ? printable(v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 40)
               : describe_json(v);
  };
  std::string differences;
  std::size_t epochs_before = 0;
  for (const auto& [key, value] : now.items()) {
    const auto it = was.find(key);
    if (it != was.end() && *it == value) continue;
    if (key == "epochs" && it != was.end() && it->is_number_unsigned() &&
        value.get<std::size_t>() > it->get<std::size_t>()) {
      epochs_before = it->get<std::size_t>();
      continue;
    }
    differences += (differences.empty() ? "" : ", ") + key + " " +
                   (it == was.end() ? "(absent)" : shown(*it)) + " -> " + shown(value);
  }
  if (!differences.empty()) {
    throw UsageError("--resume: checkpoint " + path +
                     " was written with different training settings (checkpoint -> this run: " +
                     differences + "); only --epochs may change, to extend the run");
  }
  if (epochs_before > 0 && on_message) {
    on_message("extending the run from " + std::to_string(epochs_before) + " to " +
               std::to_string(options.epochs) + " epochs (the schedule is recomputed for " +
               std::to_string(options.epochs) + ")");
  }
}

}  // namespace

void check_checkpoint_dir(const std::string& checkpoint_dir) {
  if (checkpoint_dir.empty() || !fs::is_directory(checkpoint_dir)) return;
  const std::string probe = (fs::path(checkpoint_dir) / checkpoint_name(0)).string();
  if (const int err = probe_new_file(probe); err != 0) {
    throw IoError("--checkpoint-dir: cannot write checkpoints in folder " + checkpoint_dir + ": " +
                  os_error_text(err));
  }
}

void CheckpointFiles::write(const TrainOptions& options, Network<float>& net, Optimizer& optimizer,
                            const TrainState& state) {
  SafeTensors st = model_to_safetensors(net);
  for (auto& t : st.tensors) t.name = kCheckpointModelPrefix + t.name;
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

namespace {

// A checkpoint read from path; every metadata entry it is asked for must be there.
struct CheckpointView {
  const std::string& path;
  const SafeTensors& st;

  std::string meta(const std::string& key) const {
    auto it = st.metadata.find(key);
    if (it == st.metadata.end()) {
      throw ModelFormatError(path + ": corrupt checkpoint: no '" + key + "' in __metadata__");
    }
    return it->second;
  }
};

// That the checkpoint is one this nanomlp reads, of this run's architecture and settings.
void check_resumable(const CheckpointView& ck, const TrainOptions& options,
                     const Architecture& current,
                     const std::function<void(const std::string&)>& on_message) {
  const std::string& path = ck.path;
  if (ck.meta("format") != kCheckpointFormat) {
    throw ModelFormatError(path + ": not a nanomlp checkpoint (format '" + ck.meta("format") +
                           "')");
  }
  if (ck.meta("checkpoint_version") != std::to_string(kCheckpointVersion)) {
    throw ModelFormatError(path + ": checkpoint version '" + ck.meta("checkpoint_version") +
                           "' is not supported by this nanomlp (reads " +
                           std::to_string(kCheckpointVersion) + ")");
  }
  const Architecture arch = Architecture::from_json(ck.meta("architecture"), path);
  if (arch.to_json() != current.to_json()) {
    throw UsageError("--resume: checkpoint " + path + " is for a different architecture (" +
                     arch.describe() + "), this run is " + current.describe());
  }
  check_same_settings(path, ck.meta("options"), options, on_message);
}

// Into the caller's network, whose tensors the trainer and optimizer already point at.
void restore_network(const CheckpointView& ck, Network<float>& net) {
  Network<float> restored = model_from_safetensors(ck.st, ck.path);  // its "model." tensors
  WeightsSnapshot weights;
  weights.take(restored);
  weights.put(net);
}

void restore_optimizer(const CheckpointView& ck, Optimizer& optimizer) {
  for (const auto& slot : optimizer.slots()) {
    copy_into(ck.st.find("optim." + slot.name), *slot.value, "optim." + slot.name, ck.path);
  }
  optimizer.set_steps(std::stoll(ck.meta("optimizer_steps")));
}

// Where the run stands: epoch, step, generators and the best validation result so far.
void restore_progress(const CheckpointView& ck, TrainState& state) {
  state.epoch = std::stoul(ck.meta("epoch"));
  state.step = std::stoll(ck.meta("step"));
  rng_from_string(state.shuffle_rng, ck.meta("shuffle_rng"), ck.path);
  rng_from_string(state.dropout_rng, ck.meta("dropout_rng"), ck.path);
  state.best_epoch = std::stoul(ck.meta("best_epoch"));
  state.best_val_accuracy = double_from_bits(ck.meta("best_val_accuracy"));
}

// The snapshot of the best weights that early stopping returns to; none if best_count is 0.
void restore_best_weights(const CheckpointView& ck, Network<float>& net, TrainState& state) {
  const std::size_t best_count = std::stoul(ck.meta("best_count"));
  state.best = WeightsSnapshot{};
  if (best_count == 0) return;
  state.best.take(net);  // the shapes to read into
  if (state.best.tensors.size() != best_count) {
    throw ModelFormatError(ck.path + ": best-weights snapshot does not match the network");
  }
  for (std::size_t i = 0; i < best_count; ++i) {
    copy_into(ck.st.find("best." + std::to_string(i)), state.best.tensors[i],
              "best." + std::to_string(i), ck.path);
  }
  const std::size_t counters = state.best.counters.size();  // the network's, from above
  state.best.counters =
      parse_untrusted_json(ck.meta("best_counters")).get<std::vector<std::int64_t>>();
  if (state.best.counters.size() != counters) {
    throw ModelFormatError(ck.path + ": corrupt best_counters in checkpoint");
  }
}

// Restores the run from the checkpoint st read from path; returns its epoch.
std::size_t resume_from(const std::string& path, const SafeTensors& st, const TrainOptions& options,
                        Network<float>& net, Optimizer& optimizer, TrainState& state,
                        const std::function<void(const std::string&)>& on_message) {
  const CheckpointView ck{path, st};
  check_resumable(ck, options, net.architecture(), on_message);
  try {
    restore_network(ck, net);
    restore_optimizer(ck, optimizer);
    restore_progress(ck, state);
    restore_best_weights(ck, net, state);
    state.records = parse_untrusted_json(ck.meta("records")).get<std::vector<EpochRecord>>();
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

}  // namespace

std::size_t CheckpointFiles::prepare(const TrainOptions& options, Network<float>& net,
                                     Optimizer& optimizer, TrainState& state,
                                     const std::function<void(const std::string&)>& on_message) {
  const std::string& dir = options.checkpoint_dir;
  if (!options.resume) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec || !fs::is_directory(dir)) {
      throw IoError("--checkpoint-dir: cannot create folder " + dir + ": " + ec.message());
    }
  }
  check_checkpoint_dir(dir);
  remove_leftover_temporaries(dir, on_message);
  const std::vector<std::string> paths = checkpoints_newest_first(dir);
  if (!options.resume) {
    if (!paths.empty()) {
      throw UsageError("--checkpoint-dir: " + dir + " already holds checkpoints (" + paths.front() +
                       "); pass --resume to continue that run, or choose an empty folder");
    }
    return 0;
  }
  if (paths.empty()) {
    throw UsageError("--resume: no checkpoint-epoch-*.safetensors found in " + dir);
  }
  // A damaged file (cut short by a power cut, overwritten) falls back to the next older one;
  // a readable checkpoint whose content is wrong, or is for other settings, stops the run.
  for (std::size_t i = 0;; ++i) {
    SafeTensors st;
    try {
      st = read_safetensors_file(paths[i]);
    } catch (const Error& e) {
      if (i + 1 == paths.size()) throw;
      if (on_message) {
        on_message("warning: " + std::string(e.what()) +
                   "; resuming from the previous checkpoint, " + paths[i + 1]);
      }
      continue;
    }
    return resume_from(paths[i], st, options, net, optimizer, state, on_message);
  }
}

}  // namespace nanomlp
