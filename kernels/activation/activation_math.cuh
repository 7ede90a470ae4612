/// \file
/// \brief The gated activations' per-element device math, written once: the naive and the
/// optimized kernels of silu_and_mul, gelu_and_mul and gelu_tanh_and_mul both call
/// act_and_mul_element(), so they are bit-identical to each other by construction.
///
/// Upstream: vLLM csrc/activation_kernels.cu (silu_kernel, gelu_kernel, gelu_tanh_kernel and
/// act_and_mul_kernel's `ACT_FN(x) * y`). The float32 operations are upstream's, in upstream's
/// order, with CUDA's expf, erff and tanhf (2 ulp each; no fast-math). The CPU reference
/// (reference_cpu/act_and_mul.cpp) performs the same operations with correctly rounded
/// transcendentals. Chapter "The model ops beside the cache".
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common/convert.cuh"
#include "norm/norm_math.cuh"
#include "pagedkv/act_and_mul.h"

namespace pagedkv::kernels::activation {

/// \brief act(x) in float32, as upstream computes it.
/// \tparam kActivation silu, gelu or gelu_tanh.
/// \param x the gate element as float.
/// \return the activation, float32.
template <Activation kActivation>
__device__ __forceinline__ float activation_float(float x) {
  if constexpr (kActivation == Activation::silu) {
    return x / (1.0f + expf(-x));  // x · sigmoid(x)
  } else if constexpr (kActivation == Activation::gelu) {
    constexpr float kAlpha = static_cast<float>(M_SQRT1_2);  // 1 / sqrt(2)
    return x * 0.5f * (1.0f + erff(x * kAlpha));
  } else {
    constexpr float kBeta = static_cast<float>(M_SQRT2 * M_2_SQRTPI * 0.5);  // sqrt(2 / pi)
    constexpr float kKappa = static_cast<float>(0.044715);
    const float x_cube = x * x * x;
    // x + kappa x³ as one fused multiply-add: what nvcc makes of upstream's expression, written
    // out so that the CPU reference can do the same (std::fma).
    const float inner = kBeta * __fmaf_rn(kKappa, x_cube, x);
    return 0.5f * x * (1.0f + tanhf(inner));
  }
}

/// \brief One output element: `round_T(float(round_T(act(float(x)))) · float(y))`.
/// \tparam kActivation silu, gelu or gelu_tanh.
/// \tparam T float, __half or __nv_bfloat16.
/// \param x the gate element.
/// \param y the up element.
/// \return the output element.
template <Activation kActivation, typename T>
__device__ __forceinline__ T act_and_mul_element(T x, T y) {
  const T act = norm::from_float<T>(activation_float<kActivation>(to_float(x)));
  return norm::from_float<T>(to_float(act) * to_float(y));
}

}  // namespace pagedkv::kernels::activation
