/// \file
/// \brief Validation rules shared by DeepSeek V4's sparse-attention index builders
/// (compute_global_topk_indices_and_lens, combine_topk_swa_indices,
/// build_flashinfer_mixed_sparse_indices): the i32 index matrices and vectors, the bool masks,
/// the supported ranges of the integer arguments, and whether a call reads index values back.
///
/// The index values (requests, local indices, block ids) live in device memory on the GPU. A
/// call that checks synchronously copies them to the host and checks them with plain loops; a
/// call that defers its errors (a CUDA-graph capture, pagedkv.vllm_ops) does not read them, and
/// the kernels' own hardening (an index that breaks a rule becomes -1) keeps every output
/// inside the token's request.
#pragma once

#include <cstdint>
#include <vector>

#include "pagedkv/tensor_view.h"

namespace pagedkv::checks {

/// \brief A 2-D i32 index matrix whose last dimension is packed (rows of any pitch), on the
/// device where the op computes.
/// \param tensor the tensor.
/// \param name its argument name.
/// \param device where it must live.
void index_matrix(const TensorView& tensor, const char* name, Device device);

/// \brief A contiguous 1-D i32 vector of at least `min_size` elements on `device`.
/// \param tensor the tensor.
/// \param name its argument name.
/// \param device where it must live.
/// \param min_size the fewest elements it may have.
/// \param what where `min_size` comes from, for the message.
void index_vector(const TensorView& tensor, const char* name, Device device,
                  std::int64_t min_size, const char* what);

/// \brief A contiguous 1-D bool mask of at least `min_size` elements on `device`.
/// \param tensor the tensor.
/// \param name its argument name.
/// \param device where it must live.
/// \param min_size the fewest elements it may have.
/// \param what where `min_size` comes from, for the message.
void bool_vector(const TensorView& tensor, const char* name, Device device, std::int64_t min_size,
                 const char* what);

/// \brief `lo <= value <= hi`, else InvalidArgument naming the argument and the range.
/// \param value the value.
/// \param name the argument's name.
/// \param lo smallest allowed.
/// \param hi largest allowed.
void integer_in(std::int64_t value, const char* name, std::int64_t lo, std::int64_t hi);

/// \brief Whether this call reads index values back to check them: always on the CPU; on the
/// GPU unless the open CheckScope defers its errors.
/// \param device where the tensors live.
/// \return true when the contract checks the values on the host.
bool reads_index_values(Device device);

/// \brief The elements of an i32 matrix, rows packed to `size(1)` columns, copied to the host
/// (one synchronizing copy per call on the GPU).
/// \param tensor a 2-D i32 tensor, last dimension packed.
/// \return rows × columns values.
std::vector<std::int32_t> read_matrix(const TensorView& tensor);

/// \brief The first `count` elements of a contiguous 1-D bool tensor, copied to the host.
/// \param tensor the mask.
/// \param count elements to read.
/// \return the values (0 or 1).
std::vector<std::uint8_t> read_mask(const TensorView& tensor, std::int64_t count);

}  // namespace pagedkv::checks
