/// \file
/// \brief The guard of the kernels whose call may be rejected on the device: the first thing
/// they do is read the device's fault record (pagedkv/deferred_checks.h) and return without
/// writing when a deferred check has found a bad index.
#pragma once

#include <cstdint>

#include "pagedkv/deferred_checks.h"

namespace pagedkv::kernels {

/// \brief Whether a deferred index check has rejected the call (or an earlier one whose fault
/// is not reported yet): then the kernel must write nothing. One load per thread of a word
/// that stays in L2; `__syncthreads_or` makes the answer the same for every thread of the CTA
/// (another stream's check could set the record between two threads' loads), so a kernel that
/// uses __syncthreads later cannot deadlock. Call it first, from every thread.
/// \param fault the record (pagedkv::device_fault()).
/// \return true when the kernel must return at once.
__device__ __forceinline__ bool call_rejected(const DeviceFault* fault) {
  const auto rule = *reinterpret_cast<const volatile std::uint32_t*>(&fault->rule);
  return __syncthreads_or(rule != 0) != 0;
}

}  // namespace pagedkv::kernels
