/// \file
/// \brief The element conversions of convert_fp8 on the device, shared by its naive and
/// optimized kernels: one element at a time, and two at a time (the same bytes).
///
/// Quantize: `fp8(float(x) / scale)` with encode_fp8() / encode_fp8_pair() (common/). Dequantize,
/// as vLLM's dequantizing kernels do it: fp8 → fp16 exactly (`__nv_cvt_fp8_to_halfraw`), fp16 →
/// fp32 exactly, one fp32 multiplication by the scale, then round to nearest even into the
/// output dtype. The CPU reference (reference_cpu/convert_fp8.cpp) does the same by hand.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/convert.cuh"
#include "common/fp8_pair.cuh"
#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::kernels::convert_fp8 {

/// \brief The toolkit's name of an fp8 format.
/// \tparam kFormat KvCacheDtype::kFp8E4m3 or KvCacheDtype::kFp8E5m2.
/// \return __NV_E4M3 or __NV_E5M2.
template <KvCacheDtype kFormat>
__device__ __forceinline__ constexpr __nv_fp8_interpretation_t interpretation() {
  static_assert(kFormat != KvCacheDtype::kAuto, "convert_fp8 needs an fp8 format");
  return kFormat == KvCacheDtype::kFp8E4m3 ? __NV_E4M3 : __NV_E5M2;
}

/// \brief A float rounded to nearest even into `Wide` (float: itself).
/// \tparam Wide float, __half or __nv_bfloat16.
/// \param value the value.
/// \return the element.
template <typename Wide>
__device__ __forceinline__ Wide from_float(float value) {
  if constexpr (std::is_same_v<Wide, __half>) {
    return __float2half_rn(value);
  } else if constexpr (std::is_same_v<Wide, __nv_bfloat16>) {
    return __float2bfloat16_rn(value);
  } else {
    return value;
  }
}

/// \brief One element quantized: the fp8 byte of `float(x) / scale`.
/// \tparam kFormat the fp8 format.
/// \tparam Wide float, __half or __nv_bfloat16.
/// \param x the element.
/// \param scale the scale.
/// \return the byte.
template <KvCacheDtype kFormat, typename Wide>
__device__ __forceinline__ std::uint8_t quantize_one(Wide x, float scale) {
  return encode_fp8<kFormat>(to_float(x), scale);
}

/// \brief One byte dequantized: `float(fp8) × scale`, rounded into `Wide`.
/// \tparam kFormat the fp8 format.
/// \tparam Wide float, __half or __nv_bfloat16.
/// \param byte the fp8 byte.
/// \param scale the scale.
/// \return the element.
template <KvCacheDtype kFormat, typename Wide>
__device__ __forceinline__ Wide dequantize_one(std::uint8_t byte, float scale) {
  const __half_raw half = __nv_cvt_fp8_to_halfraw(byte, interpretation<kFormat>());
  return from_float<Wide>(__half2float(__half(half)) * scale);
}

/// \brief Two neighbouring elements as floats (exact); `pair` points at the first.
/// \tparam Wide float, __half or __nv_bfloat16.
/// \param pair the first of two elements in registers (4-byte aligned for 16-bit types).
/// \return the two values.
template <typename Wide>
__device__ __forceinline__ float2 load_pair(const Wide* pair) {
  if constexpr (std::is_same_v<Wide, __nv_bfloat16>) {
    std::uint32_t bits;  // first element in bits 0-15: a bf16 is the top half of a float
    memcpy(&bits, pair, sizeof bits);
    return make_float2(__uint_as_float(bits << 16), __uint_as_float(bits & 0xFFFF0000u));
  } else if constexpr (std::is_same_v<Wide, __half>) {
    __half2 both;
    memcpy(&both, pair, sizeof both);
    return __half22float2(both);
  } else {
    return make_float2(pair[0], pair[1]);
  }
}

/// \brief Two neighbouring bytes dequantized with one fp8x2 → fp16x2 conversion; each result is
/// dequantize_one()'s.
/// \tparam kFormat the fp8 format.
/// \tparam Wide float, __half or __nv_bfloat16.
/// \param bytes the first byte in bits 0-7, the second in bits 8-15.
/// \param scale the scale.
/// \param out where the two elements go.
template <KvCacheDtype kFormat, typename Wide>
__device__ __forceinline__ void dequantize_pair(std::uint16_t bytes, float scale, Wide* out) {
  const __half2_raw halves = __nv_cvt_fp8x2_to_halfraw2(bytes, interpretation<kFormat>());
  const float2 values = __half22float2(__half2(halves));
  const float2 scaled = make_float2(values.x * scale, values.y * scale);
  if constexpr (std::is_same_v<Wide, __half>) {
    const __half2 pair = __float22half2_rn(scaled);
    memcpy(out, &pair, sizeof pair);
  } else if constexpr (std::is_same_v<Wide, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __float22bfloat162_rn(scaled);
    memcpy(out, &pair, sizeof pair);
  } else {
    out[0] = scaled.x;
    out[1] = scaled.y;
  }
}

}  // namespace pagedkv::kernels::convert_fp8
