// A plain device copy: one thread per 16-byte unit (grid-stride beyond 2^30 units), the
// simplest kernel that streams at the memory's speed. See copy_kernel.h for why it exists.
#include "copy_kernel.h"

#include <algorithm>
#include <cstdint>

#include "pagedkv/cuda_runtime.h"

namespace pagedkv::compare {

namespace {

constexpr int kThreads = 256;

template <typename Unit>
__global__ void copy_units(Unit* __restrict__ dst, const Unit* __restrict__ src,
                           std::size_t count) {
  const std::size_t step = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < count; i += step)
    dst[i] = src[i];
}

template <typename Unit>
void launch_units(void* dst, const void* src, std::size_t count, cudaStream_t stream) {
  const std::size_t blocks = std::min<std::size_t>((count + kThreads - 1) / kThreads, 1u << 22);
  copy_units<Unit><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<Unit*>(dst), static_cast<const Unit*>(src), count);
  PAGEDKV_CUDA_CHECK_LAUNCH();
}

}  // namespace

void launch_copy_kernel(void* dst, const void* src, std::size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return;
  const bool wide = bytes % 16 == 0 && reinterpret_cast<std::uintptr_t>(dst) % 16 == 0 &&
                    reinterpret_cast<std::uintptr_t>(src) % 16 == 0;
  if (wide)
    launch_units<uint4>(dst, src, bytes / 16, stream);
  else
    launch_units<std::uint8_t>(dst, src, bytes, stream);
}

}  // namespace pagedkv::compare
