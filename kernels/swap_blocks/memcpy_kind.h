/// \file
/// \brief The cudaMemcpyKind of each swap_blocks direction, shared by the naive version (one
/// cudaMemcpyAsync per pair) and the optimized one (one per run of consecutive blocks).
#pragma once

#include <cuda_runtime_api.h>

#include "pagedkv/ops/swap_blocks.h"

namespace pagedkv::kernels {

/// \brief The cudaMemcpyKind vLLM passes for a swap direction.
/// \param direction the plan's direction (from the devices of src and dst).
/// \return the matching cudaMemcpyKind.
inline cudaMemcpyKind memcpy_kind(CopyDirection direction) {
  switch (direction) {
    case CopyDirection::host_to_device: return cudaMemcpyHostToDevice;
    case CopyDirection::device_to_host: return cudaMemcpyDeviceToHost;
    case CopyDirection::device_to_device: return cudaMemcpyDeviceToDevice;
    case CopyDirection::host_to_host: return cudaMemcpyHostToHost;
  }
  return cudaMemcpyDefault;
}

}  // namespace pagedkv::kernels
