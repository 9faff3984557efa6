// Reference amax (NUMERICS §2, §9): the max |x| over FINITE values, with NaN and Inf counted.
#include <limits>

#include "fp4kit/formats.hpp"
#include "ref/fp_env.hpp"
#include "ref/ref.hpp"

namespace fp4kit::ref {

float AmaxResult::reported() const noexcept {
  if (nan_count > 0) return std::numeric_limits<float>::quiet_NaN();
  if (inf_count > 0) return std::numeric_limits<float>::infinity();
  return finite_amax;
}

namespace {
void accumulate(AmaxResult& acc, float v) {
  if (is_nan(v)) {
    ++acc.nan_count;
  } else if (!is_finite(v)) {
    ++acc.inf_count;
  } else {
    acc.finite_amax = max_f(acc.finite_amax, abs_f(v));
  }
}
}  // namespace

AmaxResult amax_row(const Matrix& x, int64_t r) {
  AmaxResult acc;
  for (int64_t c = 0; c < x.cols; ++c) accumulate(acc, detail::load_float(x, r, c));
  return acc;
}

AmaxResult amax(const Matrix& x) {
  AmaxResult acc;
  for (int64_t r = 0; r < x.rows; ++r) {
    const AmaxResult row = amax_row(x, r);
    acc.finite_amax = max_f(acc.finite_amax, row.finite_amax);
    acc.nan_count += row.nan_count;
    acc.inf_count += row.inf_count;
  }
  return acc;
}

void amax(const Matrix& x, bool per_row, const AmaxOutputs& out) {
  const IeeeFpScope ieee;
  float* finite = out.finite_amax.ptr<float>();
  float* reported = out.amax.ptr<float>();
  AmaxResult total;
  if (per_row) {
    for (int64_t r = 0; r < x.rows; ++r) {
      const AmaxResult row = amax_row(x, r);
      finite[r] = row.finite_amax;
      if (reported) reported[r] = row.reported();
      total.nan_count += row.nan_count;
      total.inf_count += row.inf_count;
    }
  } else {
    total = amax(x);
    finite[0] = total.finite_amax;
    if (reported) reported[0] = total.reported();
  }
  if (uint32_t* counts = out.nonfinite_counts.ptr<uint32_t>()) {
    counts[0] = total.nan_count;
    counts[1] = total.inf_count;
  }
}

}  // namespace fp4kit::ref
