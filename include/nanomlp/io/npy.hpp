// NumPy's .npy format (version 1.0) for a float32 matrix, so that numpy.load and a ten-line
// reader in any language can read what nanomlp computed: the 6 magic bytes "\x93NUMPY", the
// version 1.0, a little-endian uint16 header length, a Python dict literal padded with spaces
// to a multiple of 64 bytes and ended by '\n', then the values in row-major (C) order.
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
#pragma once

#include <cstddef>
#include <string>

namespace nanomlp {

// The bytes of a .npy file holding values (rows, cols) as '<f4'.
std::string npy_f32(const float* values, std::size_t rows, std::size_t cols);  // (rows, cols)

// Writes npy_f32 to path atomically (temp file + rename); IoError for an unwritable path.
void write_npy_f32(const std::string& path, const float* values, std::size_t rows,
                   std::size_t cols);

}  // namespace nanomlp
