/// \file
/// \brief Device-side element conversion shared by the cache writers: load an activation
/// (f32/f16/bf16), and store it in the cache as is ("auto") or as fp8 `x / scale`.
///
/// The fp8 path is the CUDA Toolkit's `__nv_cvt_float_to_fp8` with `__NV_SATFINITE`: round to
/// nearest even, saturate to ±max-finite, keep NaN. The CPU reference does the same by hand
/// (reference_cpu/numerics.cpp), and the tests prove the two bit-identical.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "pagedkv/kv_cache_dtype.h"

namespace pagedkv::kernels {

/// \brief One activation element (float, __half or __nv_bfloat16) as float.
/// \tparam T float, __half or __nv_bfloat16 (only these are defined).
/// \param v one activation element.
/// \return its value as float (exact).
template <typename T>
__device__ __forceinline__ float to_float(T v);
/// \brief to_float() for float: the value itself.
/// \param v one activation element.
/// \return its value as float (exact).
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
/// \brief to_float() for fp16, with `__half2float`.
/// \param v one activation element.
/// \return its value as float (exact).
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
/// \brief to_float() for bf16, with `__bfloat162float`.
/// \param v one activation element.
/// \return its value as float (exact).
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

/// \brief fp8 byte of `value / scale` (true fp32 division, as upstream), E4M3 or E5M2.
/// \tparam kKind KvCacheDtype::kFp8E4m3 or KvCacheDtype::kFp8E5m2.
/// \param value the activation as float.
/// \param scale the cache scale (k_scale or v_scale).
/// \return the fp8 byte.
template <KvCacheDtype kKind>
__device__ __forceinline__ std::uint8_t encode_fp8(float value, float scale) {
  static_assert(kKind != KvCacheDtype::kAuto, "encode_fp8 needs an fp8 cache kind");
  constexpr __nv_fp8_interpretation_t kInterp = kKind == KvCacheDtype::kFp8E4m3 ? __NV_E4M3 : __NV_E5M2;
  return static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(value / scale, __NV_SATFINITE, kInterp));
}

/// \brief Maps a KvCacheDtype and an activation type to the cache element type:
/// the activation type itself for kAuto, one byte for fp8.
template <typename T, KvCacheDtype kKind>
struct CacheElement {
  using type = std::uint8_t;  ///< one byte for the fp8 kinds
};
/// \brief CacheElement for kAuto: the cache stores the activation type itself.
template <typename T>
struct CacheElement<T, KvCacheDtype::kAuto> {
  using type = T;  ///< the activation type
};

/// \brief Converts one activation into its cache element (bit copy for kAuto).
/// \tparam kKind how the cache stores elements.
/// \tparam T the activation type: float, __half or __nv_bfloat16.
/// \param value one activation element.
/// \param scale the cache scale (k_scale or v_scale); unused for kAuto.
/// \return the cache element.
template <KvCacheDtype kKind, typename T>
__device__ __forceinline__ typename CacheElement<T, kKind>::type to_cache(T value, float scale) {
  if constexpr (kKind == KvCacheDtype::kAuto) {
    (void)scale;
    return value;
  } else {
    return encode_fp8<kKind>(to_float(value), scale);
  }
}

}  // namespace pagedkv::kernels
