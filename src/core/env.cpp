#include "core/env.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/check.hpp"

namespace fp4kit::detail {

std::optional<std::string> env_string(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

bool parse_bool(const std::string& text, const std::string& what, ErrorCode code) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t == "0" || t == "false" || t == "no" || t == "off") return false;
  fail(code, cat(what, "='", text, "' is not a boolean"), "use 1/0, true/false, yes/no or on/off");
}

uint64_t parse_uint(const std::string& text, uint64_t max, const std::string& what, ErrorCode code) {
  const bool hex = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  const std::string digits = hex ? text.substr(2) : text;
  bool ok = !digits.empty() && digits.size() <= (hex ? 16u : 20u);
  uint64_t value = 0;
  for (char ch : digits) {
    if (!ok) break;
    const int d = std::isdigit(static_cast<unsigned char>(ch)) ? ch - '0'
                  : (hex && std::isxdigit(static_cast<unsigned char>(ch))) ? std::tolower(ch) - 'a' + 10
                                                                             : -1;
    if (d < 0) {
      ok = false;
      break;
    }
    const uint64_t base = hex ? 16 : 10;
    if (value > (UINT64_MAX - static_cast<uint64_t>(d)) / base) ok = false;  // overflow
    value = value * base + static_cast<uint64_t>(d);
  }
  if (!ok || value > max) {
    fail(code, cat(what, "='", text, "' is not an unsigned integer at most ", max),
         "write it in decimal or as 0x-prefixed hexadecimal");
  }
  return value;
}

std::optional<bool> env_bool(const char* name, ErrorCode code) {
  const auto v = env_string(name);
  if (!v) return std::nullopt;
  return parse_bool(*v, cat("environment variable ", name), code);
}

std::optional<uint64_t> env_uint(const char* name, uint64_t max, ErrorCode code) {
  const auto v = env_string(name);
  if (!v) return std::nullopt;
  return parse_uint(*v, max, cat("environment variable ", name), code);
}

}  // namespace fp4kit::detail
