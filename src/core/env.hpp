// src/core/env.hpp: reading FP4KIT_* environment variables with strict parsing. A malformed value
// is an error naming the variable, never silently ignored.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "fp4kit/error.hpp"

namespace fp4kit::detail {

// The variable's value, or nullopt when unset or empty.
std::optional<std::string> env_string(const char* name);
// 1/0, true/false, yes/no, on/off (any case). Throws Error(code) naming the variable otherwise.
std::optional<bool> env_bool(const char* name, ErrorCode code = ErrorCode::kInvalidArgument);
// Decimal or 0x-prefixed hexadecimal, at most `max`.
std::optional<uint64_t> env_uint(const char* name, uint64_t max, ErrorCode code = ErrorCode::kInvalidArgument);

// The same parsers on a string (used by the CLI too); `what` names the source in messages.
bool parse_bool(const std::string& text, const std::string& what, ErrorCode code = ErrorCode::kInvalidArgument);
uint64_t parse_uint(const std::string& text, uint64_t max, const std::string& what,
                    ErrorCode code = ErrorCode::kInvalidArgument);

}  // namespace fp4kit::detail
