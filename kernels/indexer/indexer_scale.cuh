/// \file
/// \brief Device code that the naive and optimized indexer_k_quant_and_cache kernels share: a
/// 16-bit key element as fp32, and a tile's scale from its amax (with "ue8m0", rounded up to a
/// power of two on the exponent bits). The CPU reference writes the same steps out on its own.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "pagedkv/ops/indexer_k_quant_and_cache.h"

namespace pagedkv::kernels::indexer {

/// \brief The value of one key element as fp32 (exact for both 16-bit types).
/// \tparam Key __nv_bfloat16 or __half.
/// \param value the element.
/// \return its value.
template <typename Key>
__device__ __forceinline__ float key_to_float(Key value) {
  if constexpr (std::is_same_v<Key, __half>) {
    return __half2float(value);
  } else {
    return __bfloat162float(value);
  }
}

/// \brief The scale of a tile whose largest |element| is `amax`: max(amax, 1e-4) / 448 (a true
/// fp32 division, as upstream), rounded up to the next power of two for "ue8m0".
///
/// The rounding works on the fp32 bits (a non-zero mantissa moves to the next exponent): the
/// same integer steps as the CPU reference, where upstream's `exp2f(ceilf(log2f(scale)))`
/// leans on the accuracy of two transcendental functions (it gives the same powers of two for
/// every 16-bit amax). +inf (a tile with an infinite element) stays +inf.
/// \param amax the tile's amax (fmaxf over |element|: NaN elements ignored).
/// \param ue8m0 whether to round up to a power of two.
/// \return the scale stored in the cache.
__device__ __forceinline__ float tile_scale(float amax, bool ue8m0) {
  float scale = fmaxf(amax, kIndexerAmaxFloor) / kIndexerFp8Max;
  if (ue8m0) {
    constexpr std::uint32_t kMantissa = 0x007FFFFFu;
    std::uint32_t bits = __float_as_uint(scale);
    if ((bits & kMantissa) != 0) bits = (bits & ~kMantissa) + 0x00800000u;
    scale = __uint_as_float(bits);
  }
  return scale;
}

}  // namespace pagedkv::kernels::indexer
