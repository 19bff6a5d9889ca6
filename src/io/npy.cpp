#include "nanomlp/io/npy.hpp"

#include <bit>
#include <cstdint>
#include <cstring>

#include "nanomlp/io/safetensors.hpp"

namespace nanomlp {

std::string npy_f32(const float* values, std::size_t rows, std::size_t cols) {
  static_assert(sizeof(float) == 4, "'<f4' is a 4-byte IEEE float");
  static_assert(std::endian::native == std::endian::little, "'<f4' is little-endian");
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) + "), }";
  const std::size_t preamble = 10;  // magic (6), version (2), header length (2)
  header.append(63 - (preamble + header.size()) % 64, ' ');
  header += '\n';  // preamble + header is now a multiple of 64
  const auto len = static_cast<std::uint16_t>(header.size());
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>(len >> 8);
  out += header;
  const std::size_t bytes = rows * cols * sizeof(float);
  const std::size_t at = out.size();
  out.resize(at + bytes);
  if (bytes != 0) std::memcpy(out.data() + at, values, bytes);
  return out;
}

void write_npy_f32(const std::string& path, const float* values, std::size_t rows,
                   std::size_t cols) {
  write_file_atomic(path, npy_f32(values, rows, cols));
}

}  // namespace nanomlp
