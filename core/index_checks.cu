// Range checks over index tensors. The GPU path is CUB's ArgMax: one pass over the indices and a
// 16-byte copy back, so validating a 65,536-token slot_mapping costs a few microseconds plus one
// synchronization. Everything runs on the checked call's stream (pagedkv/deferred_checks.h:
// synchronous_check_stream), with stream-ordered scratch memory: the values are read after the
// work queued before the call on that stream, and no other stream is waited for.
#include <cstdint>
#include <cub/device/device_reduce.cuh>

#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"
#include "pagedkv/index_checks.h"

namespace pagedkv {

namespace {

template <typename T>
IndexAt max_index_cpu(const T* ids, std::int64_t n) {
  IndexAt best;
  for (std::int64_t i = 0; i < n; ++i) {
    if (best.position < 0 || ids[i] > best.value) best = {i, static_cast<std::int64_t>(ids[i])};
  }
  return best;
}

template <typename T>
IndexAt max_index_cuda(const T* ids, std::int64_t n) {
  cudaStream_t stream = synchronous_check_stream("ids");
  T* d_max = nullptr;
  std::int64_t* d_pos = nullptr;
  void* d_temp = nullptr;
  std::size_t temp_bytes = 0;
  PAGEDKV_CUDA_CHECK(cub::DeviceReduce::ArgMax(nullptr, temp_bytes, ids, d_max, d_pos, n));
  PAGEDKV_CUDA_CHECK(cudaMallocAsync(&d_temp, temp_bytes + 64, stream));
  d_max = reinterpret_cast<T*>(static_cast<char*>(d_temp) + temp_bytes + (-temp_bytes & 15));
  d_pos = reinterpret_cast<std::int64_t*>(reinterpret_cast<char*>(d_max) + 16);
  IndexAt result;
  T value{};
  cudaError_t status = cub::DeviceReduce::ArgMax(d_temp, temp_bytes, ids, d_max, d_pos, n, stream);
  if (status == cudaSuccess)
    status = cudaMemcpyAsync(&value, d_max, sizeof(T), cudaMemcpyDeviceToHost, stream);
  if (status == cudaSuccess)
    status = cudaMemcpyAsync(&result.position, d_pos, sizeof(std::int64_t), cudaMemcpyDeviceToHost,
                             stream);
  cudaFreeAsync(d_temp, stream);
  if (status == cudaSuccess) status = cudaStreamSynchronize(stream);
  PAGEDKV_CUDA_CHECK(status);
  result.value = static_cast<std::int64_t>(value);
  return result;
}

}  // namespace

IndexAt max_index(const TensorView& ids) {
  PAGEDKV_CHECK(ids.dtype == DType::i32 || ids.dtype == DType::i64,
                "max_index: expected an i32 or i64 tensor, got ", dtype_name(ids.dtype));
  PAGEDKV_CHECK(ids.is_contiguous(), "max_index: expected a contiguous tensor, got ",
                ids.describe());
  const std::int64_t n = ids.numel();
  if (n == 0) return {};
  if (ids.device == Device::cpu) {
    return ids.dtype == DType::i64 ? max_index_cpu(static_cast<const std::int64_t*>(ids.data), n)
                                   : max_index_cpu(static_cast<const std::int32_t*>(ids.data), n);
  }
  return ids.dtype == DType::i64 ? max_index_cuda(static_cast<const std::int64_t*>(ids.data), n)
                                 : max_index_cuda(static_cast<const std::int32_t*>(ids.data), n);
}

}  // namespace pagedkv
