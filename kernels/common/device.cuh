/// \file
/// \brief What a launch needs to know about the device: its SM count, asked once.
///
/// Kernels whose grid is sized to the device (one wave of CTAs, then a grid-stride loop) need
/// the SM count at every launch. Asking the driver each time would put an attribute query inside
/// a CUDA graph capture, so the answer is remembered per device.
#pragma once

#include <atomic>

#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels {

/// \brief The number of SMs of the current device, asked once per device and remembered (so that
/// launches inside a CUDA graph capture make no attribute query).
/// \return the SM count.
inline int sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> known[kMaxDevices] = {};
  int device = 0;
  PAGEDKV_CUDA_CHECK(cudaGetDevice(&device));
  if (device < kMaxDevices && known[device].load(std::memory_order_relaxed) > 0) {
    return known[device].load(std::memory_order_relaxed);
  }
  int sms = 0;
  PAGEDKV_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  if (device < kMaxDevices) known[device].store(sms, std::memory_order_relaxed);
  return sms;
}

}  // namespace pagedkv::kernels
