// The unsigned-maximum check over an i64 index tensor. See position_checks.h.
#include <cstdint>
#include <cub/device/device_reduce.cuh>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "position_checks.h"

namespace pagedkv {

IndexAt max_unsigned_index(const TensorView& ids) {
  PAGEDKV_CHECK(ids.dtype == DType::i64, "max_unsigned_index: expected an i64 tensor, got ",
                dtype_name(ids.dtype));
  PAGEDKV_CHECK(ids.is_contiguous(), "max_unsigned_index: expected a contiguous tensor, got ",
                ids.describe());
  const std::int64_t n = ids.numel();
  if (n == 0) return {};
  // The same bytes read as u64: -1 becomes 2^64 - 1, above every valid index.
  const auto* bits = static_cast<const std::uint64_t*>(ids.data);
  IndexAt result;
  std::uint64_t largest = 0;
  if (ids.device == Device::cpu) {
    for (std::int64_t i = 0; i < n; ++i) {
      if (result.position < 0 || bits[i] > largest) {
        largest = bits[i];
        result.position = i;
      }
    }
  } else {
    // On the checked call's stream, as max_index() (index_checks.cu).
    cudaStream_t stream = synchronous_check_stream("positions");
    std::size_t temp_bytes = 0;
    PAGEDKV_CUDA_CHECK(cub::DeviceReduce::ArgMax(nullptr, temp_bytes, bits,
                                                 static_cast<std::uint64_t*>(nullptr),
                                                 static_cast<std::int64_t*>(nullptr), n));
    void* d_temp = nullptr;
    PAGEDKV_CUDA_CHECK(cudaMallocAsync(&d_temp, temp_bytes + 64, stream));
    auto* d_max = reinterpret_cast<std::uint64_t*>(static_cast<char*>(d_temp) + temp_bytes +
                                                   (-temp_bytes & 15));
    auto* d_pos = reinterpret_cast<std::int64_t*>(reinterpret_cast<char*>(d_max) + 16);
    cudaError_t status =
        cub::DeviceReduce::ArgMax(d_temp, temp_bytes, bits, d_max, d_pos, n, stream);
    if (status == cudaSuccess)
      status = cudaMemcpyAsync(&largest, d_max, sizeof largest, cudaMemcpyDeviceToHost, stream);
    if (status == cudaSuccess)
      status = cudaMemcpyAsync(&result.position, d_pos, sizeof(std::int64_t),
                               cudaMemcpyDeviceToHost, stream);
    cudaFreeAsync(d_temp, stream);
    if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
    PAGEDKV_CUDA_CHECK(status);
  }
  result.value = static_cast<std::int64_t>(largest);
  return result;
}

}  // namespace pagedkv
