/// \file
/// \brief Device code shared by the naive and optimized kernels of process_kv and flatten_kv:
/// rounding to the activation type, a row's RoPE, the codes of a value, the decoding of a code,
/// the per-sequence facts every kernel starts from, and the kernels' launch parameters (with the
/// fault record every kernel reads first).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "common/convert.cuh"
#include "common/fault.cuh"
#include "lmdeploy/turbomind_math.h"
#include "pagedkv/ops/process_kv.h"

namespace pagedkv::kernels::turbomind {

namespace tm = pagedkv::turbomind;

/// \brief A float rounded to T (f16 or bf16), round to nearest even.
/// \tparam T __half or __nv_bfloat16.
/// \param x the value.
/// \return the T value.
template <typename T>
__device__ __forceinline__ T to_t(float x) {
  if constexpr (sizeof(T) == 2 && std::is_same_v<T, __half>) {
    return __float2half_rn(x);
  } else {
    return __float2bfloat16_rn(x);
  }
}

/// \brief x rounded to T, as a float: one operation of the activation type's arithmetic
/// (a T operation on T operands equals the float operation rounded once to T).
/// \tparam T __half or __nv_bfloat16.
/// \param x the value.
/// \return the rounded value.
template <typename T>
__device__ __forceinline__ float in_t(float x) {
  return to_float(to_t<T>(x));
}

/// \brief Everything a kernel needs, by value (the plan's numbers and the raw pointers).
struct KvParams {
  TurbomindKvPlan plan;              ///< the validated plan
  std::uint8_t* pool = nullptr;      ///< kv_cache's first byte
  const std::int64_t* blocks = nullptr;  ///< block byte offsets
  const std::int32_t* cu_q_len = nullptr;            ///< [batch + 1], process_kv only
  const std::int32_t* cu_k_len = nullptr;            ///< [batch + 1]
  const std::int32_t* cu_block_num = nullptr;        ///< [batch + 1]
  const std::int32_t* readonly_block_num = nullptr;  ///< [batch] or nullptr
  const void* k = nullptr;       ///< process_kv: input; flatten_kv: k_out
  const void* v = nullptr;       ///< process_kv: input; flatten_kv: v_out
  const void* k_bias = nullptr;  ///< [head_num, head_dim] or nullptr
  const void* v_bias = nullptr;  ///< [head_num, head_dim] or nullptr
  /// The device's fault record (pagedkv::device_fault()): read first; a fault set by a deferred
  /// check (this call's or an earlier one's) makes the kernel write nothing.
  const DeviceFault* fault = nullptr;
};

/// \brief The scale factor of sequence b: its own for "dynamic", else the plan's.
/// \param rope the RoPE parameters.
/// \param b the sequence.
/// \return the scale factor.
__device__ __forceinline__ float scale_factor_of(const TurbomindRope& rope, std::int64_t b) {
  return rope.type == static_cast<int>(TurbomindRopeType::dynamic)
             ? tm::dynamic_scale_factor(rope.bases[b], rope.dim)
             : rope.scale_factor;
}

/// \brief Rotates the pair (x0, x1) at position `position` in T's arithmetic:
/// x0' = T(T(c·x0) − T(s·x1)), x1' = T(T(c·x1) + T(s·x0)), c and s rounded to T first.
/// \tparam T __half or __nv_bfloat16.
/// \param rope the parameters.
/// \param inv_freq the pair's inverse frequency.
/// \param position the token's position.
/// \param x0 the pair's first value (in / out).
/// \param x1 the pair's second value (in / out).
template <typename T>
__device__ __forceinline__ void rotate_pair(const TurbomindRope& rope, float inv_freq,
                                            std::int64_t position, float& x0, float& x1) {
  float c, s;
  tm::rope_cos_sin(rope, inv_freq, position, &c, &s);
  c = in_t<T>(c);
  s = in_t<T>(s);
  const float a = in_t<T>(tm::sub(in_t<T>(tm::mul(c, x0)), in_t<T>(tm::mul(s, x1))));
  const float b = in_t<T>(tm::add(in_t<T>(tm::mul(c, x1)), in_t<T>(tm::mul(s, x0))));
  x0 = a;
  x1 = b;
}

/// \brief The code of x: rne_sat(T(T(x − zero) × inv)).
/// \tparam T __half or __nv_bfloat16.
/// \param x the value (a T value).
/// \param zero the row's minimum.
/// \param inv T(1 / scale).
/// \param bits 8 or 4.
/// \return the code.
template <typename T>
__device__ __forceinline__ std::uint32_t code_of(float x, float zero, float inv, int bits) {
  return tm::code_of(in_t<T>(tm::mul(in_t<T>(tm::sub(x, zero)), inv)), bits);
}

/// \brief A value back from its code: T(T(code × scale) + zero).
/// \tparam T __half or __nv_bfloat16.
/// \param code the code.
/// \param scale the row's scale.
/// \param zero the row's zero.
/// \return the value.
template <typename T>
__device__ __forceinline__ float value_of(std::uint32_t code, float scale, float zero) {
  return in_t<T>(tm::add(in_t<T>(tm::mul(static_cast<float>(code), scale)), zero));
}

}  // namespace pagedkv::kernels::turbomind
