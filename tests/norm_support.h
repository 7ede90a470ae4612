// Helpers shared by the tests of the two norms (test_rms_norm.cpp, test_fused_add_rms_norm.cpp):
// elements by value, rows of hidden states in the layouts the contract accepts (packed, strided
// with padding between rows, misaligned by one element, odd row pitch), and comparisons of the
// rows and of the bytes around them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "numerics.h"
#include "pagedkv/dtype.h"
#include "pagedkv/tensor_view.h"
#include "support.h"

namespace pagedkv::test::norm {

/// Element i of a buffer of `dtype`, as float (exact).
inline float get(const void* base, DType dtype, std::int64_t i) {
  const auto* bytes = static_cast<const std::uint8_t*>(base);
  if (dtype == DType::f32) {
    float value;
    std::memcpy(&value, bytes + 4 * i, 4);
    return value;
  }
  std::uint16_t bits;
  std::memcpy(&bits, bytes + 2 * i, 2);
  return dtype == DType::f16 ? numerics::half_bits_to_float(bits)
                             : numerics::bf16_bits_to_float(bits);
}

/// Writes `value`, rounded by the project's numerics, as element i of a buffer of `dtype`.
inline void set(void* base, DType dtype, std::int64_t i, float value) {
  auto* bytes = static_cast<std::uint8_t*>(base);
  if (dtype == DType::f32) {
    std::memcpy(bytes + 4 * i, &value, 4);
    return;
  }
  const std::uint16_t bits = dtype == DType::f16 ? numerics::float_to_half_bits(value)
                                                 : numerics::float_to_bf16_bits(value);
  std::memcpy(bytes + 2 * i, &bits, 2);
}

/// `value` rounded to `dtype` and back (what an element of that dtype holds).
inline float rounded(DType dtype, float value) {
  std::uint8_t bytes[4];
  set(bytes, dtype, 0, value);
  return get(bytes, dtype, 0);
}

/// A host buffer holding `values` as `dtype`.
inline Buffer encoded(DType dtype, const std::vector<float>& values) {
  Buffer buffer(Memory::host, std::max<std::size_t>(values.size(), 1) * dtype_size(dtype));
  for (std::size_t i = 0; i < values.size(); ++i) set(buffer.data(), dtype, i, values[i]);
  return buffer;
}

/// A poisoned host buffer of `bytes` bytes.
inline Buffer poisoned(std::size_t bytes) {
  Buffer buffer(Memory::host, bytes);
  poison(buffer.data(), buffer.size());
  return buffer;
}

/// How the rows of a `[..., hidden_size]` tensor lie in memory.
enum class RowsLayout {
  packed,      ///< [rows, hidden] contiguous
  strided,     ///< [d0, d1, d2, hidden] with padding after every row and every group of rows
  misaligned,  ///< [rows, hidden] contiguous, one element past an aligned address
  odd_pitch,   ///< [rows, hidden], rows hidden + 1 elements apart
};

inline const char* layout_name(RowsLayout layout) {
  switch (layout) {
    case RowsLayout::packed: return "packed";
    case RowsLayout::strided: return "strided 4-D";
    case RowsLayout::misaligned: return "misaligned by one element";
    case RowsLayout::odd_pitch: return "odd row pitch";
  }
  return "?";
}

/// Rows of hidden states in a buffer: random rows, poisoned padding and slack around them.
struct Rows {
  Buffer bytes;                          ///< the whole buffer
  TensorView view;                       ///< the rows (host memory)
  std::vector<std::int64_t> row_offset;  ///< element offset of each row's first element
  std::int64_t hidden_size = 0;
  DType dtype = DType::f32;

  Rows() = default;
  Rows(Rows&&) = default;
  Rows& operator=(Rows&&) = default;
  /// A copy owns copies of the bytes, and its view points into them.
  Rows(const Rows& other)
      : bytes(copy_to(Memory::host, other.bytes)),
        view(test::rebase(other.view, other.bytes.data(), bytes.data(), Device::cpu)),
        row_offset(other.row_offset),
        hidden_size(other.hidden_size),
        dtype(other.dtype) {}
};

/// `num_rows` random rows (values in [-range, range]) of `hidden_size` elements in `layout`.
inline Rows make_rows(DType dtype, std::int64_t num_rows, std::int64_t hidden_size,
                      RowsLayout layout, std::uint64_t seed, float range = 4.f) {
  Rows rows;
  rows.hidden_size = hidden_size;
  rows.dtype = dtype;
  const std::int64_t H = hidden_size;
  std::int64_t first = 8;  // elements before the first row (keeps 16-byte alignment)
  std::vector<std::int64_t> shape, strides;
  if (layout == RowsLayout::strided) {
    // [d0, d1, d2, H]: d2 = 3 when it divides, then d1 = 2 when it divides the rest.
    const std::int64_t d2 = num_rows % 3 == 0 && num_rows > 0 ? 3 : 1;
    const std::int64_t d1 = (num_rows / d2) % 2 == 0 && num_rows > 0 ? 2 : 1;
    const std::int64_t d0 = d2 * d1 == 0 ? 0 : num_rows / (d2 * d1);
    const std::int64_t s2 = H + 8, s1 = d2 * s2 + 16, s0 = d1 * s1 + 24;
    shape = {d0, d1, d2, H};
    strides = {s0, s1, s2, 1};
    for (std::int64_t i0 = 0; i0 < d0; ++i0)
      for (std::int64_t i1 = 0; i1 < d1; ++i1)
        for (std::int64_t i2 = 0; i2 < d2; ++i2)
          rows.row_offset.push_back(first + i0 * s0 + i1 * s1 + i2 * s2);
  } else {
    if (layout == RowsLayout::misaligned) first = 9;
    const std::int64_t pitch = layout == RowsLayout::odd_pitch ? H + 1 : H;
    shape = {num_rows, H};
    strides = {pitch, 1};
    for (std::int64_t r = 0; r < num_rows; ++r) rows.row_offset.push_back(first + r * pitch);
  }
  const std::int64_t end = rows.row_offset.empty() ? first : rows.row_offset.back() + H;
  const std::int64_t total = end + 16;  // slack after the last row
  rows.bytes = poisoned(static_cast<std::size_t>(total * dtype_size(dtype)));
  Buffer values(Memory::host, static_cast<std::size_t>(std::max<std::int64_t>(num_rows * H, 1) *
                                                       dtype_size(dtype)));
  fill_random(values.data(), dtype, num_rows * H, seed, range);
  for (std::int64_t r = 0; r < num_rows; ++r) {
    std::memcpy(rows.bytes.data() + rows.row_offset[r] * dtype_size(dtype),
                values.data() + r * H * dtype_size(dtype), H * dtype_size(dtype));
  }
  void* data = rows.bytes.data() + first * dtype_size(dtype);
  rows.view.data = data;
  rows.view.dtype = dtype;
  rows.view.device = Device::cpu;
  rows.view.ndim = static_cast<int>(shape.size());
  for (std::size_t d = 0; d < shape.size(); ++d) {
    rows.view.shape[d] = shape[d];
    rows.view.strides[d] = strides[d];
  }
  return rows;
}

/// Packed rows, [rows, hidden] contiguous, `front` elements into a poisoned buffer with 16
/// elements of slack after them.
inline Rows make_packed(DType dtype, std::int64_t num_rows, std::int64_t hidden_size,
                        std::int64_t front, std::uint64_t seed, bool random = true) {
  Rows rows;
  rows.hidden_size = hidden_size;
  rows.dtype = dtype;
  const std::int64_t count = num_rows * hidden_size;
  rows.bytes = poisoned(static_cast<std::size_t>((front + count + 16) * dtype_size(dtype)));
  if (random) fill_random(rows.bytes.data() + front * dtype_size(dtype), dtype, count, seed);
  for (std::int64_t r = 0; r < num_rows; ++r) rows.row_offset.push_back(front + r * hidden_size);
  rows.view = TensorView::contiguous(rows.bytes.data() + front * dtype_size(dtype), dtype,
                                     {num_rows, hidden_size});
  return rows;
}

/// Element i of row r of `rows`, read from `bytes` (a buffer laid out like rows.bytes).
inline float row_element(const Rows& rows, const Buffer& bytes, std::int64_t r, std::int64_t i) {
  return get(bytes.data(), rows.dtype, rows.row_offset[r] + i);
}

/// Writes element i of row r of `rows` into rows.bytes.
inline void set_row_element(Rows& rows, std::int64_t r, std::int64_t i, float value) {
  set(rows.bytes.data(), rows.dtype, rows.row_offset[r] + i, value);
}

/// The rows of a buffer laid out like `rows`, packed one after the other.
inline std::vector<std::uint8_t> gather(const Rows& rows, const Buffer& bytes) {
  const std::int64_t row_bytes = rows.hidden_size * dtype_size(rows.dtype);
  std::vector<std::uint8_t> packed(rows.row_offset.size() * row_bytes + 1);
  for (std::size_t r = 0; r < rows.row_offset.size(); ++r) {
    std::memcpy(packed.data() + r * row_bytes,
                bytes.data() + rows.row_offset[r] * dtype_size(rows.dtype), row_bytes);
  }
  return packed;
}

/// Index of the first byte outside the rows where `a` and `b` differ, or -1.
inline std::int64_t first_difference_outside_rows(const Rows& rows, const Buffer& a,
                                                  const Buffer& b) {
  const std::int64_t element = dtype_size(rows.dtype);
  std::vector<bool> in_row(a.size(), false);
  for (std::int64_t offset : rows.row_offset) {
    std::fill(in_row.begin() + offset * element,
              in_row.begin() + (offset + rows.hidden_size) * element, true);
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!in_row[i] && a.data()[i] != b.data()[i]) return static_cast<std::int64_t>(i);
  }
  return -1;
}

/// Downloads a device buffer into a host buffer of the same size.
inline Buffer download(const Buffer& device) {
  Buffer host(Memory::host, device.size());
  device.download(host.data(), device.size());
  return host;
}

}  // namespace pagedkv::test::norm
