#include "norm_checks.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <utility>
#include <vector>

#include "pagedkv/checks.h"
#include "pagedkv/error.h"

namespace pagedkv::checks {

RowLayout norm_rows(const TensorView& input, const char* name) {
  PAGEDKV_CHECK(input.ndim >= 1 && input.ndim <= 4, name,
                ": expected 1 to 4 dimensions [..., hidden_size], got ", input.ndim, " (shape ",
                input.shape_string(), ")");
  dtype_in(input, name, {DType::f32, DType::f16, DType::bf16});
  non_negative_layout(input, name);
  const int last = input.ndim - 1;
  const std::int64_t hidden_size = input.size(last);
  PAGEDKV_CHECK(hidden_size >= 1, name, ": expected hidden_size = size(", last,
                ") >= 1, got ", hidden_size, " (shape ", input.shape_string(), ")");
  PAGEDKV_CHECK(hidden_size <= kMaxNormHiddenSize, name, ": expected hidden_size = size(", last,
                ") <= 2^24 = ", kMaxNormHiddenSize,
                " (float(hidden_size) must be exact, and row indices fit in int), got ",
                hidden_size);
  // The last dimension packed: the kernels read a row as hidden_size consecutive elements.
  packed_from(input, name, last);

  // The leading dimensions, padded in front to three with size 1: [d0, d1, d2, hidden_size].
  std::int64_t sizes[3] = {1, 1, 1};
  std::int64_t strides[3] = {0, 0, 0};
  for (int d = 0; d < last; ++d) {
    sizes[3 - last + d] = input.size(d);
    strides[3 - last + d] = input.stride(d);
  }
  RowLayout rows;
  rows.num_rows = sizes[0] * sizes[1] * sizes[2];
  rows.size1 = sizes[1];
  rows.size2 = sizes[2];
  rows.stride0 = strides[0];
  rows.stride1 = strides[1];
  rows.stride2 = strides[2];
  return rows;
}

void packed_like(const TensorView& tensor, const char* name, const TensorView& input,
                 const char* input_name) {
  bool same_shape = tensor.ndim == input.ndim;
  for (int d = 0; same_shape && d < input.ndim; ++d) same_shape = tensor.size(d) == input.size(d);
  PAGEDKV_CHECK(same_shape, name, ": expected the shape of ", input_name, " ",
                input.shape_string(), ", got ", tensor.shape_string());
  dtype_is(tensor, name, input.dtype);
  PAGEDKV_CHECK(tensor.is_contiguous(), name, ": expected a contiguous tensor (row r at r × ",
                "hidden_size), got ", tensor.describe());
}

void norm_weight(const TensorView& weight, const char* name, std::int64_t hidden_size,
                 DType dtype) {
  ndim_is(weight, name, 1);
  size_is(weight, name, 0, hidden_size, "hidden_size, the last dimension of the rows");
  dtype_is(weight, name, dtype);
  PAGEDKV_CHECK(weight.is_contiguous(), name, ": expected a contiguous [hidden_size] tensor, got ",
                weight.describe());
}

float norm_epsilon(double epsilon) {
  PAGEDKV_CHECK(std::isfinite(epsilon) && epsilon >= 0.0 && epsilon <= FLT_MAX,
                "epsilon: expected a finite value in [0, FLT_MAX] (the kernels use it as a ",
                "float), got ", epsilon);
  return static_cast<float>(epsilon);
}

bool spans_are_disjoint(const TensorView& a, const TensorView& b) {
  const std::int64_t a_bytes = a.span_bytes();
  const std::int64_t b_bytes = b.span_bytes();
  if (a_bytes == 0 || b_bytes == 0) return true;
  const auto a_begin = reinterpret_cast<std::uintptr_t>(a.data);
  const auto b_begin = reinterpret_cast<std::uintptr_t>(b.data);
  return a_begin + static_cast<std::uintptr_t>(a_bytes) <= b_begin ||
         b_begin + static_cast<std::uintptr_t>(b_bytes) <= a_begin;
}

void memory_apart(const TensorView& tensor, const char* name, const TensorView& other,
                  const char* other_name) {
  PAGEDKV_CHECK(spans_are_disjoint(tensor, other), name, ": expected memory apart from ",
                other_name, " (the op writes ", name, " while it reads ", other_name,
                "), got overlapping spans: ", name, " ", tensor.describe(), " at ", tensor.data,
                ", ", other_name, " ", other.describe(), " at ", other.data);
}

void rows_are_distinct(const TensorView& input, const char* name, const RowLayout& rows,
                       std::int64_t hidden_size) {
  // Sorted by stride, every dimension must step over everything the smaller ones span (the
  // packed row of hidden_size elements is the innermost one).
  std::vector<std::pair<std::int64_t, std::int64_t>> dims;  // (stride, size), size-1 dims left out
  if (hidden_size > 1) dims.emplace_back(1, hidden_size);
  const std::int64_t sizes[3] = {rows.num_rows / std::max<std::int64_t>(rows.size1 * rows.size2, 1),
                                 rows.size1, rows.size2};
  const std::int64_t strides[3] = {rows.stride0, rows.stride1, rows.stride2};
  for (int d = 0; d < 3; ++d) {
    if (sizes[d] > 1) dims.emplace_back(strides[d], sizes[d]);
  }
  std::sort(dims.begin(), dims.end());
  std::int64_t span = 1;  // elements from the first to one past the last, over the dims so far
  for (const auto& [stride, size] : dims) {
    PAGEDKV_CHECK(stride >= span, name, ": the op overwrites it row by row, so its strides must ",
                  "give every row its own memory, but ", input.describe(),
                  " maps two rows onto the same elements");
    span += (size - 1) * stride;
  }
}

NormOperands norm_operands(const TensorView& input, const TensorView& second,
                           const char* second_name, const TensorView& weight, double epsilon) {
  NormOperands operands;
  operands.rows = norm_rows(input, "input");
  operands.hidden_size = input.size(input.ndim - 1);
  operands.dtype = input.dtype;
  packed_like(second, second_name, input, "input");
  norm_weight(weight, "weight", operands.hidden_size, input.dtype);
  operands.epsilon = norm_epsilon(epsilon);
  return operands;
}

}  // namespace pagedkv::checks
