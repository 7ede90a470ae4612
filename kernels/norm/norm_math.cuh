/// \file
/// \brief The per-element arithmetic of the norm kernels, written once so that the naive and
/// the optimized kernels compute every element with the same formula (only the order of the
/// float32 sum of squares differs between them).
///
/// Upstream: vLLM csrc/layernorm_kernels.cu (rms_norm_kernel, fused_add_rms_norm_kernel) and
/// csrc/type_convert.cuh. Chapter "Normalizing hidden states".
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common/convert.cuh"
#include "common/dispatch.cuh"
#include "common/vec.cuh"
#include "pagedkv/dtype.h"
#include "pagedkv/error.h"

namespace pagedkv::kernels::norm {

/// \brief A float rounded to the element type (round to nearest even).
/// \tparam T float, __half or __nv_bfloat16.
/// \param value the float.
/// \return the element.
template <typename T>
__device__ __forceinline__ T from_float(float value);
/// \brief from_float() for float: the value itself.
/// \param value the float.
/// \return the element.
template <>
__device__ __forceinline__ float from_float<float>(float value) { return value; }
/// \brief from_float() for fp16, with `__float2half_rn`.
/// \param value the float.
/// \return the element.
template <>
__device__ __forceinline__ __half from_float<__half>(float value) {
  return __float2half_rn(value);
}
/// \brief from_float() for bf16, with `__float2bfloat16_rn`.
/// \param value the float.
/// \return the element.
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float value) {
  return __float2bfloat16_rn(value);
}

/// \brief `rsqrtf(sum_of_squares / hidden_size + epsilon)`: the reciprocal root mean square,
/// as upstream computes it (an IEEE float division, then the approximate rsqrtf, 2 ulp).
/// `float(hidden_size)` is exact: the contract bounds hidden_size by 2^24.
/// \param sum_of_squares the float32 sum of float(x)² over the row.
/// \param hidden_size elements per row.
/// \param epsilon added to the mean square.
/// \return the reciprocal root mean square (inf for a zero row with epsilon 0).
__device__ __forceinline__ float inverse_rms_of(float sum_of_squares, int hidden_size,
                                                float epsilon) {
  return rsqrtf(sum_of_squares / static_cast<float>(hidden_size) + epsilon);
}

/// \brief One output element: `round_T(float(x) · inverse_rms · float(w))`, x·inverse_rms
/// first, one rounding at the end (the newest upstream kernel; older ones rounded x·inv to T
/// before multiplying by w).
/// \tparam T float, __half or __nv_bfloat16.
/// \param x the input element.
/// \param inverse_rms the row's reciprocal root mean square.
/// \param w the weight element.
/// \return the normalized, weighted element.
template <typename T>
__device__ __forceinline__ T normalize(T x, float inverse_rms, T w) {
  return from_float<T>((to_float(x) * inverse_rms) * to_float(w));
}

/// \brief fused_add_rms_norm's sum: `round_T(float(x) + float(r))`, one float32 addition and
/// one rounding (what c10::Half / c10::BFloat16's operator+ does upstream).
/// \tparam T float, __half or __nv_bfloat16.
/// \param x the hidden-state element.
/// \param r the residual element.
/// \return the rounded sum.
template <typename T>
__device__ __forceinline__ T add_rounded(T x, T r) {
  return from_float<T>(to_float(x) + to_float(r));
}

/// \brief The packed pair type of a 16-bit element type (__half2, __nv_bfloat162); `void` for
/// float, which has no pair conversions.
template <typename T>
using PairOf = std::conditional_t<std::is_same_v<T, __half>, __half2,
                                  std::conditional_t<std::is_same_v<T, __nv_bfloat16>,
                                                     __nv_bfloat162, void>>;

/// \brief True when a vector of kVec elements of T is processed two elements at a time: the
/// pair shares one 32-bit register and converts to and from float2 with one instruction each
/// (cvt.rn.bf16x2.f32 rounds each half exactly as cvt.rn.bf16.f32 does). Element by element,
/// the compiler gives every 16-bit value a register of its own: twice the registers, and
/// spills in the fused kernel.
template <typename T, int kVec>
inline constexpr bool kByPairs = !std::is_void_v<PairOf<T>> && kVec % 2 == 0;

/// \brief Elements 2p and 2p + 1 of `v` as float2 (exact).
/// \tparam T __half or __nv_bfloat16.
/// \tparam kVec elements per vector (even).
/// \param v the vector.
/// \param p the pair, 0 <= p < kVec / 2.
/// \return the two elements as floats.
template <typename T, int kVec>
__device__ __forceinline__ float2 pair_to_float2(const AlignedVector<T, kVec>& v, int p) {
  if constexpr (std::is_same_v<T, __half>) {
    __half2 pair;
    memcpy(&pair, &v.elements[2 * p], sizeof pair);
    return __half22float2(pair);
  } else {
    // A bf16 is the top half of a float: one shift and one mask (element 2p in bits 0-15).
    std::uint32_t bits;
    memcpy(&bits, &v.elements[2 * p], sizeof bits);
    return make_float2(__uint_as_float(bits << 16), __uint_as_float(bits & 0xFFFF0000u));
  }
}

/// \brief Stores `value`, rounded to nearest even, as elements 2p and 2p + 1 of `v`.
/// \tparam T __half or __nv_bfloat16.
/// \tparam kVec elements per vector (even).
/// \param v the vector.
/// \param p the pair, 0 <= p < kVec / 2.
/// \param value the two floats.
template <typename T, int kVec>
__device__ __forceinline__ void set_pair(AlignedVector<T, kVec>& v, int p, float2 value) {
  PairOf<T> pair;
  if constexpr (std::is_same_v<T, __half>) {
    pair = __float22half2_rn(value);
  } else {
    pair = __float22bfloat162_rn(value);
  }
  memcpy(&v.elements[2 * p], &pair, sizeof pair);
}

/// \brief Adds float(x)² of every element of `x` to `sum` (float32, in element order).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param x one loaded vector.
/// \param sum the running sum.
template <typename T, int kVec>
__device__ __forceinline__ void add_squares(const AlignedVector<T, kVec>& x, float& sum) {
  if constexpr (kByPairs<T, kVec>) {
#pragma unroll
    for (int p = 0; p < kVec / 2; ++p) {
      const float2 value = pair_to_float2(x, p);
      sum += value.x * value.x;
      sum += value.y * value.y;
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float value = to_float(x.elements[e]);
      sum += value * value;
    }
  }
}

/// \brief add_rounded() on every element: z = round_T(float(x) + float(r)).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param x the hidden-state vector.
/// \param r the residual vector.
/// \return the rounded sums.
template <typename T, int kVec>
__device__ __forceinline__ AlignedVector<T, kVec> add_rounded(const AlignedVector<T, kVec>& x,
                                                              const AlignedVector<T, kVec>& r) {
  AlignedVector<T, kVec> z;
  if constexpr (kByPairs<T, kVec>) {
#pragma unroll
    for (int p = 0; p < kVec / 2; ++p) {
      const float2 a = pair_to_float2(x, p);
      const float2 b = pair_to_float2(r, p);
      set_pair(z, p, make_float2(a.x + b.x, a.y + b.y));
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) z.elements[e] = add_rounded(x.elements[e], r.elements[e]);
  }
  return z;
}

/// \brief normalize() on every element: round_T((float(x) · inverse_rms) · float(w)).
/// \tparam T float, __half or __nv_bfloat16.
/// \tparam kVec elements per vector.
/// \param x the row's vector.
/// \param inverse_rms the row's reciprocal root mean square.
/// \param w the weight's vector.
/// \return the normalized, weighted vector.
template <typename T, int kVec>
__device__ __forceinline__ AlignedVector<T, kVec> normalize(const AlignedVector<T, kVec>& x,
                                                            float inverse_rms,
                                                            const AlignedVector<T, kVec>& w) {
  AlignedVector<T, kVec> y;
  if constexpr (kByPairs<T, kVec>) {
#pragma unroll
    for (int p = 0; p < kVec / 2; ++p) {
      const float2 a = pair_to_float2(x, p);
      const float2 b = pair_to_float2(w, p);
      set_pair(y, p, make_float2((a.x * inverse_rms) * b.x, (a.y * inverse_rms) * b.y));
    }
  } else {
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      y.elements[e] = normalize(x.elements[e], inverse_rms, w.elements[e]);
    }
  }
  return y;
}

/// \brief Calls `body(TypeTag<T>{})` with T = float, __half or __nv_bfloat16 for `dtype`.
/// \tparam Body a generic callable.
/// \param dtype f32, f16 or bf16 (validated by the op's contract).
/// \param body the code to run with the element type.
template <typename Body>
void dispatch_norm_dtype(DType dtype, Body&& body) {
  switch (dtype) {
    case DType::f32: body(TypeTag<float>{}); return;
    case DType::f16: body(TypeTag<__half>{}); return;
    case DType::bf16: body(TypeTag<__nv_bfloat16>{}); return;
    default: break;
  }
  reject("dispatch_norm_dtype: dtype must be f32, f16 or bf16, got ", dtype_name(dtype));
}

}  // namespace pagedkv::kernels::norm
