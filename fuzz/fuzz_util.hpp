// Shared by the libFuzzer targets of fuzz/. A target feeds its input to one entry point of
// nanomlp and swallows only nanomlp's own typed exceptions (nanomlp::Error and its subclasses,
// errors.hpp): any other exception escapes LLVMFuzzerTestOneInput, libFuzzer reports it as a
// crash ("deadly signal" after std::terminate), as it does a sanitizer report.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"

namespace nanomlp_fuzz {

// Runs fn(); a nanomlp::Error is the expected answer to a bad input, anything else propagates.
template <typename Fn>
void expect_typed_errors(Fn&& fn) {
  try {
    fn();
  } catch (const nanomlp::Error& e) {
    // A refused input: fine. NANOMLP_FUZZ_VERBOSE=1 shows why (to check that a seed gets far).
    static const bool verbose = std::getenv("NANOMLP_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "nanomlp::Error: %s\n", e.what());
  }
}

// A per-process path under /tmp, so that parallel fuzzers (-jobs, -fork) do not share files.
inline std::string temp_path(const std::string& name) {
  return "/tmp/nanomlp-fuzz-" + std::to_string(::getpid()) + "-" + name;
}

// Writes bytes to path (for entry points that only read files); aborts if it cannot, since a
// fuzzer that silently tests nothing is worse than one that stops.
inline void write_bytes(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

}  // namespace nanomlp_fuzz
