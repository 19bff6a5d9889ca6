#include "nanomlp/core/json_input.hpp"

namespace nanomlp {

std::string printable(std::string_view text, std::size_t max_bytes) {
  std::string out;
  const std::size_t n = std::min(text.size(), max_bytes);
  out.reserve(n + 3);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?';
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

namespace detail {

void throw_json_input_error(const std::exception& e) {
  std::string what = e.what();
  // "[json.exception.parse_error.101] parse error at ..." -> "parse error at ..."
  if (const auto pos = what.find("] "); pos != std::string::npos) what.erase(0, pos + 2);
  throw JsonInputError(printable(what));
}

void throw_json_too_deep(int max_depth) {
  throw JsonInputError("nested more than " + std::to_string(max_depth) + " levels deep");
}

}  // namespace detail

std::string describe_json(const nlohmann::json& v) {
  const auto count = [](std::size_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
  };
  if (v.is_array()) return "array of " + count(v.size(), "element");
  if (v.is_object()) return "object of " + count(v.size(), "key");
  if (v.is_string()) return "string \"" + printable(v.get_ref<const std::string&>(), 40) + "\"";
  if (v.is_discarded() || v.is_binary()) return std::string(v.type_name());
  // A number, a boolean or null: a few bytes, no recursion.
  return std::string(v.type_name()) + " " + v.dump();
}

}  // namespace nanomlp
