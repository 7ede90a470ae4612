/// \file
/// \brief merge_attn_states' device math, written once: the naive and the optimized kernels
/// both call merge_weights() per (token, head) and merge_value() per element, so they are
/// bit-identical to each other by construction.
///
/// Upstream: vLLM csrc/libtorch_stable/attention/merge_attn_states.cu (merge_attn_states_kernel)
/// and, for the fp8 store, csrc/quantization/w8a8/fp8/common.cuh (scaled_fp8_conversion). The
/// float32 operations are upstream's, in upstream's order, with CUDA's expf (2 ulp, through
/// `ex2.approx`) and logf (1 ulp); no fast-math. The CPU reference (reference_cpu/merge_math.h)
/// performs the same operations with exp and log rounded from float64. Chapter
/// "merge_attn_states".
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <type_traits>

#include "common/convert.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/ops/merge_attn_states.h"

namespace pagedkv::kernels::merge {

/// \brief What one (token, head) of a merged token needs (the device twin of
/// cpu::MergeWeights).
struct Weights {
  float p_scale;  ///< a / (a + b)
  float s_scale;  ///< b / (a + b)
  float lse;      ///< log(a + b) + max, or −inf when !merge
  bool merge;     ///< false: both LSEs count as −inf, copy the prefix row
};

/// \brief Upstream's scales: an infinite LSE of either sign becomes −inf; max by fmaxf; both
/// −inf: no merge; else a = expf(lp − max), b = expf(ls − max), a / (a + b), b / (a + b) and
/// logf(a + b) + max.
/// \param prefix_lse prefix_lse[h, t].
/// \param suffix_lse suffix_lse[h, t].
/// \return the weights.
__device__ __forceinline__ Weights merge_weights(float prefix_lse, float suffix_lse) {
  const float minus_inf = -__int_as_float(0x7f800000);
  // FlashAttention 2 reports +inf for an empty key set, FlashAttention 3 -inf.
  const float lp = isinf(prefix_lse) ? minus_inf : prefix_lse;
  const float ls = isinf(suffix_lse) ? minus_inf : suffix_lse;
  const float max_lse = fmaxf(lp, ls);
  if (isinf(max_lse)) return {0.f, 0.f, max_lse, false};  // both -inf
  const float p_se = expf(lp - max_lse);
  const float s_se = expf(ls - max_lse);
  const float out_se = p_se + s_se;
  return {p_se / out_se, s_se / out_se, logf(out_se) + max_lse, true};
}

/// \brief One merged element: `fma(p, p_scale, s · s_scale)`, what nvcc makes of upstream's
/// `p_out_f * p_scale + (s_out_f * s_scale)` (written out so that nothing else can be fused).
/// \param p the prefix element, as float.
/// \param s the suffix element, as float.
/// \param w the row's weights.
/// \return the merged value, float32.
__device__ __forceinline__ float merge_value(float p, float s, const Weights& w) {
  return __fmaf_rn(p, w.p_scale, __fmul_rn(s, w.s_scale));
}

/// \brief The fp8 E4M3 byte of one value: `e4m3(fmaxf(−448, fminf(value × scale_inverse,
/// 448)))`, upstream's scaled_fp8_conversion with an inverted scale (a NaN becomes 448).
/// \param value the merged or copied value.
/// \param scale_inverse `1.0f / *output_scale`.
/// \return the byte.
__device__ __forceinline__ std::uint8_t fp8_output(float value, float scale_inverse) {
  constexpr float kMax = 448.0f;
  const float clamped = fmaxf(-kMax, fminf(__fmul_rn(value, scale_inverse), kMax));
  return static_cast<std::uint8_t>(__nv_cvt_float_to_fp8(clamped, __NV_SATFINITE, __NV_E4M3));
}

/// \brief Stores one value as an output element: the input type rounded to nearest even, or
/// an fp8 byte.
/// \tparam T the input type (float, __half, __nv_bfloat16).
/// \tparam Out T, or std::uint8_t for an fp8 output.
/// \param value the value.
/// \param scale_inverse `1.0f / *output_scale` (fp8 only).
/// \return the output element.
template <typename T, typename Out>
__device__ __forceinline__ Out store_value(float value, float scale_inverse) {
  if constexpr (std::is_same_v<Out, std::uint8_t>) {
    return fp8_output(value, scale_inverse);
  } else {
    (void)scale_inverse;
    return norm::from_float<T>(value);
  }
}

/// \brief One element copied unchanged (the bits), or stored as fp8.
/// \tparam T the input type.
/// \tparam Out T, or std::uint8_t for an fp8 output.
/// \param x the element.
/// \param scale_inverse `1.0f / *output_scale` (fp8 only).
/// \return the output element.
template <typename T, typename Out>
__device__ __forceinline__ Out copy_value(T x, float scale_inverse) {
  if constexpr (std::is_same_v<Out, std::uint8_t>) {
    return fp8_output(to_float(x), scale_inverse);
  } else {
    (void)scale_inverse;
    return x;
  }
}

/// \brief The pointers and the layout both kernels read: the plan's strides with the
/// arguments' addresses (strides in elements of their tensor).
struct Operands {
  const void* prefix;         ///< prefix_output [N, H, D]
  const void* suffix;         ///< suffix_output [N, H, D]
  const float* prefix_lse;    ///< [H, N]
  const float* suffix_lse;    ///< [H, N]
  void* output;               ///< [N, H, D]: T, or fp8 bytes
  float* output_lse;          ///< [H, N], or nullptr
  const float* output_scale;  ///< one float, or nullptr
  std::int64_t num_tokens;    ///< N
  std::int64_t num_heads;     ///< H
  std::int64_t head_size;     ///< D
  std::int64_t merged_tokens; ///< P: tokens [P, N) copy the suffix
  std::int64_t prefix_token_stride;      ///< prefix_output.stride(0)
  std::int64_t prefix_head_stride;       ///< prefix_output.stride(1)
  std::int64_t suffix_token_stride;      ///< suffix_output.stride(0)
  std::int64_t suffix_head_stride;       ///< suffix_output.stride(1)
  std::int64_t output_token_stride;      ///< output.stride(0)
  std::int64_t output_head_stride;       ///< output.stride(1)
  std::int64_t prefix_lse_head_stride;   ///< prefix_lse.stride(0)
  std::int64_t prefix_lse_token_stride;  ///< prefix_lse.stride(1)
  std::int64_t suffix_lse_head_stride;   ///< suffix_lse.stride(0)
  std::int64_t suffix_lse_token_stride;  ///< suffix_lse.stride(1)
  std::int64_t output_lse_head_stride;   ///< output_lse.stride(0)
  std::int64_t output_lse_token_stride;  ///< output_lse.stride(1)
};

/// \brief The operands of a validated call.
/// \param plan what MergeAttnStates::validate() returned.
/// \param args the arguments (device memory).
/// \return the pointers and the plan's layout.
inline Operands operands_of(const MergeAttnStatesPlan& plan, const MergeAttnStates::Args& args) {
  Operands o;
  o.prefix = args.prefix_output.data;
  o.suffix = args.suffix_output.data;
  o.prefix_lse = static_cast<const float*>(args.prefix_lse.data);
  o.suffix_lse = static_cast<const float*>(args.suffix_lse.data);
  o.output = args.output.data;
  o.output_lse = plan.write_lse ? static_cast<float*>(args.output_lse.data) : nullptr;
  o.output_scale = plan.fp8_output ? static_cast<const float*>(args.output_scale.data) : nullptr;
  o.num_tokens = plan.num_tokens;
  o.num_heads = plan.num_heads;
  o.head_size = plan.head_size;
  o.merged_tokens = plan.merged_tokens;
  o.prefix_token_stride = plan.prefix_token_stride;
  o.prefix_head_stride = plan.prefix_head_stride;
  o.suffix_token_stride = plan.suffix_token_stride;
  o.suffix_head_stride = plan.suffix_head_stride;
  o.output_token_stride = plan.output_token_stride;
  o.output_head_stride = plan.output_head_stride;
  o.prefix_lse_head_stride = plan.prefix_lse_head_stride;
  o.prefix_lse_token_stride = plan.prefix_lse_token_stride;
  o.suffix_lse_head_stride = plan.suffix_lse_head_stride;
  o.suffix_lse_token_stride = plan.suffix_lse_token_stride;
  o.output_lse_head_stride = plan.output_lse_head_stride;
  o.output_lse_token_stride = plan.output_lse_token_stride;
  return o;
}

}  // namespace pagedkv::kernels::merge
