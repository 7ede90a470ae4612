/// \file
/// \brief `swap_blocks`: copy whole cache blocks between host and device memory (or within the
/// device) following a block mapping, as vLLM does when it swaps or offloads KV blocks.
#pragma once

#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "pagedkv/impl.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Direction of a swap, from the devices of src and dst.
enum class CopyDirection { host_to_host, host_to_device, device_to_host, device_to_device };

/// \brief Everything the implementations need, derived once by validate_swap_blocks().
struct SwapBlocksPlan {
  CopyDirection direction = CopyDirection::device_to_device;  ///< from src/dst devices
  std::int64_t block_size_in_bytes = 0;  ///< bytes per block
  std::int64_t num_pairs = 0;            ///< block_mapping.size(0)
  std::int64_t src_capacity = 0;         ///< blocks addressable in src
  std::int64_t dst_capacity = 0;         ///< blocks addressable in dst
  std::vector<std::int64_t> pairs;       ///< [num_pairs * 2] (src_block, dst_block), host copy
};

/// \brief The contract of swap_blocks, shared by the three implementations.
///
/// A tensor is seen as size(0) rows of stride(0) elements; a block id b is valid when
/// (b + 1) × block_size_in_bytes fits in those rows. Pairs are copied in order.
/// \param src source tensor (any dtype), on the CPU or the GPU.
/// \param dst destination tensor (any dtype); the CPU reference needs both on the CPU, the CUDA
///        implementations need at least one on the GPU.
/// \param block_size_in_bytes bytes per block (vLLM passes src.element_size() × src.stride(0)).
/// \param block_mapping [num_pairs, 2] i64 (or i32) on the CPU: (src_block, dst_block) pairs.
/// \param impl the implementation that will run.
/// \return the plan the implementation executes.
SwapBlocksPlan validate_swap_blocks(const TensorView& src, const TensorView& dst,
                                   std::int64_t block_size_in_bytes,
                                   const TensorView& block_mapping, Impl impl);

namespace cpu {
/// \brief CPU reference of swap_blocks: one memcpy per pair. Arguments as in validate_swap_blocks().
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping);
}  // namespace cpu

namespace naive {
/// \brief vLLM's way: one cudaMemcpyAsync per pair on `stream`.
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping, cudaStream_t stream = nullptr);
/// \brief Runs an already validated plan (used for timing).
void launch_swap_blocks(const SwapBlocksPlan& plan, const TensorView& src, const TensorView& dst,
                        cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized swap_blocks. Same arguments and results as the naive one.
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping, cudaStream_t stream = nullptr);
/// \brief Runs an already validated plan (used for timing).
void launch_swap_blocks(const SwapBlocksPlan& plan, const TensorView& src, const TensorView& dst,
                        cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
