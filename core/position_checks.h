/// \file
/// \brief The range check of an i64 index tensor that must hold no negative value either
/// (positions of the RoPE-fused MLA writer), on the CPU or the GPU.
#pragma once

#include "pagedkv/index_checks.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief The element of a contiguous i64 tensor that is largest when its bits are read as an
/// unsigned integer, and its first position: every negative value ranks above every
/// non-negative one, so one reduction finds both kinds of out-of-range value. For a tensor
/// without negatives this is the largest value.
///
/// CPU tensors are scanned with a loop; CUDA tensors with CUB's `DeviceReduce::ArgMax` over the
/// same bytes as u64, then one small device-to-host copy (this synchronizes the current device).
/// \param ids [n] i64, contiguous, on the CPU or the GPU.
/// \return the value (as i64: negative when any element is) and its first position; position
/// -1 when `ids` is empty.
IndexAt max_unsigned_index(const TensorView& ids);

}  // namespace pagedkv
