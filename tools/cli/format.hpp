// tools/cli/format.hpp: number formatting shared by the CLI's reports.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace fp4kit::cli {

// v with `decimals` digits after the point.
inline std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

// 101376 -> "99 KiB", 52428800 -> "50 MiB", 85899345920 -> "80 GiB" (one decimal when not whole).
inline std::string iec(int64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  double v = static_cast<double>(bytes);
  while (v >= 1024.0 && unit < 4) {
    v /= 1024.0;
    ++unit;
  }
  const bool whole = v == static_cast<double>(static_cast<int64_t>(v));
  return (whole ? std::to_string(static_cast<int64_t>(v)) : fixed(v, 1)) + " " + kUnits[unit];
}

}  // namespace fp4kit::cli
