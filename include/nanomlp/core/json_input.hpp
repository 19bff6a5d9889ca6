// JSON from outside (model-file headers, their metadata, metrics files, request bodies): parsed
// with a nesting limit, every error of the JSON library turned into one printable message, and
// values described in a few bytes instead of dumped whole (a dump recurses into the value and
// fails on bytes that are not UTF-8).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "nanomlp/core/errors.hpp"

namespace nanomlp {

// What went wrong, without the library's "[json.exception...]" prefix, in printable ASCII.
class JsonInputError : public Error {
 public:
  using Error::Error;
};

// Deeper nesting than any file or request of nanomlp has.
constexpr int kMaxUntrustedJsonDepth = 32;

namespace detail {
[[noreturn]] void throw_json_input_error(const std::exception& e);
[[noreturn]] void throw_json_too_deep(int max_depth);
}  // namespace detail

// Parses text, refusing arrays and objects nested more than max_depth deep before they are
// built. Throws JsonInputError for a syntax error, a number out of range (1e309) or the depth.
// Json: nlohmann::json or nlohmann::ordered_json.
template <typename Json = nlohmann::json>
Json parse_untrusted_json(std::string_view text, int max_depth = kMaxUntrustedJsonDepth) {
  // The callback sees each array and object as it opens, so a deep one is refused before the
  // parser builds it (and before the value's recursive destructor could meet it).
  const auto limit = [max_depth](int depth, typename Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= max_depth) {
      detail::throw_json_too_deep(max_depth);
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit);
  } catch (const nlohmann::json::exception& e) {
    detail::throw_json_input_error(e);
  }
}

// A short description of v for an error message, its type first: "number 5", "boolean true",
// "string \"abc\"" (bytes outside printable ASCII as '?', cut at 40), "array of 3 elements",
// "object of 2 keys".
std::string describe_json(const nlohmann::json& v);

// text with every byte outside printable ASCII replaced by '?', cut to at most max_bytes.
std::string printable(std::string_view text, std::size_t max_bytes = 200);

}  // namespace nanomlp
