/// \file
/// \brief Two fp8 cache bytes per conversion instruction: `fp8(first / scale)` and
/// `fp8(second / scale)`, bit-identical to encode_fp8() (common/convert.cuh) on each value.
///
/// Hopper's fp32 → fp8 conversion (`cvt.rn.satfinite.e4m3x2.f32`, `...e5m2x2.f32`) always
/// converts TWO values into two bytes. The single-value `__nv_cvt_float_to_fp8` that
/// encode_fp8() uses runs the same instruction with 0 as the second value and keeps one byte;
/// converting neighbours together halves the conversions. Rounding (to nearest even),
/// saturation (±max finite, also for ±inf) and NaN (0x7F) are those of the single conversion,
/// so each byte is exactly encode_fp8()'s; tests/test_flash_division.cpp checks it against the
/// CPU numerics for every bf16 and fp16 input and 10 M fp32 inputs.
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::kernels {

/// \brief The fp8 bytes of `first / scale` and `second / scale` (true IEEE fp32 divisions, as
/// upstream and encode_fp8()), from one paired conversion.
/// \tparam kKind KvCacheDtype::kFp8E4m3 or KvCacheDtype::kFp8E5m2.
/// \param first the value for the low byte (the lower address in memory).
/// \param second the value for the high byte.
/// \param scale the cache scale both are divided by (k_scale or v_scale, of the tensor or head).
/// \return `first`'s byte in bits 0-7, `second`'s in bits 8-15.
template <KvCacheDtype kKind>
__device__ __forceinline__ std::uint16_t encode_fp8_pair(float first, float second, float scale) {
  static_assert(kKind != KvCacheDtype::kAuto, "encode_fp8_pair needs an fp8 cache kind");
  constexpr __nv_fp8_interpretation_t kInterpretation =
      kKind == KvCacheDtype::kFp8E4m3 ? __NV_E4M3 : __NV_E5M2;
  return static_cast<std::uint16_t>(__nv_cvt_float2_to_fp8x2(
      make_float2(first / scale, second / scale), __NV_SATFINITE, kInterpretation));
}

}  // namespace pagedkv::kernels
