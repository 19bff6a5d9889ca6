#include "nanomlp/io/safetensors.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/json_input.hpp"

namespace nanomlp {
namespace fs = std::filesystem;

namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

// Same cap as the reference implementation: a larger header is certainly corrupt, and
// refusing it up front keeps a hostile length field from driving a huge allocation.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
// Our models are a few MB; anything past this is not a file we wrote, and reading it whole
// into memory would only fail later and more confusingly.
constexpr std::uint64_t kMaxFileBytes = std::uint64_t{2} << 30;
constexpr std::size_t kLengthPrefixBytes = 8;
constexpr std::size_t kHeaderAlignment = 8;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kSupportedDtypes = "F32, I64";

// Explicit byte-by-byte encoding keeps the on-disk format little-endian whatever the host
// byte order is; the compiler turns these loops into plain loads/stores on x86_64.
template <typename U>
void store_le(std::uint8_t* dst, U value) {
  static_assert(std::is_unsigned_v<U>);
  for (std::size_t i = 0; i < sizeof(U); ++i) {
    dst[i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

template <typename U>
U load_le(const std::uint8_t* src) {
  static_assert(std::is_unsigned_v<U>);
  U value = 0;
  for (std::size_t i = 0; i < sizeof(U); ++i) value |= static_cast<U>(src[i]) << (8 * i);
  return value;
}

// Bytes per element, or 0 for a dtype nanomlp does not handle.
std::size_t dtype_size(std::string_view dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "I64") return 8;
  return 0;
}

std::string shape_to_string(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

// Element count of a shape, or an explanation of why it has none. Overflow matters because the
// shape comes from an untrusted file and feeds a byte count used for bounds checks.
bool checked_numel(const std::vector<std::int64_t>& shape, std::uint64_t& numel,
                   std::string& error) {
  numel = 1;
  for (std::int64_t dim : shape) {
    if (dim < 0) {
      error = "negative dimension " + std::to_string(dim) + " in shape " + shape_to_string(shape);
      return false;
    }
    if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(dim), &numel)) {
      error = "shape " + shape_to_string(shape) + " has more elements than fit in 64 bits";
      return false;
    }
  }
  return true;
}

// Byte size of a tensor's data, or an explanation of why the dtype/shape pair is invalid.
bool checked_byte_size(const std::string& dtype, const std::vector<std::int64_t>& shape,
                       std::uint64_t& bytes, std::string& error) {
  const std::size_t item = dtype_size(dtype);
  if (item == 0) {
    error = "unsupported dtype '" + dtype + "' (supported: " + kSupportedDtypes + ")";
    return false;
  }
  std::uint64_t numel = 0;
  if (!checked_numel(shape, numel, error)) return false;
  if (__builtin_mul_overflow(numel, static_cast<std::uint64_t>(item), &bytes)) {
    error = "shape " + shape_to_string(shape) + " of " + dtype + " overflows 64-bit byte count";
    return false;
  }
  return true;
}

// Names come from the file: shown in printable ASCII, so the message is valid UTF-8.
std::string quoted(const std::string& name) {
  std::string out(1, '\'');
  out += printable(name, 80);
  out += '\'';
  return out;
}

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw ModelFormatError(source + ": " + what);
}

// --- header parsing helpers; each throws a one-line ModelFormatError naming the source. ---

const Json& require_key(const Json& entry, const char* key, const std::string& source,
                        const std::string& name) {
  auto it = entry.find(key);
  if (it == entry.end()) {
    fail(source, "tensor " + quoted(name) + ": expected a \"" + key + "\" field, found none");
  }
  return *it;
}

std::vector<std::int64_t> parse_shape(const Json& value, const std::string& source,
                                      const std::string& name) {
  const std::string where = "tensor " + quoted(name) + ": shape: ";
  if (!value.is_array()) {
    fail(source, where + "expected an array of non-negative integers, found " +
                     std::string(value.type_name()));
  }
  std::vector<std::int64_t> shape;
  shape.reserve(value.size());
  for (const Json& dim : value) {
    if (!dim.is_number_integer()) {
      fail(source, where + "expected an array of non-negative integers, found an element: " +
                       describe_json(dim));
    }
    if (!dim.is_number_unsigned()) {
      fail(source, where + "expected non-negative dimensions, found " +
                       std::to_string(dim.get<std::int64_t>()));
    }
    const auto u = dim.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(source, where + "dimension " + std::to_string(u) + " exceeds the 64-bit signed range");
    }
    shape.push_back(static_cast<std::int64_t>(u));
  }
  return shape;
}

std::pair<std::uint64_t, std::uint64_t> parse_offsets(const Json& value, const std::string& source,
                                                      const std::string& name) {
  const std::string where = "tensor " + quoted(name) + ": data_offsets: ";
  if (!value.is_array() || value.size() != 2) {
    const std::string found = value.is_array()
                                  ? "an array of " + std::to_string(value.size()) + " elements"
                                  : std::string(value.type_name());
    fail(source, where + "expected [begin, end], found " + found);
  }
  for (const Json& v : value) {
    if (!v.is_number_unsigned()) {
      fail(source,
           where + "expected non-negative integers [begin, end], found " + describe_json(v));
    }
  }
  const auto begin = value[0].get<std::uint64_t>();
  const auto end = value[1].get<std::uint64_t>();
  if (begin > end) {
    fail(source, where + "expected begin <= end, found [" + std::to_string(begin) + ", " +
                     std::to_string(end) + "]");
  }
  return {begin, end};
}

std::map<std::string, std::string> parse_metadata(const Json& value, const std::string& source) {
  if (!value.is_object()) {
    fail(source, std::string(kMetadataKey) + ": expected an object of strings, found " +
                     std::string(value.type_name()));
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      fail(source, std::string(kMetadataKey) + " key " + quoted(key) +
                       ": expected a string value, found " + describe_json(v));
    }
    metadata.emplace(key, v.get<std::string>());
  }
  return metadata;
}

struct PendingTensor {
  TensorEntry entry;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

std::string io_message(const std::string& verb, const std::string& path, int err) {
  return "cannot " + verb + " " + path + ": " + os_error_text(err);
}

// Closes a descriptor on every exit path of the reader.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Shared by the string and byte-vector writers so neither has to copy its buffer.
void write_bytes_atomic(const std::string& path, const void* data, std::size_t size) {
  // Same folder as the target so that rename() stays within one file system and is atomic;
  // the pid keeps two processes writing the same output from clobbering each other's temp.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* file = std::fopen(tmp.c_str(), "wb");
  if (file == nullptr) throw IoError(io_message("write", path, errno));

  int err = 0;
  if (size > 0 && std::fwrite(data, 1, size, file) != size) err = errno;
  if (err == 0 && std::fflush(file) != 0) err = errno;
  // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
  if (err == 0 && ::fsync(::fileno(file)) != 0) err = errno;
  if (std::fclose(file) != 0 && err == 0) err = errno;
  if (err == 0 && std::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    std::remove(tmp.c_str());
    throw IoError(io_message("write", path, err));
  }
  // And the folder after the rename, so that a power cut keeps the new name (POSIX leaves the
  // directory entry in the page cache until then). A folder that cannot be opened for reading
  // still holds the file: nothing more to do.
  const std::string dir = fs::path(path).parent_path().empty()
                              ? std::string(".")
                              : fs::path(path).parent_path().string();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

}  // namespace

// --- TensorEntry ---

TensorEntry TensorEntry::from_f32(std::string name, std::vector<std::int64_t> shape,
                                  const float* values) {
  TensorEntry t{std::move(name), "F32", std::move(shape), {}};
  const std::size_t n = t.numel();
  t.data.resize(n * sizeof(float));
  for (std::size_t i = 0; i < n; ++i) {
    store_le(t.data.data() + i * sizeof(float), std::bit_cast<std::uint32_t>(values[i]));
  }
  return t;
}

TensorEntry TensorEntry::from_i64(std::string name, std::vector<std::int64_t> shape,
                                  const std::int64_t* values) {
  TensorEntry t{std::move(name), "I64", std::move(shape), {}};
  const std::size_t n = t.numel();
  t.data.resize(n * sizeof(std::int64_t));
  for (std::size_t i = 0; i < n; ++i) {
    store_le(t.data.data() + i * sizeof(std::int64_t), static_cast<std::uint64_t>(values[i]));
  }
  return t;
}

std::size_t TensorEntry::numel() const {
  std::uint64_t n = 0;
  std::string error;
  if (!checked_numel(shape, n, error) || n > std::numeric_limits<std::size_t>::max()) {
    throw ModelFormatError("tensor " + quoted(name) + ": " + error);
  }
  return static_cast<std::size_t>(n);
}

std::vector<float> TensorEntry::to_f32() const {
  if (dtype != "F32") {
    throw ModelFormatError("tensor " + quoted(name) + ": expected dtype F32, found " + dtype);
  }
  const std::size_t n = numel();
  if (data.size() != n * sizeof(float)) {
    throw ModelFormatError("tensor " + quoted(name) + ": expected " +
                           std::to_string(n * sizeof(float)) + " bytes for shape " +
                           shape_to_string(shape) + " F32, found " + std::to_string(data.size()));
  }
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = std::bit_cast<float>(load_le<std::uint32_t>(data.data() + i * sizeof(float)));
  }
  return out;
}

std::vector<std::int64_t> TensorEntry::to_i64() const {
  if (dtype != "I64") {
    throw ModelFormatError("tensor " + quoted(name) + ": expected dtype I64, found " + dtype);
  }
  const std::size_t n = numel();
  if (data.size() != n * sizeof(std::int64_t)) {
    throw ModelFormatError("tensor " + quoted(name) + ": expected " +
                           std::to_string(n * sizeof(std::int64_t)) + " bytes for shape " +
                           shape_to_string(shape) + " I64, found " + std::to_string(data.size()));
  }
  std::vector<std::int64_t> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] =
        static_cast<std::int64_t>(load_le<std::uint64_t>(data.data() + i * sizeof(std::int64_t)));
  }
  return out;
}

const TensorEntry* SafeTensors::find(const std::string& name) const {
  for (const TensorEntry& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// --- serialisation ---

std::vector<std::uint8_t> serialize_safetensors(const SafeTensors& st) {
  const std::string prefix = "cannot serialize safetensors: ";
  // ordered_json keeps insertion order, so equal inputs give byte-identical files.
  OrderedJson header = OrderedJson::object();
  if (!st.metadata.empty()) {
    OrderedJson meta = OrderedJson::object();
    for (const auto& [key, value] : st.metadata) meta[key] = value;
    header[kMetadataKey] = std::move(meta);
  }

  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const TensorEntry& t : st.tensors) {
    if (t.name == kMetadataKey) {
      throw ModelFormatError(prefix + "tensor name " + quoted(t.name) + " is reserved");
    }
    if (!names.insert(t.name).second) {
      throw ModelFormatError(prefix + "duplicate tensor name " + quoted(t.name));
    }
    std::uint64_t bytes = 0;
    std::string error;
    if (!checked_byte_size(t.dtype, t.shape, bytes, error)) {
      throw ModelFormatError(prefix + "tensor " + quoted(t.name) + ": " + error);
    }
    if (t.data.size() != bytes) {
      throw ModelFormatError(prefix + "tensor " + quoted(t.name) + ": expected " +
                             std::to_string(bytes) + " bytes of data for shape " +
                             shape_to_string(t.shape) + " " + t.dtype + ", found " +
                             std::to_string(t.data.size()));
    }
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = t.dtype;
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + bytes};
    header[t.name] = std::move(entry);
    offset += bytes;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error& e) {
    // Raised for names or metadata that are not valid UTF-8, which the format forbids.
    throw ModelFormatError(prefix + "header is not valid UTF-8: " + e.what());
  }
  text.append((kHeaderAlignment - text.size() % kHeaderAlignment) % kHeaderAlignment, ' ');

  std::vector<std::uint8_t> out(kLengthPrefixBytes + text.size());
  store_le(out.data(), static_cast<std::uint64_t>(text.size()));
  std::memcpy(out.data() + kLengthPrefixBytes, text.data(), text.size());
  out.reserve(out.size() + offset);
  for (const TensorEntry& t : st.tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

// --- parsing ---

namespace {

// The length of the JSON header, checked against the limit and against the file.
std::uint64_t read_header_length(const std::vector<std::uint8_t>& bytes,
                                 const std::string& source) {
  if (bytes.size() < kLengthPrefixBytes) {
    fail(source, "expected at least 8 bytes (the header length), found a file of " +
                     std::to_string(bytes.size()) + " bytes");
  }
  const auto header_len = load_le<std::uint64_t>(bytes.data());
  if (header_len > kMaxHeaderBytes) {
    fail(source, "header length " + std::to_string(header_len) + " exceeds the limit of " +
                     std::to_string(kMaxHeaderBytes) +
                     " bytes (corrupt or not a safetensors file)");
  }
  const std::uint64_t after_prefix = bytes.size() - kLengthPrefixBytes;
  if (header_len > after_prefix) {
    fail(source, "header length " + std::to_string(header_len) + " exceeds file size " +
                     std::to_string(bytes.size()) + " minus the 8-byte length prefix (at most " +
                     std::to_string(after_prefix) + " bytes)");
  }
  return header_len;
}

Json parse_header(const std::vector<std::uint8_t>& bytes, std::uint64_t header_len,
                  const std::string& source) {
  Json header;
  try {
    header = parse_untrusted_json(std::string_view(
        reinterpret_cast<const char*>(bytes.data()) + kLengthPrefixBytes, header_len));
  } catch (const JsonInputError& e) {
    fail(source, std::string("corrupt header: expected JSON, ") + e.what());
  }
  if (!header.is_object()) {
    fail(source,
         "corrupt header: expected a JSON object, found " + std::string(header.type_name()));
  }
  return header;
}

// One tensor's header entry, checked on its own: its fields, and that its data_offsets span
// exactly its size and lie within the data section of data_len bytes.
PendingTensor parse_tensor_entry(const std::string& name, const Json& entry, std::uint64_t data_len,
                                 const std::string& source) {
  if (!entry.is_object()) {
    fail(source, "tensor " + quoted(name) +
                     ": expected an object with dtype, shape and data_offsets, found " +
                     std::string(entry.type_name()));
  }
  const Json& dtype_json = require_key(entry, "dtype", source, name);
  const Json& shape_json = require_key(entry, "shape", source, name);
  const Json& offsets_json = require_key(entry, "data_offsets", source, name);
  if (!dtype_json.is_string()) {
    fail(source, "tensor " + quoted(name) + ": dtype: expected a string, found " +
                     std::string(dtype_json.type_name()));
  }

  PendingTensor p;
  p.entry.name = name;
  p.entry.dtype = dtype_json.get<std::string>();
  p.entry.shape = parse_shape(shape_json, source, name);
  std::tie(p.begin, p.end) = parse_offsets(offsets_json, source, name);

  std::uint64_t expected_bytes = 0;
  std::string error;
  if (!checked_byte_size(p.entry.dtype, p.entry.shape, expected_bytes, error)) {
    fail(source, "tensor " + quoted(name) + ": " + error);
  }
  if (p.end > data_len) {
    fail(source, "tensor " + quoted(name) + ": data_offsets [" + std::to_string(p.begin) + ", " +
                     std::to_string(p.end) + "] end beyond the data section of " +
                     std::to_string(data_len) + " bytes (truncated file?)");
  }
  if (p.end - p.begin != expected_bytes) {
    fail(source, "tensor " + quoted(name) + ": expected " + std::to_string(expected_bytes) +
                     " bytes for shape " + shape_to_string(p.entry.shape) + " " + p.entry.dtype +
                     ", found data_offsets [" + std::to_string(p.begin) + ", " +
                     std::to_string(p.end) + "] spanning " + std::to_string(p.end - p.begin) +
                     " bytes");
  }
  return p;
}

// The spec requires the data section to be fully indexed: tensors packed in offset order with
// no overlap, no gap and no trailing bytes. Sorts pending into that order; the stable sort
// keeps zero-size ties deterministic.
void sort_and_check_packing(std::vector<PendingTensor>& pending, std::uint64_t data_len,
                            const std::string& source) {
  std::stable_sort(pending.begin(), pending.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t cursor = 0;
  const std::string* previous = nullptr;
  for (const PendingTensor& p : pending) {
    // Appended rather than "[" + ...: GCC 12 warns (-Wrestrict, a false positive) on that form
    // once this function is inlined.
    std::string range = "[";
    range += std::to_string(p.begin) + ", " + std::to_string(p.end) + "]";
    if (p.begin < cursor) {
      fail(source, "tensor " + quoted(p.entry.name) + ": data_offsets " + range +
                       " overlap tensor " + quoted(*previous) + " which ends at byte " +
                       std::to_string(cursor));
    }
    if (p.begin > cursor) {
      fail(source, "tensor " + quoted(p.entry.name) + ": expected data to start at byte " +
                       std::to_string(cursor) + ", found data_offsets " + range + " (gap of " +
                       std::to_string(p.begin - cursor) +
                       " unused bytes; tensors must be packed without gaps)");
    }
    cursor = p.end;
    previous = &p.entry.name;
  }
  if (cursor != data_len) {
    fail(source, "expected tensors to cover the whole data section of " + std::to_string(data_len) +
                     " bytes, found " + std::to_string(data_len - cursor) +
                     " trailing unused bytes after byte " + std::to_string(cursor));
  }
}

}  // namespace

SafeTensors parse_safetensors(const std::vector<std::uint8_t>& bytes, const std::string& source) {
  const std::uint64_t header_len = read_header_length(bytes, source);
  const Json header = parse_header(bytes, header_len, source);
  const std::uint8_t* data_section = bytes.data() + kLengthPrefixBytes + header_len;
  const std::uint64_t data_len = bytes.size() - kLengthPrefixBytes - header_len;

  SafeTensors st;
  std::vector<PendingTensor> pending;
  pending.reserve(header.size());
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      st.metadata = parse_metadata(entry, source);
      continue;
    }
    pending.push_back(parse_tensor_entry(name, entry, data_len, source));
  }
  sort_and_check_packing(pending, data_len, source);

  st.tensors.reserve(pending.size());
  for (PendingTensor& p : pending) {
    p.entry.data.assign(data_section + p.begin, data_section + p.end);
    st.tensors.push_back(std::move(p.entry));
  }
  return st;
}

// --- files ---

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_bytes_atomic(path, contents.data(), contents.size());
}

int probe_new_file(const std::string& path) {
  const std::string probe = path + ".probe." + std::to_string(::getpid());
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  ::close(fd);
  ::unlink(probe.c_str());
  return 0;
}

std::vector<std::string> remove_stale_temporaries(const std::string& path) {
  const fs::path target(path);
  const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
  const std::string name = target.filename().string();
  std::vector<fs::path> stale;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string other = entry.path().filename().string();
    if (other.size() <= name.size() || other.compare(0, name.size(), name) != 0) continue;
    const std::string_view rest = std::string_view(other).substr(name.size());
    std::string_view digits;
    for (std::string_view suffix : {".tmp.", ".probe."}) {
      if (rest.substr(0, suffix.size()) == suffix) digits = rest.substr(suffix.size());
    }
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      continue;
    }
    const auto pid = static_cast<pid_t>(std::stol(std::string(digits)));
    // kill(pid, 0) fails with ESRCH only for a process that is gone; EPERM is someone else's.
    if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) stale.push_back(entry.path());
  }
  std::vector<std::string> removed;
  for (const fs::path& p : stale) {
    // Named as the user named path: "model.safetensors.tmp.7", not "./model.safetensors.tmp.7".
    if (fs::remove(p, ec)) removed.push_back((target.parent_path() / p.filename()).string());
  }
  return removed;
}

void write_safetensors_file(const std::string& path, const SafeTensors& st) {
  const std::vector<std::uint8_t> bytes = serialize_safetensors(st);
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

SafeTensors read_safetensors_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(io_message("read", path, errno));
  FdCloser closer(fd);

  struct stat info {};
  if (::fstat(fd, &info) != 0) throw IoError(io_message("read", path, errno));
  if (!S_ISREG(info.st_mode)) throw IoError("cannot read " + path + ": not a regular file");
  const auto size = static_cast<std::uint64_t>(info.st_size);
  if (size > kMaxFileBytes) {
    throw ModelFormatError(path + ": expected a model file of at most " +
                           std::to_string(kMaxFileBytes) + " bytes, found " + std::to_string(size) +
                           " bytes");
  }

  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw IoError(io_message("read", path, errno));
    }
    if (n == 0) break;  // file shrank while reading; the parser reports what is missing
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return parse_safetensors(bytes, path);
}

}  // namespace nanomlp
