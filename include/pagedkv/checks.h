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
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param device the device it must be on.
void device_is(const TensorView& tensor, const char* name, Device device);
/// \brief `tensor` has `ndim` dimensions.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param ndim the number of dimensions it must have.
void ndim_is(const TensorView& tensor, const char* name, int ndim);
/// \brief `tensor` has dtype `dtype`.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param dtype the dtype it must have.
void dtype_is(const TensorView& tensor, const char* name, DType dtype);
/// \brief `tensor` has one of `dtypes`.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param dtypes the dtypes it may have.
void dtype_in(const TensorView& tensor, const char* name, std::initializer_list<DType> dtypes);
/// \brief `tensor.size(dim) == expected`; `what` says where the expected value comes from.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param dim the dimension to check.
/// \param expected the size it must have.
/// \param what where `expected` comes from, e.g. "num_heads, key.size(1)".
void size_is(const TensorView& tensor, const char* name, int dim, std::int64_t expected,
             const char* what);
/// \brief A tensor with elements has a non-null data pointer.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
void not_null(const TensorView& tensor, const char* name);
/// \brief Dimensions `first_dim`.. are packed row-major (the rows may have any pitch).
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
/// \param first_dim the first dimension of the packed part.
void packed_from(const TensorView& tensor, const char* name, int first_dim);
/// \brief No size or stride is negative.
/// \param tensor the tensor to check.
/// \param name the argument's name, used in the message.
void non_negative_layout(const TensorView& tensor, const char* name);
/// \brief Whether no two elements of `tensor` share memory: sorted by stride, every dimension
/// must step over everything the smaller dimensions span. NHD, HND and the joint K/V
/// allocations pass; a stride of 0 over a dimension of size 2 or more does not, nor does a
/// block stride smaller than one block.
/// \param tensor a tensor with non-negative strides (see non_negative_layout()).
/// \return true when every element has an address of its own.
bool elements_are_distinct(const TensorView& tensor);

}  // namespace pagedkv::checks
