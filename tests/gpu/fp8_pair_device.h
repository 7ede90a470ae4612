/// \file
/// \brief The GPU side of the check that the optimized fp8 cache writer's conversion (a true fp32
/// division per value, then two values per conversion instruction: kernels/common/fp8_pair.cuh)
/// gives the bytes of the CPU numerics: a launcher that runs that device code over host arrays.
///
/// Plain C++ (no CUDA syntax): every pointer is HOST memory; the call copies its inputs to the
/// GPU, runs one kernel, copies the results back and synchronizes. Failures throw CudaError.
#pragma once

#include <cstdint>

namespace pagedkv::numerics {

/// \brief Divides and encodes on the GPU as the optimized reshape_and_cache_flash does for an
/// fp8 cache: values 2j and 2j + 1 share the scale `pair_scales[j]` and are encoded together
/// by `kernels::encode_fp8_pair` (an odd last value with 0 as its partner).
/// \param values the activations as fp32, `[count]`.
/// \param pair_scales one scale per pair of values, `[(count + 1) / 2]` (any value: zero,
///        negative, subnormal, inf and NaN too).
/// \param count number of values (0 does nothing).
/// \param quotients output, `[count]`: the device's `values[i] / pair_scales[i / 2]`.
/// \param fp8_e4m3 output, `[count]` E4M3 bytes from encode_fp8_pair.
/// \param fp8_e5m2 output, `[count]` E5M2 bytes from encode_fp8_pair.
void encode_fp8_pairs_on_device(const float* values, const float* pair_scales,
                                std::int64_t count, float* quotients, std::uint8_t* fp8_e4m3,
                                std::uint8_t* fp8_e5m2);

}  // namespace pagedkv::numerics
