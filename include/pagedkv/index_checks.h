/// \file
/// \brief Range checks over index tensors (slot_mapping, block ids), on the CPU or the GPU.
#pragma once

#include <cstdint>

#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief One element of an index tensor: where it is and what it holds.
struct IndexAt {
  std::int64_t position = -1;  ///< flat position, -1 when the tensor is empty
  std::int64_t value = 0;      ///< the element's value
};

/// \brief The largest element of a contiguous i32/i64 tensor and its first position.
///
/// CPU tensors are scanned with a loop; CUDA tensors with CUB's `DeviceReduce::ArgMax` followed
/// by one small device-to-host copy (this synchronizes the current device).
/// \param ids [n] i32 or i64, contiguous, on the CPU or the GPU.
/// \return the largest value and its first position; position -1 when `ids` is empty.
/// \throws InvalidArgument when `ids` has another dtype or is not contiguous.
IndexAt max_index(const TensorView& ids);

}  // namespace pagedkv
