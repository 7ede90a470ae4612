/// \file
/// \brief Device code that DeepSeek V4's K-cache kernels share: a quant block's UE8M0 exponent
/// from its amax, exactly, on the fp32 bits; the inverse scale the writer multiplies by; and the
/// scale an exponent code stands for, which the reader multiplies by. The CPU reference writes
/// the same steps out on its own (reference_cpu/ue8m0.cpp).
#pragma once

#include <cstdint>

#include "pagedkv/ops/quantize_and_insert_k_cache.h"

namespace pagedkv::kernels::dsv4 {

/// \brief e = ceil(log2(max(amax, 1e-4) / 448)), exactly: amax / 448 = ((1 + m / 2^23) / 1.75)
/// × 2^(E - 135), and the first factor exceeds 1 exactly when the mantissa m exceeds 1.75's
/// (0x600000). An integer test, where upstream's `ceil(log2(·))` relies on an approximate
/// log2 returning an exact integer at the powers of two.
/// \param amax the block's largest |element| (fmaxf over the block: NaN ignored).
/// \return the exponent, in [-22, 120] for a finite amax; 128 (code 255) for +inf, upstream's
/// clamped infinite exponent.
__device__ __forceinline__ int block_exponent(float amax) {
  const std::uint32_t bits = __float_as_uint(fmaxf(amax, kDsv4AmaxFloor));
  const int biased_exponent = static_cast<int>(bits >> 23);  // the sign bit is 0
  if (biased_exponent == 0xFF) return 128;                   // +inf
  return biased_exponent - 135 + ((bits & 0x007FFFFFu) > 0x00600000u ? 1 : 0);
}

/// \brief 2^-e as an fp32 (a normal number for e in [-22, 120]): x × 2^-e is exact and equals
/// upstream's x / 2^e. For e = 128 it is 0: x × 0 equals upstream's x / inf.
/// \param exponent the block's exponent.
/// \return 2^-exponent, or 0 for 128.
__device__ __forceinline__ float inverse_scale(int exponent) {
  if (exponent >= 128) return 0.f;
  return __uint_as_float(static_cast<std::uint32_t>(127 - exponent) << 23);
}

/// \brief The UE8M0 code e + 127 (in [105, 247] for a finite amax, 255 for an infinite one:
/// no clamp needed).
/// \param exponent the block's exponent.
/// \return the code byte.
__device__ __forceinline__ std::uint32_t exponent_code(int exponent) {
  return static_cast<std::uint32_t>(exponent + kDsv4ScaleBias);
}

/// \brief The scale 2^(code - 127) of a stored code: the code shifted into the fp32 exponent
/// field; code 0 (never written) is the subnormal 2^-127, code 255 is +inf.
/// \param code the byte of the scale record.
/// \return the scale.
__device__ __forceinline__ float scale_of_code(std::uint32_t code) {
  return __uint_as_float(code == 0 ? 0x00400000u : code << 23);
}

}  // namespace pagedkv::kernels::dsv4
