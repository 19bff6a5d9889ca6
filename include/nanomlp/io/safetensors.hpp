// The safetensors container (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, an optional "__metadata__" map of string to string, then the
// raw little-endian tensor bytes. This layer knows nothing about networks; model_io.hpp maps a
// Network to and from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace nanomlp {

struct TensorEntry {
  std::string name;                 // e.g. "0.weight"
  std::string dtype;                // "F32" or "I64" (others are rejected on read)
  std::vector<std::int64_t> shape;  // e.g. {128, 784}
  std::vector<std::uint8_t> data;   // raw little-endian bytes, product(shape) * dtype size

  // Convenience constructors/accessors for the two dtypes nanomlp uses.
  static TensorEntry from_f32(std::string name, std::vector<std::int64_t> shape,
                              const float* values);
  static TensorEntry from_i64(std::string name, std::vector<std::int64_t> shape,
                              const std::int64_t* values);
  std::size_t numel() const;
  std::vector<float> to_f32() const;         // throws ModelFormatError unless dtype == "F32"
  std::vector<std::int64_t> to_i64() const;  // throws ModelFormatError unless dtype == "I64"
};

struct SafeTensors {
  std::map<std::string, std::string> metadata;  // the header's "__metadata__"
  std::vector<TensorEntry> tensors;             // in file order (order of data offsets)

  const TensorEntry* find(const std::string& name) const;  // nullptr if absent
};

// Serialises to bytes: header JSON with tensors in the given order, data packed in that order,
// header padded with spaces to a multiple of 8 bytes (as the reference implementation does).
std::vector<std::uint8_t> serialize_safetensors(const SafeTensors& st);

// Parses and validates bytes; `source` names the file in error messages. Checks: at least 8
// bytes; header length within the file; valid JSON object; each entry has a known dtype, a
// shape of non-negative ints, data_offsets [begin, end] with begin <= end inside the data
// section and end - begin == numel * dtype size; no overlapping tensors; metadata values are
// strings. Throws ModelFormatError naming `source`, what was expected and what was found.
SafeTensors parse_safetensors(const std::vector<std::uint8_t>& bytes, const std::string& source);

// Writes atomically: to "<path>.tmp.<pid>" in the same folder, flush, then rename over path.
// A folder that does not exist or an unwritable path throws IoError naming the path; no
// partial file is left behind.
void write_safetensors_file(const std::string& path, const SafeTensors& st);

// Reads and parses a file; a missing file throws IoError, a bad one ModelFormatError.
SafeTensors read_safetensors_file(const std::string& path);

// Writes bytes to path atomically (temp file + rename). Shared by every writer of output
// files (models, metrics JSON, checkpoints, reports).
void write_file_atomic(const std::string& path, const std::string& contents);

// 0 when a new file can be created beside path (tried with "<path>.probe.<pid>", removed at
// once), else the errno: lets a command refuse an unwritable output before it does the work.
int probe_new_file(const std::string& path);

// Removes the "<path>.tmp.<pid>" and "<path>.probe.<pid>" files that a killed writer of path
// left in its folder, when that process is gone (a live one may still be writing). Returns the
// paths removed.
std::vector<std::string> remove_stale_temporaries(const std::string& path);

}  // namespace nanomlp
