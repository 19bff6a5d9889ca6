// Typed exceptions. Every message names the file or flag, what was expected and what was
// found, so that the CLI can print it as one line and exit (2 for usage, 1 otherwise).
#pragma once

#include <cerrno>
#include <charconv>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace nanomlp {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A flag or setting has an invalid value (CLI exit code 2).
class UsageError : public Error {
 public:
  using Error::Error;
};

// A dataset file is missing, truncated or malformed.
class DataError : public Error {
 public:
  using Error::Error;
};

// A model or checkpoint file is truncated, corrupt or inconsistent with its architecture.
class ModelFormatError : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed for a reason of the file system.
class IoError : public Error {
 public:
  using Error::Error;
};

// Training diverged (NaN or infinite loss).
class TrainingError : public Error {
 public:
  using Error::Error;
};

// How error messages name the reason of a failed system call: the C library's text, after a
// plain statement for the two that users read as a riddle when a write stops half-way.
inline std::string os_error_text(int err) {
  const std::string text = std::generic_category().message(err);
  if (err == ENOSPC) return "the disk is full (" + text + ")";
  if (err == EDQUOT) return "the disk quota is used up (" + text + ")";
  return text;
}

// "a, b, c": how error messages list the valid choices of a setting.
inline std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// How error messages show a number a flag was given: the shortest text that reads back as the
// same double ("1.5", "0.9999999", "1e-09", "nan", "inf"), so that a value just outside a range
// is never shown rounded onto its bound.
inline std::string format_number(double value) {
  char buf[64];
  const auto result = std::to_chars(buf, buf + sizeof buf, value);
  return std::string(buf, result.ptr);
}

}  // namespace nanomlp
