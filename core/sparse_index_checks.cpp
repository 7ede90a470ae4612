// Validation rules of DeepSeek V4's index builders. See sparse_index_checks.h.
#include "sparse_index_checks.h"

#include <cuda_runtime_api.h>

#include <cstring>

#include "block_lookup_checks.h"
#include "pagedkv/checks.h"
#include "pagedkv/cuda_runtime.h"
#include "pagedkv/deferred_checks.h"
#include "pagedkv/error.h"

namespace pagedkv::checks {

void index_matrix(const TensorView& tensor, const char* name, Device device) {
  device_is(tensor, name, device);
  ndim_is(tensor, name, 2);
  dtype_is(tensor, name, DType::i32);
  non_negative_layout(tensor, name);
  packed_from(tensor, name, 1);
  not_null(tensor, name);
}

void index_vector(const TensorView& tensor, const char* name, Device device,
                  std::int64_t min_size, const char* what) {
  device_is(tensor, name, device);
  i32_vector(tensor, name, min_size, what);
}

void bool_vector(const TensorView& tensor, const char* name, Device device, std::int64_t min_size,
                 const char* what) {
  device_is(tensor, name, device);
  ndim_is(tensor, name, 1);
  dtype_is(tensor, name, DType::b8);
  non_negative_layout(tensor, name);
  PAGEDKV_CHECK(tensor.is_contiguous(), name, ": expected a contiguous tensor, got ",
                tensor.describe());
  PAGEDKV_CHECK(tensor.size(0) >= min_size, name, ": expected at least ", min_size, " elements (",
                what, "), got ", tensor.size(0));
  not_null(tensor, name);
}

void integer_in(std::int64_t value, const char* name, std::int64_t lo, std::int64_t hi) {
  PAGEDKV_CHECK(value >= lo && value <= hi, name, ": expected a value in [", lo, ", ", hi,
                "], got ", value);
}

bool reads_index_values(Device device) {
  if (device == Device::cpu) return true;
  const CheckScope* scope = CheckScope::current();
  return scope == nullptr || !scope->deferred;
}

std::vector<std::int32_t> read_matrix(const TensorView& tensor) {
  const std::int64_t rows = tensor.size(0);
  const std::int64_t columns = tensor.size(1);
  std::vector<std::int32_t> packed(static_cast<std::size_t>(rows * columns));
  if (rows == 0 || columns == 0) return packed;
  // One copy of the whole span (rows stride(0) apart), then the rows packed on the host.
  const std::vector<std::int32_t> span =
      copy_i32(tensor.data, tensor.device, (rows - 1) * tensor.stride(0) + columns);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::memcpy(packed.data() + r * columns, span.data() + r * tensor.stride(0),
                static_cast<std::size_t>(columns) * sizeof(std::int32_t));
  }
  return packed;
}

std::vector<std::uint8_t> read_mask(const TensorView& tensor, std::int64_t count) {
  std::vector<std::uint8_t> values(static_cast<std::size_t>(count));
  if (count == 0) return values;
  if (tensor.device == Device::cpu) {
    std::memcpy(values.data(), tensor.data, values.size());
  } else {
    cudaStream_t stream = synchronous_check_stream("its index tensors");
    PAGEDKV_CUDA_CHECK(cudaMemcpyAsync(values.data(), tensor.data, values.size(),
                                       cudaMemcpyDeviceToHost, stream));
    PAGEDKV_CUDA_CHECK(cudaStreamSynchronize(stream));
  }
  for (std::uint8_t& value : values) value = value != 0;
  return values;
}

}  // namespace pagedkv::checks
