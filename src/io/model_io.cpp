#include "nanomlp/io/model_io.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <stdexcept>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/json_input.hpp"

namespace nanomlp {
namespace {

// PyTorch keeps a bias, a batch-norm scale and the running statistics as 1-D tensors; nanomlp
// keeps every tensor as a (1, H) matrix. Format version 1 wrote a batch-norm weight [1, H] (every
// "weight" was taken for a matrix), which PyTorch's load_state_dict refuses; version 2 writes it
// [H], and a version 1 file is still read in its own layout.
std::vector<std::int64_t> torch_shape(const std::string& name, const Matrix& m, int version) {
  const bool legacy_matrix = version < 2 && name.find("weight") != std::string::npos;
  if (m.rows() == 1 && !legacy_matrix) return {static_cast<std::int64_t>(m.cols())};
  return {static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
}

// A parameter as a file of format `version` holds it: its shape there and its values in that
// layout.
std::vector<std::int64_t> file_shape(const Param<float>& p, int version) {
  if (!p.transposed_in_file) return torch_shape(p.name, *p.value, version);
  return {static_cast<std::int64_t>(p.value->cols()), static_cast<std::int64_t>(p.value->rows())};
}

// dst (cols, rows) = src^T for a row-major src (rows, cols).
void transpose(const float* src, std::size_t rows, std::size_t cols, float* dst) {
  for (std::size_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
}

std::vector<float> file_values(const Param<float>& p) {
  const Matrix& m = *p.value;
  if (!p.transposed_in_file) return {m.begin(), m.end()};
  std::vector<float> t(m.size());
  transpose(m.data(), m.rows(), m.cols(), t.data());
  return t;
}

std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A tensor the architecture needs, as the file holds it.
struct ExpectedTensor {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
};

// The tensors of the network `arch` describes, in file order, worked out from the
// architecture alone so that a file can be checked before any layer is allocated: a header
// that claims a million hidden units and holds no tensors costs nothing. The names and shapes
// follow the Network constructor (nn.Sequential indices) and model_to_safetensors; the load
// below checks the built network against the same file, so the two cannot drift apart.
std::vector<ExpectedTensor> expected_tensors(const Architecture& arch, int version) {
  std::vector<ExpectedTensor> out;
  std::size_t index = 0;
  const auto i64 = [](std::size_t n) { return static_cast<std::int64_t>(n); };
  const auto linear = [&](std::size_t in, std::size_t width) {
    const std::string p = std::to_string(index++) + ".";
    out.push_back({p + "weight", "F32", {i64(width), i64(in)}});
    out.push_back({p + "bias", "F32", {i64(width)}});
  };
  std::size_t in = arch.input_dim;
  for (std::size_t h : arch.hidden) {
    linear(in, h);
    if (arch.batch_norm) {
      const std::string p = std::to_string(index++) + ".";
      if (version < 2) {
        out.push_back({p + "weight", "F32", {1, i64(h)}});  // see torch_shape
      } else {
        out.push_back({p + "weight", "F32", {i64(h)}});
      }
      out.push_back({p + "bias", "F32", {i64(h)}});
      out.push_back({p + "running_mean", "F32", {i64(h)}});
      out.push_back({p + "running_var", "F32", {i64(h)}});
      out.push_back({p + "num_batches_tracked", "I64", {}});
    }
    ++index;  // the activation
    if (arch.dropout > 0.0) ++index;
    in = h;
  }
  linear(in, arch.num_classes);
  return out;
}

// The model's tensors in a file: all of them in a model file; in a checkpoint those named
// kCheckpointModelPrefix + name, beside the optimizer state. Messages name the file's tensors
// as the file does.
struct ModelTensors {
  const SafeTensors& st;
  std::string prefix;

  const TensorEntry* find(const std::string& name) const { return st.find(prefix + name); }
  bool holds(const TensorEntry& t) const { return t.name.rfind(prefix, 0) == 0; }
  std::size_t count() const {
    return static_cast<std::size_t>(std::count_if(st.tensors.begin(), st.tensors.end(),
                                                  [&](const TensorEntry& t) { return holds(t); }));
  }
};

// Every tensor the architecture needs is in the file with its dtype and shape, and no other.
void check_tensors_against(const ModelTensors& file, const Architecture& arch, int version,
                           const std::string& source) {
  std::set<std::string> expected;
  for (const ExpectedTensor& e : expected_tensors(arch, version)) {
    const std::string name = file.prefix + e.name;
    expected.insert(name);
    const TensorEntry* t = file.find(e.name);
    if (t == nullptr) {
      throw ModelFormatError(source + ": tensor '" + name + "' required by the architecture (" +
                             arch.describe() + ") is missing");
    }
    if (t->shape != e.shape || t->dtype != e.dtype) {
      const std::string what =
          e.shape.empty() ? "an I64 scalar []" : e.dtype + " " + shape_str(e.shape);
      throw ModelFormatError(source + ": tensor '" + name + "' should be " + what +
                             " for architecture " + arch.describe() + ", found " + t->dtype + " " +
                             shape_str(t->shape));
    }
  }
  for (const auto& t : file.st.tensors) {
    if (file.holds(t) && expected.count(t.name) == 0) {
      throw ModelFormatError(source + ": unexpected tensor '" + printable(t.name, 80) +
                             "' for architecture " + arch.describe());
    }
  }
}

// The format version the metadata states, checked to be one this nanomlp reads.
int format_version(const std::string& version, const std::string& source) {
  int v = 0;
  try {
    v = std::stoi(version);
  } catch (const std::exception&) {
    throw ModelFormatError(source + ": format_version should be an integer, found '" + version +
                           "'");
  }
  if (v < 1 || v > kModelFormatVersion) {
    throw ModelFormatError(source + ": model format version " + version +
                           " is not supported by this nanomlp (reads 1.." +
                           std::to_string(kModelFormatVersion) + ")");
  }
  return v;
}

}  // namespace

SafeTensors model_to_safetensors(Network<float>& net,
                                 const std::map<std::string, std::string>& extra_metadata) {
  SafeTensors st;
  st.metadata = extra_metadata;
  st.metadata["format"] = "nanomlp";
  st.metadata["format_version"] = std::to_string(kModelFormatVersion);
  st.metadata["architecture"] = net.architecture().to_json();
  // Module by module, parameters then buffers: the order of PyTorch's state_dict().
  for (auto& layer : net.layers()) {
    for (const auto& p : layer->params()) {
      st.tensors.push_back(
          TensorEntry::from_f32(p.name, file_shape(p, kModelFormatVersion), file_values(p).data()));
    }
    for (const auto& b : layer->buffers()) {
      st.tensors.push_back(TensorEntry::from_f32(
          b.name, torch_shape(b.name, *b.value, kModelFormatVersion), b.value->data()));
    }
    for (const auto& [name, value] : layer->counters()) {
      st.tensors.push_back(TensorEntry::from_i64(name, {}, value));  // a scalar, shape []
    }
  }
  return st;
}

bool is_checkpoint(const SafeTensors& st) {
  const auto it = st.metadata.find("format");
  return it != st.metadata.end() && it->second == kCheckpointFormat;
}

Network<float> model_from_safetensors(const SafeTensors& st, const std::string& source) {
  const bool checkpoint = is_checkpoint(st);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = st.metadata.find(key);
    if (it == st.metadata.end()) {
      throw ModelFormatError(source +
                             (checkpoint ? ": corrupt checkpoint" : ": not a nanomlp model") +
                             ": __metadata__ has no '" + key + "' entry");
    }
    return it->second;
  };
  const int v = format_version(meta("format_version"), source);
  const Architecture arch = Architecture::from_json(meta("architecture"), source);
  const ModelTensors file{st, checkpoint ? kCheckpointModelPrefix : ""};
  check_tensors_against(file, arch, v, source);  // before the network is allocated
  Network<float> net(arch);

  // The file was checked against the architecture above; a tensor the built network wants
  // and the check did not is a bug here, not a bad file.
  std::size_t loaded = 0;
  const auto find = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
    const TensorEntry* t = file.find(name);
    if (t == nullptr || t->shape != shape) {
      throw std::logic_error("model_from_safetensors: tensor '" + name +
                             "' of the network was not checked against the file");
    }
    ++loaded;
    return t;
  };
  const auto load = [&](const std::string& name, Matrix& dst, bool transposed) {
    const TensorEntry* t = find(name, file_shape({name, &dst, nullptr, transposed}, v));
    const std::vector<float> values = t->to_f32();
    if (!std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); })) {
      throw ModelFormatError(source + ": tensor '" + file.prefix + name +
                             "' holds NaN or infinite values");
    }
    if (transposed) {
      transpose(values.data(), dst.cols(), dst.rows(), dst.data());  // file (cols, rows)
    } else {
      std::copy(values.begin(), values.end(), dst.data());
    }
  };
  for (auto& p : net.params()) load(p.name, *p.value, p.transposed_in_file);
  for (auto& b : net.buffers()) load(b.name, *b.value, false);
  for (auto& layer : net.layers()) {
    for (auto& [name, value] : layer->counters()) *value = find(name, {})->to_i64()[0];
  }
  if (loaded != file.count()) {
    throw std::logic_error("model_from_safetensors: the network holds " + std::to_string(loaded) +
                           " tensors, the checked file " + std::to_string(file.count()));
  }
  return net;
}

void save_model(const std::string& path, Network<float>& net,
                const std::map<std::string, std::string>& extra_metadata) {
  write_safetensors_file(path, model_to_safetensors(net, extra_metadata));
}

Network<float> load_model(const std::string& path) {
  return model_from_safetensors(read_safetensors_file(path), path);
}

}  // namespace nanomlp
