/// \file
/// \brief The RoPE rotation of one pair on the device, with every floating-point operation
/// spelled out so that the CPU reference can perform exactly the same ones.
///
/// nvcc fuses `a * b + c` into one FMA wherever it likes (-fmad=true is the default), which
/// rounds once instead of twice: the result can differ in the last bit from a CPU that does
/// not. Here the one fusion is explicit (`__fmaf_rn`) and the products that must stay separate
/// are `__fmul_rn`, which nvcc never fuses; the CPU reference writes `std::fma` at the same place
/// and is compiled with -ffp-contract=off.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "common/convert.cuh"

namespace pagedkv::kernels::mla {

/// \brief Rotates the pair (x, y) by the angle whose cosine and sine are c and s:
/// `(fma(x, c, −(y·s)), fma(y, c, x·s))`, each product and fma rounded once in fp32.
/// \param x the pair's first value.
/// \param y the pair's second value.
/// \param c the cosine.
/// \param s the sine.
/// \return the rotated pair.
__device__ __forceinline__ float2 rotate_pair(float x, float y, float c, float s) {
  return make_float2(__fmaf_rn(x, c, -__fmul_rn(y, s)), __fmaf_rn(y, c, __fmul_rn(x, s)));
}

/// \brief fp32 to an activation element, round to nearest even.
/// \tparam T float, __half or __nv_bfloat16.
/// \param value the value.
/// \return the element.
template <typename T>
__device__ __forceinline__ T from_float(float value) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(value);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(value);
  } else {
    return value;
  }
}

/// \brief Rotates the pair at `x_at`, `y_at` in place (load, rotate_pair(), round, store).
/// \tparam T float, __half or __nv_bfloat16.
/// \param x_at the pair's first element.
/// \param y_at the pair's second element.
/// \param c the cosine, as stored in cos_sin_cache.
/// \param s the sine.
template <typename T>
__device__ __forceinline__ void rotate_in_place(T* x_at, T* y_at, T c, T s) {
  const float2 rotated = rotate_pair(to_float(*x_at), to_float(*y_at), to_float(c), to_float(s));
  *x_at = from_float<T>(rotated.x);
  *y_at = from_float<T>(rotated.y);
}

}  // namespace pagedkv::kernels::mla
