// The GPU half of the paired fp8 conversion check: one elementwise kernel that runs the optimized
// cache writer's own device code (common/fp8_pair.cuh) over host arrays, so that a test can
// compare every quotient and byte with the CPU numerics. Nothing here is fast on purpose.
#include "fp8_pair_device.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/fp8_pair.cuh"
#include "pagedkv/buffers.h"
#include "pagedkv/cuda_runtime.h"

namespace pagedkv::kernels::fp8_pair_check {

/// Threads per block (any multiple of 32 would do).
constexpr int kThreadsPerBlock = 256;

/// \brief One pair of values per thread: both quotients, and the two bytes of each fp8 format
/// from one paired conversion each.
/// \param values the activations as fp32.
/// \param pair_scales one scale per pair.
/// \param count number of values.
/// \param quotients the device quotients.
/// \param fp8_e4m3 E4M3 bytes.
/// \param fp8_e5m2 E5M2 bytes.
__global__ void encode_pairs_kernel(const float* __restrict__ values,       // [count]
                                    const float* __restrict__ pair_scales,  // [(count + 1) / 2]
                                    std::int64_t count,
                                    float* __restrict__ quotients,          // [count]
                                    std::uint8_t* __restrict__ fp8_e4m3,    // [count]
                                    std::uint8_t* __restrict__ fp8_e5m2) {  // [count]
  const std::int64_t pairs = (count + 1) / 2;
  for (std::int64_t pair = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
       pair < pairs; pair += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t first = 2 * pair;
    const bool has_second = first + 1 < count;
    const float scale = pair_scales[pair];
    const float x = values[first];
    const float y = has_second ? values[first + 1] : 0.f;
    const std::uint16_t e4m3 = encode_fp8_pair<KvCacheDtype::kFp8E4m3>(x, y, scale);
    const std::uint16_t e5m2 = encode_fp8_pair<KvCacheDtype::kFp8E5m2>(x, y, scale);
    quotients[first] = x / scale;
    fp8_e4m3[first] = static_cast<std::uint8_t>(e4m3);
    fp8_e5m2[first] = static_cast<std::uint8_t>(e5m2);
    if (has_second) {
      quotients[first + 1] = y / scale;
      fp8_e4m3[first + 1] = static_cast<std::uint8_t>(e4m3 >> 8);
      fp8_e5m2[first + 1] = static_cast<std::uint8_t>(e5m2 >> 8);
    }
  }
}

}  // namespace pagedkv::kernels::fp8_pair_check

namespace pagedkv::numerics {
namespace {

// Device memory is a pagedkv::Buffer of Memory::device: freed on scope exit, also when the
// launcher throws. This gives its bytes as `T`.
template <typename T>
T* as(const Buffer& buffer) {
  return reinterpret_cast<T*>(buffer.data());
}

}  // namespace

void encode_fp8_pairs_on_device(const float* values, const float* pair_scales,
                                std::int64_t count, float* quotients, std::uint8_t* fp8_e4m3,
                                std::uint8_t* fp8_e5m2) {
  if (count <= 0) return;  // a grid of zero blocks is a launch error
  namespace check = kernels::fp8_pair_check;
  const auto n = static_cast<std::size_t>(count);
  const std::size_t pairs = (n + 1) / 2;
  Buffer device_values(Memory::device, n * sizeof(float));
  Buffer device_scales(Memory::device, pairs * sizeof(float));
  Buffer device_quotients(Memory::device, n * sizeof(float));
  Buffer device_e4m3(Memory::device, n), device_e5m2(Memory::device, n);
  device_values.upload(values, n * sizeof(float));
  device_scales.upload(pair_scales, pairs * sizeof(float));
  const std::size_t blocks = (pairs + check::kThreadsPerBlock - 1) / check::kThreadsPerBlock;
  check::encode_pairs_kernel<<<static_cast<unsigned>(blocks < 65535 ? blocks : 65535),
                               check::kThreadsPerBlock>>>(
      as<const float>(device_values), as<const float>(device_scales), count,
      as<float>(device_quotients), as<std::uint8_t>(device_e4m3), as<std::uint8_t>(device_e5m2));
  PAGEDKV_CUDA_CHECK_LAUNCH();
  PAGEDKV_CUDA_CHECK(cudaDeviceSynchronize());
  PAGEDKV_CUDA_CHECK(cudaMemcpy(quotients, as<void>(device_quotients), n * sizeof(float),
                                cudaMemcpyDeviceToHost));
  PAGEDKV_CUDA_CHECK(cudaMemcpy(fp8_e4m3, as<void>(device_e4m3), n, cudaMemcpyDeviceToHost));
  PAGEDKV_CUDA_CHECK(cudaMemcpy(fp8_e5m2, as<void>(device_e5m2), n, cudaMemcpyDeviceToHost));
}

}  // namespace pagedkv::numerics
