/// \file
/// \brief Building blocks of argument validation, shared by every op's contract.
///
/// Each check throws InvalidArgument with a message that names the argument, says what was
/// expected and what was given. Contracts call them before any byte is written.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "pagedkv/dtype.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief `tensor` lives on `device`.
void device_is(const TensorView& tensor, const char* name, Device device);
/// \brief `tensor` has `ndim` dimensions.
void ndim_is(const TensorView& tensor, const char* name, int ndim);
/// \brief `tensor` has dtype `dtype`.
void dtype_is(const TensorView& tensor, const char* name, DType dtype);
/// \brief `tensor` has one of `dtypes`.
void dtype_in(const TensorView& tensor, const char* name, std::initializer_list<DType> dtypes);
/// \brief `tensor.size(dim) == expected`; `what` says where the expected value comes from.
void size_is(const TensorView& tensor, const char* name, int dim, std::int64_t expected,
             const char* what);
/// \brief A tensor with elements has a non-null data pointer.
void not_null(const TensorView& tensor, const char* name);
/// \brief Dimensions `first_dim`.. are packed row-major (the rows may have any pitch).
void packed_from(const TensorView& tensor, const char* name, int first_dim);
/// \brief No size or stride is negative.
void non_negative_layout(const TensorView& tensor, const char* name);

}  // namespace pagedkv::checks
