#include "pagedkv/checks.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "pagedkv/error.h"

namespace pagedkv::checks {

void device_is(const TensorView& tensor, const char* name, Device device) {
  PAGEDKV_CHECK(tensor.device == device, name, ": expected a tensor on ", device_name(device),
                ", got one on ", device_name(tensor.device));
}

void ndim_is(const TensorView& tensor, const char* name, int ndim) {
  PAGEDKV_CHECK(tensor.ndim == ndim, name, ": expected ", ndim, " dimensions, got ", tensor.ndim,
                " (shape ", tensor.shape_string(), ")");
}

void dtype_is(const TensorView& tensor, const char* name, DType dtype) {
  PAGEDKV_CHECK(tensor.dtype == dtype, name, ": expected dtype ", dtype_name(dtype), ", got ",
                dtype_name(tensor.dtype));
}

void dtype_in(const TensorView& tensor, const char* name, std::initializer_list<DType> dtypes) {
  std::string allowed;
  for (DType d : dtypes) {
    if (tensor.dtype == d) return;
    allowed += (allowed.empty() ? "" : ", ") + std::string(dtype_name(d));
  }
  reject(name, ": expected dtype in {", allowed, "}, got ", dtype_name(tensor.dtype));
}

void size_is(const TensorView& tensor, const char* name, int dim, std::int64_t expected,
             const char* what) {
  PAGEDKV_CHECK(tensor.size(dim) == expected, name, ".size(", dim, "): expected ", expected, " (",
                what, "), got ", tensor.size(dim), " (shape ", tensor.shape_string(), ")");
}

void not_null(const TensorView& tensor, const char* name) {
  PAGEDKV_CHECK(tensor.numel() == 0 || tensor.data != nullptr, name,
                ": data pointer is null but the tensor has ", tensor.numel(), " elements");
}

void packed_from(const TensorView& tensor, const char* name, int first_dim) {
  std::int64_t step = 1;
  for (int d = tensor.ndim - 1; d >= first_dim; --d) {
    PAGEDKV_CHECK(tensor.shape[d] == 1 || tensor.strides[d] == step, name, ": dimensions ",
                  first_dim, ".. must be packed (stride of dim ", d, " expected ", step, ", got ",
                  tensor.strides[d], "; ", tensor.describe(), ")");
    step *= tensor.shape[d];
  }
}

void non_negative_layout(const TensorView& tensor, const char* name) {
  for (int d = 0; d < tensor.ndim; ++d) {
    PAGEDKV_CHECK(tensor.shape[d] >= 0 && tensor.strides[d] >= 0, name,
                  ": negative size or stride in ", tensor.describe());
  }
}

bool elements_are_distinct(const TensorView& tensor) {
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size), size-1 dims left out
  for (int d = 0; d < tensor.ndim; ++d) {
    if (tensor.shape[d] > 1) dims.emplace_back(tensor.strides[d], tensor.shape[d]);
  }
  std::sort(dims.begin(), dims.end());
  std::int64_t span = 1;  // elements from the first to one past the last, over the dims so far
  for (const auto& [stride, size] : dims) {
    if (stride < span) return false;
    span += (size - 1) * stride;
  }
  return true;
}

}  // namespace pagedkv::checks
