// A plain device copy: one thread per 16-byte unit (grid-stride beyond 2^30 units) and the last
// bytes < 16 by the first threads, in one launch: the simplest kernel that streams at the
// memory's speed. See copy_kernel.h for why it exists.
#include "copy_kernel.h"

#include <algorithm>
#include <cstdint>

#include "pagedkv/cuda_runtime.h"

namespace pagedkv::compare {

namespace {

constexpr int kThreads = 256;

// dst[0, 16 * units + tail) = src[...]: the 16-byte units by a grid-stride loop, the tail
// bytes (fewer than 16) by the first `tail` threads. A byte count that is not a multiple of 16
// (an op's byte model often adds 8 bytes per token of slot_mapping) must not drop the whole
// copy to byte loads: it did, and ran at a quarter of the memory's speed.
__global__ void copy_units_and_tail(uint4* __restrict__ dst, const uint4* __restrict__ src,
                                    std::size_t units, unsigned tail) {
  const std::size_t first = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = first; i < units; i += step) dst[i] = src[i];
  if (first < tail) {
    reinterpret_cast<unsigned char*>(dst + units)[first] =
        reinterpret_cast<const unsigned char*>(src + units)[first];
  }
}

// Misaligned pointers: byte by byte (the comparison tool's buffers are aligned; kept for safety).
__global__ void copy_bytes(unsigned char* __restrict__ dst, const unsigned char* __restrict__ src,
                           std::size_t count) {
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < count; i += step)
    dst[i] = src[i];
}

unsigned grid_for(std::size_t count) {
  return static_cast<unsigned>(
      std::min<std::size_t>((std::max<std::size_t>(count, 16) + kThreads - 1) / kThreads, 1u << 22));
}

}  // namespace

void launch_copy_kernel(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  const bool aligned = reinterpret_cast<std::uintptr_t>(dst) % 16 == 0 &&
                       reinterpret_cast<std::uintptr_t>(src) % 16 == 0;
  if (aligned) {
    const std::size_t units = bytes / 16;
    copy_units_and_tail<<<grid_for(units), kThreads, 0, stream>>>(
        static_cast<uint4*>(dst), static_cast<const uint4*>(src), units,
        static_cast<unsigned>(bytes % 16));
  } else {
    copy_bytes<<<grid_for(bytes), kThreads, 0, stream>>>(
        static_cast<unsigned char*>(dst), static_cast<const unsigned char*>(src), bytes);
  }
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace pagedkv::compare
