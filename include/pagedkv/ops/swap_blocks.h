/// \file
/// \brief `swap_blocks`: copy whole cache blocks between host and device memory (or within the
/// device) following a block mapping, as vLLM does when it swaps or offloads KV blocks.
///
/// Example: src holds blocks A B C D, dst holds blocks w x y, block_mapping = [[3, 0], [0, 2]];
/// afterwards dst holds D x A (block 1 of dst is not named, so it keeps its bytes).
#pragma once

#include <cstdint>
#include <string_view>
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
  /// True when no two pairs name the same destination block. With the next field, a fact about
  /// the ids alone (not the memory) that lets the optimized version decide whether the pairs
  /// may run in any order.
  bool dst_ids_unique = true;
  /// True when no pair's destination id equals another pair's source id. It matters only when
  /// src and dst are the same memory: then a later pair would read an earlier pair's result.
  bool dst_ids_disjoint_from_src_ids = true;
};

/// \brief The contract of swap_blocks, shared by the three implementations.
///
/// A tensor is seen as size(0) rows of stride(0) elements; a block id b is valid when
/// (b + 1) × block_size_in_bytes fits in those rows. Pairs are copied in order: a later pair
/// sees the result of an earlier one (e.g. the chain [[0, 1], [1, 2]] on one buffer leaves the
/// old block 0 in blocks 1 and 2). A pair whose source and destination are the same bytes is a
/// no-op. Throws InvalidArgument (naming the argument, the expected and the actual value)
/// before anything is written.
/// \param src source tensor (any dtype), on the CPU or the GPU.
/// \param dst destination tensor (any dtype); the CPU reference needs both on the CPU, the CUDA
///        implementations need at least one on the GPU.
/// \param block_size_in_bytes bytes per block (vLLM passes src.element_size() × src.stride(0)).
/// \param block_mapping [num_pairs, 2] i64 (or i32), contiguous, on the CPU: (src_block,
///        dst_block) pairs.
/// \param impl the implementation that will run.
/// \return the plan the implementation executes.
SwapBlocksPlan validate_swap_blocks(const TensorView& src, const TensorView& dst,
                                   std::int64_t block_size_in_bytes,
                                   const TensorView& block_mapping, Impl impl);

namespace cpu {
/// \brief CPU reference of swap_blocks: one memcpy per pair, in order.
/// \param src source tensor on the CPU.
/// \param dst destination tensor on the CPU (may be the same memory as src).
/// \param block_size_in_bytes bytes per block.
/// \param block_mapping [num_pairs, 2] i64/i32 on the CPU: (src_block, dst_block) pairs.
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping);
}  // namespace cpu

namespace naive {
/// \brief vLLM's way: one cudaMemcpyAsync per pair on `stream`, in order.
/// \param src source tensor, on the CPU (pageable or pinned) or the GPU.
/// \param dst destination tensor; at least one of src and dst on the GPU.
/// \param block_size_in_bytes bytes per block.
/// \param block_mapping [num_pairs, 2] i64/i32 on the CPU: (src_block, dst_block) pairs.
/// \param stream the stream the copies are issued on (nothing synchronizes).
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping, cudaStream_t stream = nullptr);
/// \brief Runs an already validated plan (used for timing).
/// \param plan the result of validate_swap_blocks() for these tensors.
/// \param src source tensor, as validated.
/// \param dst destination tensor, as validated.
/// \param stream the stream the copies are issued on.
void launch_swap_blocks(const SwapBlocksPlan& plan, const TensorView& src, const TensorView& dst,
                        cudaStream_t stream);
}  // namespace naive

namespace optimized {
/// \brief Optimized swap_blocks. Same arguments and results as the naive one.
/// \param src source tensor, on the CPU (pageable or pinned) or the GPU.
/// \param dst destination tensor; at least one of src and dst on the GPU.
/// \param block_size_in_bytes bytes per block.
/// \param block_mapping [num_pairs, 2] i64/i32 on the CPU: (src_block, dst_block) pairs.
/// \param stream the stream the copies are issued on (nothing synchronizes).
void swap_blocks(const TensorView& src, const TensorView& dst, std::int64_t block_size_in_bytes,
                 const TensorView& block_mapping, cudaStream_t stream = nullptr);
/// \brief Runs an already validated plan (used for timing) with the automatic strategy.
/// \param plan the result of validate_swap_blocks() for these tensors (or for tensors of the
///        same layout placed the same way relative to each other, e.g. rotated buffer sets).
/// \param src source tensor, as validated.
/// \param dst destination tensor, as validated.
/// \param stream the stream the copies are issued on.
void launch_swap_blocks(const SwapBlocksPlan& plan, const TensorView& src, const TensorView& dst,
                        cudaStream_t stream);

/// \brief How the optimized version moves the bytes; kernels/swap_blocks/optimized.cu explains
/// each one and the rule that `automatic` follows.
enum class SwapStrategy {
  automatic,    ///< the rule of optimized.cu (what swap_blocks() and launch_swap_blocks() use)
  memcpy_runs,  ///< in order; one cudaMemcpyAsync per run of consecutive (src, dst) block ids
  copy_kernel,  ///< one kernel launch per 4000 pairs (device or pinned host memory through UVA)
  memcpy_batch  ///< one cudaMemcpyBatchAsync for all runs (CUDA >= 13; not the legacy stream)
};

/// \brief "automatic", "memcpy_runs", "copy_kernel" or "memcpy_batch".
/// \param strategy the strategy to name.
/// \return its name.
std::string_view swap_strategy_name(SwapStrategy strategy);

/// \brief The strategy that `automatic` picks for these arguments (never `automatic`).
/// \param plan the result of validate_swap_blocks().
/// \param src source tensor, as validated.
/// \param dst destination tensor, as validated.
/// \return memcpy_runs or copy_kernel.
SwapStrategy choose_swap_strategy(const SwapBlocksPlan& plan, const TensorView& src,
                                  const TensorView& dst);

/// \brief Runs an already validated plan with a chosen strategy, so that benchmarks can compare
/// them. Same bytes as the CPU reference whenever it returns.
/// \param plan the result of validate_swap_blocks().
/// \param src source tensor, as validated.
/// \param dst destination tensor, as validated.
/// \param strategy the strategy; copy_kernel and memcpy_batch need pairs that may run in any
///        order (else InvalidArgument), copy_kernel needs device or pinned host memory,
///        memcpy_batch a stream other than the legacy default stream.
/// \param stream the stream the copies are issued on.
void launch_swap_blocks_with(const SwapBlocksPlan& plan, const TensorView& src,
                             const TensorView& dst, SwapStrategy strategy, cudaStream_t stream);
}  // namespace optimized

}  // namespace pagedkv
