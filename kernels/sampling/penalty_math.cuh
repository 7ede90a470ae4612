/// \file
/// \brief apply_repetition_penalties' per-logit device math, written once for the naive and
/// the optimized kernels (upstream: vLLM csrc/sampler.cu, apply_repetition_penalties_kernel).
#pragma once

#include "common/convert.cuh"
#include "norm/norm_math.cuh"

namespace pagedkv::kernels::sampling {

/// \brief A masked logit penalized: `l / p` for l > 0, else `l · p`, in float32 (IEEE division,
/// no fast-math), rounded once to T. The CPU reference does the same operations.
/// \tparam T float, __half or __nv_bfloat16.
/// \param logit the logit.
/// \param penalty the sequence's penalty, as float.
/// \return the penalized logit.
template <typename T>
__device__ __forceinline__ T penalize(T logit, float penalty) {
  const float l = to_float(logit);
  return norm::from_float<T>(l > 0.0f ? l / penalty : l * penalty);
}

}  // namespace pagedkv::kernels::sampling
