#include "pagedkv/tensor_view.h"

#include <sstream>

#include "pagedkv/error.h"

namespace pagedkv {

namespace {
TensorView make_view(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                     Device device) {
  PAGEDKV_CHECK(shape.size() <= static_cast<std::size_t>(kMaxDims), "a TensorView has at most ",
                kMaxDims, " dimensions, got ", shape.size());
  TensorView view;
  view.data = data;
  view.dtype = dtype;
  view.device = device;
  view.ndim = static_cast<int>(shape.size());
  int d = 0;
  for (std::int64_t s : shape) view.shape[d++] = s;
  return view;
}
}  // namespace

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                                  Device device) {
  TensorView view = make_view(data, dtype, shape, device);
  std::int64_t step = 1;
  for (int d = view.ndim - 1; d >= 0; --d) {
    view.strides[d] = step;
    step *= view.shape[d];
  }
  return view;
}

TensorView TensorView::strided(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               std::initializer_list<std::int64_t> strides, Device device) {
  PAGEDKV_CHECK(shape.size() == strides.size(), "TensorView::strided: ", shape.size(),
                " sizes but ", strides.size(), " strides");
  TensorView view = make_view(data, dtype, shape, device);
  int d = 0;
  for (std::int64_t s : strides) view.strides[d++] = s;
  return view;
}

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

bool TensorView::is_contiguous() const {
  std::int64_t step = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != step) return false;
    step *= shape[d];
  }
  return true;
}

std::int64_t TensorView::span_bytes() const {
  if (numel() == 0) return 0;
  std::int64_t last = 0;
  for (int d = 0; d < ndim; ++d) last += (shape[d] - 1) * strides[d];
  return (last + 1) * element_size();
}

TensorView TensorView::transposed(int a, int b) const {
  TensorView view = *this;
  std::swap(view.shape[a], view.shape[b]);
  std::swap(view.strides[a], view.strides[b]);
  return view;
}

std::string TensorView::shape_string() const {
  std::ostringstream out;
  out << "[";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << shape[d];
  out << "]";
  return out.str();
}

std::string TensorView::describe() const {
  std::ostringstream out;
  out << dtype_name(dtype) << shape_string() << " strides [";
  for (int d = 0; d < ndim; ++d) out << (d ? ", " : "") << strides[d];
  out << "] on " << device_name(device);
  return out.str();
}

}  // namespace pagedkv
