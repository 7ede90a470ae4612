/// \file
/// \brief TensorView: a non-owning strided view (pointer, dtype, shape, strides, device).
///
/// Every op argument is a TensorView, so vLLM's layouts (NHD and HND caches told apart only by
/// their strides, key/value rows sliced out of a fused QKV buffer, the 5-D legacy key cache) are
/// described as they are instead of being copied into one canonical layout.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "pagedkv/dtype.h"

namespace pagedkv {

/// \brief The most dimensions a view can have (the legacy key cache has 5).
inline constexpr int kMaxDims = 6;

/// \brief Non-owning view of a strided tensor. Strides count elements, not bytes.
struct TensorView {
  void* data = nullptr;                     ///< first element (storage offset already applied)
  DType dtype = DType::f32;                 ///< element type
  Device device = Device::cpu;              ///< where `data` points
  int ndim = 0;                             ///< number of dimensions
  std::array<std::int64_t, kMaxDims> shape{};    ///< size of each dimension
  std::array<std::int64_t, kMaxDims> strides{};  ///< step of each dimension, in elements

  /// \brief A view with row-major (contiguous) strides.
  /// \param data address of the first element.
  /// \param dtype the element type.
  /// \param shape size of each dimension (at most kMaxDims).
  /// \param device where `data` points.
  /// \return the view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               Device device = Device::cpu);
  /// \brief A view with explicit strides (in elements).
  /// \param data address of the first element.
  /// \param dtype the element type.
  /// \param shape size of each dimension (at most kMaxDims).
  /// \param strides step of each dimension, in elements (one per size).
  /// \param device where `data` points.
  /// \return the view.
  static TensorView strided(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                            std::initializer_list<std::int64_t> strides,
                            Device device = Device::cpu);

  /// \brief Size of dimension `dim`.
  /// \param dim the dimension, 0 <= dim < ndim.
  /// \return its size.
  std::int64_t size(int dim) const { return shape[dim]; }
  /// \brief Stride of dimension `dim`, in elements.
  /// \param dim the dimension, 0 <= dim < ndim.
  /// \return its stride, in elements.
  std::int64_t stride(int dim) const { return strides[dim]; }
  /// \brief Product of the sizes (1 for a 0-d view).
  /// \return the number of elements.
  std::int64_t numel() const;
  /// \brief Bytes of one element.
  /// \return bytes per element.
  std::int64_t element_size() const { return dtype_size(dtype); }
  /// \brief True when the strides are the row-major strides of the shape (size-1 dims ignored).
  /// \return whether the view is contiguous.
  bool is_contiguous() const;
  /// \brief Bytes spanned from the first to one past the last element (0 when empty).
  /// \return the span in bytes.
  std::int64_t span_bytes() const;
  /// \brief The view with dimensions `a` and `b` swapped (no data moves).
  /// \param a one dimension.
  /// \param b the other dimension.
  /// \return the new view.
  TensorView transposed(int a, int b) const;
  /// \brief Pointer to the element at `index` (one index per dimension), as bytes.
  /// \tparam Index integer types.
  /// \param index the indices of the first dimensions; missing trailing indices count as 0.
  /// \return the address of the element's first byte.
  template <typename... Index>
  std::uint8_t* byte_ptr(Index... index) const {
    const std::int64_t idx[] = {static_cast<std::int64_t>(index)...};
    std::int64_t offset = 0;
    for (int d = 0; d < static_cast<int>(sizeof...(Index)); ++d) offset += idx[d] * strides[d];
    return static_cast<std::uint8_t*>(data) + offset * element_size();
  }
  /// \brief "bf16[4, 8, 128] strides [1024, 128, 1] on cuda", for error messages.
  /// \return the description.
  std::string describe() const;
  /// \brief "[4, 8, 128]".
  /// \return the shape in brackets.
  std::string shape_string() const;
};

}  // namespace pagedkv
