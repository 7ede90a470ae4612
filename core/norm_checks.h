/// \file
/// \brief Validation rules shared by the two norms, rms_norm and fused_add_rms_norm: the rows of
/// hidden states, the tensors that must match them, the weight and epsilon.
///
/// Both contracts call these checks so that each rule is written, and worded, once. Every check
/// throws InvalidArgument naming the argument, the expected and the actual value.
#pragma once

#include <cstdint>

#include "pagedkv/dtype.h"
#include "pagedkv/row_layout.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief Longest row the norm kernels accept: 2^24 elements. Row-internal indices are `int`,
/// and the kernels divide the float32 sum of squares by `float(hidden_size)`, which is exact
/// only up to 2^24 (the CPU reference divides by the exact integer).
inline constexpr std::int64_t kMaxNormHiddenSize = std::int64_t{1} << 24;

/// \brief The rows of hidden states a norm reads: `[..., hidden_size]` with 1 to 4 dimensions,
/// dtype f32, f16 or bf16, the last dimension packed, the leading ones with any non-negative
/// strides, 1 <= hidden_size <= kMaxNormHiddenSize.
/// \param input the hidden states.
/// \param name its argument name.
/// \return where each row starts: the leading dimensions padded in front to three with size 1.
RowLayout norm_rows(const TensorView& input, const char* name);

/// \brief `tensor` has the shape and dtype of `input` and is contiguous (its row r starts at
/// r × hidden_size, as in vLLM's out and residual).
/// \param tensor the tensor to check (out or residual).
/// \param name its argument name.
/// \param input the hidden states it must match.
/// \param input_name the argument name of `input`.
void packed_like(const TensorView& tensor, const char* name, const TensorView& input,
                 const char* input_name);

/// \brief weight is a contiguous `[hidden_size]` tensor of dtype `dtype`.
/// \param weight the weight.
/// \param name its argument name.
/// \param hidden_size the rows' length.
/// \param dtype the dtype of the hidden states.
void norm_weight(const TensorView& weight, const char* name, std::int64_t hidden_size,
                 DType dtype);

/// \brief epsilon is finite, >= 0 and at most FLT_MAX (the kernels use it as a float).
/// \param epsilon the value given.
/// \return it as the kernels use it: a float.
float norm_epsilon(double epsilon);

/// \brief What both norms' contracts read from their operands.
struct NormOperands {
  RowLayout rows;                ///< where each row of input starts
  std::int64_t hidden_size = 0;  ///< input.size(-1)
  DType dtype = DType::bf16;     ///< dtype of every tensor
  float epsilon = 0.f;           ///< as the kernels use it
};

/// \brief The checks both norms share, in this order: input's rows (norm_rows()), `second`
/// (rms_norm's out, fused_add_rms_norm's residual) packed like input (packed_like()), weight
/// [hidden_size] (norm_weight()) and epsilon (norm_epsilon()).
/// \param input the hidden states.
/// \param second the other tensor of input's shape.
/// \param second_name its argument name.
/// \param weight the weight.
/// \param epsilon the epsilon argument.
/// \return what the plans are made of.
NormOperands norm_operands(const TensorView& input, const TensorView& second,
                           const char* second_name, const TensorView& weight, double epsilon);

/// \brief The bytes that `a` and `b` span (first to one past the last element) do not meet.
/// Empty tensors meet nothing.
/// \param a one tensor.
/// \param b the other tensor.
/// \return whether the two spans are disjoint.
bool spans_are_disjoint(const TensorView& a, const TensorView& b);

/// \brief `tensor` (one the op writes) shares no memory with `other`.
/// \param tensor the written tensor.
/// \param name its argument name.
/// \param other another argument.
/// \param other_name the argument name of `other`.
void memory_apart(const TensorView& tensor, const char* name, const TensorView& other,
                  const char* other_name);

/// \brief No two rows of `input` (an in-place tensor) share memory, so that the row blocks of
/// the kernels never write one another's elements (a stride-0 "broadcast" dimension fails).
/// \param input the rows, already checked by norm_rows().
/// \param name its argument name.
/// \param rows where its rows start, from norm_rows().
/// \param hidden_size the rows' length.
void rows_are_distinct(const TensorView& input, const char* name, const RowLayout& rows,
                       std::int64_t hidden_size);

}  // namespace pagedkv::checks
