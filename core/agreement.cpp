// The reduction agreement rule (pagedkv/agreement.h).
#include "pagedkv/agreement.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "numerics.h"
#include "pagedkv/error.h"

namespace pagedkv {

namespace {

// One element of `dtype` at `bytes`, as a double.
double element(const std::uint8_t* bytes, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float value;
      std::memcpy(&value, bytes, sizeof value);
      return value;
    }
    case DType::f16: {
      std::uint16_t bits;
      std::memcpy(&bits, bytes, sizeof bits);
      return numerics::half_bits_to_float(bits);
    }
    case DType::bf16: {
      std::uint16_t bits;
      std::memcpy(&bits, bytes, sizeof bits);
      return numerics::bf16_bits_to_float(bits);
    }
    default: break;
  }
  reject("relative_error: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
}

}  // namespace

double unit_roundoff(DType dtype) {
  switch (dtype) {
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f16: return std::ldexp(1.0, -11);
    case DType::bf16: return std::ldexp(1.0, -8);
    default: break;
  }
  reject("unit_roundoff: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
}

double reduction_tolerance(DType output, std::int64_t reduced_length) {
  const double n = static_cast<double>(reduced_length > 0 ? reduced_length : 1);
  return 2.0 * unit_roundoff(output) + (8.0 * std::sqrt(n) + 8.0) * unit_roundoff(DType::f32);
}

double attention_tolerance(DType output, std::int64_t context_length, std::int64_t head_size) {
  const double n = static_cast<double>(context_length > 0 ? context_length : 1);
  const double d = static_cast<double>(head_size > 0 ? head_size : 1);
  return 3.0 * unit_roundoff(output) +
         (8.0 * std::sqrt(n) + 8.0 * std::sqrt(d) + 64.0) * unit_roundoff(DType::f32);
}

double relative_error(const void* actual, const void* reference, DType dtype, std::int64_t count) {
  const auto* a = static_cast<const std::uint8_t*>(actual);
  const auto* r = static_cast<const std::uint8_t*>(reference);
  const std::int64_t size = dtype_size(dtype);
  double diff2 = 0.0, ref2 = 0.0;
  for (std::int64_t i = 0; i < count; ++i) {
    const double x = element(a + i * size, dtype);
    const double y = element(r + i * size, dtype);
    if (!std::isfinite(x) || !std::isfinite(y)) return std::numeric_limits<double>::infinity();
    diff2 += (x - y) * (x - y);
    ref2 += y * y;
  }
  if (ref2 == 0.0) return std::sqrt(diff2);
  return std::sqrt(diff2 / ref2);
}

double ulp_of(DType dtype, double magnitude) {
  int precision = 0, min_exponent = 0, max_exponent = 0;  // significand bits, 2^min .. 2^max
  switch (dtype) {
    case DType::f32: precision = 24, min_exponent = -126, max_exponent = 127; break;
    case DType::f16: precision = 11, min_exponent = -14, max_exponent = 15; break;
    case DType::bf16: precision = 8, min_exponent = -126, max_exponent = 127; break;
    case DType::f8_e4m3: precision = 4, min_exponent = -6, max_exponent = 8; break;
    default: reject("ulp_of: dtype must be f32, f16, bf16 or f8_e4m3, got ", dtype_name(dtype));
  }
  int exponent = min_exponent;  // 2^exponent <= magnitude < 2^(exponent + 1), clamped
  if (std::isfinite(magnitude) && magnitude >= std::ldexp(1.0, min_exponent)) {
    std::frexp(magnitude, &exponent);  // magnitude = m 2^exponent with 0.5 <= m < 1
    exponent -= 1;
  } else if (!std::isfinite(magnitude)) {
    exponent = max_exponent;
  }
  if (exponent > max_exponent) exponent = max_exponent;
  return std::ldexp(1.0, exponent - (precision - 1));
}

double ulp_error(double actual, double reference, double magnitude, DType dtype) {
  if (std::isnan(actual) && std::isnan(reference)) return 0.0;
  if (actual == reference) return 0.0;
  if (!std::isfinite(actual) || !std::isfinite(reference)) {
    return std::numeric_limits<double>::infinity();
  }
  return std::fabs(actual - reference) / ulp_of(dtype, magnitude);
}

}  // namespace pagedkv
