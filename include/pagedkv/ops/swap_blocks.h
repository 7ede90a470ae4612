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
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Direction of a swap, from the devices of src and dst.
enum class CopyDirection { host_to_host, host_to_device, device_to_host, device_to_device };

/// \brief Everything the implementations need, derived once by SwapBlocks::validate().
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

/// \brief swap_blocks: the op's arguments, its contract and its three implementations.
struct SwapBlocks {
  /// \brief The upstream name.
  static constexpr const char* name = "swap_blocks";

  /// \cond INTERNAL
  // dst may share memory with src (blocks moved within one pool): the contract itself rejects
  // a pair whose source and destination overlap partially. Read by check_outputs_apart().
  static constexpr bool may_share_memory(std::string_view output, std::string_view other) {
    return output == "dst" && other == "src";
  }
  /// \endcond

  /// \brief The arguments, in vLLM's order and with vLLM's names (documented in arguments()).
  struct Args {
    /// \name Arguments (documented in SwapBlocks::arguments)
    /// @{
    TensorView src;                        ///< see SwapBlocks::arguments()
    TensorView dst;                        ///< see SwapBlocks::arguments()
    std::int64_t block_size_in_bytes = 0;  ///< see SwapBlocks::arguments()
    TensorView block_mapping;              ///< see SwapBlocks::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::src, "src", ArgKind::input,
        "source blocks (any dtype), seen as size(0) rows of stride(0) elements; on the CPU "
        "(pageable or pinned) or the GPU");
    arg(&Args::dst, "dst", ArgKind::output,
        "destination blocks (any dtype), seen like src; the CPU reference needs src and dst on "
        "the CPU, the CUDA implementations at least one of them on the GPU");
    arg(&Args::block_size_in_bytes, "block_size_in_bytes", ArgKind::integer,
        "bytes per block (vLLM passes src.element_size() × src.stride(0))");
    arg(&Args::block_mapping, "block_mapping", ArgKind::input,
        "[num_pairs, 2] i64 (or i32), contiguous, on the CPU: (src_block, dst_block) pairs, "
        "copied in order");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = SwapBlocksPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// A tensor is seen as size(0) rows of stride(0) elements; a block id b is valid when
  /// (b + 1) × block_size_in_bytes fits in those rows. Pairs are copied in order: a later pair
  /// sees the result of an earlier one (e.g. the chain [[0, 1], [1, 2]] on one buffer leaves the
  /// old block 0 in blocks 1 and 2). A pair whose source and destination are the same bytes is a
  /// no-op. Throws InvalidArgument (naming the argument, the expected and the actual value)
  /// before anything is written.
  /// \param args the arguments.
  /// \param impl the implementation that will run.
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: one memcpy per pair, in order.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief vLLM's way: one cudaMemcpyAsync per pair on `stream`, in order.
  /// \param plan what validate() returned.
  /// \param args the arguments.
  /// \param stream the stream the copies are issued on (nothing synchronizes).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized: the strategy that choose_swap_strategy() picks (optimized.cu explains
  /// the rule). Same bytes as the CPU reference.
  /// \param plan what validate() returned (or the plan of tensors of the same layout placed the
  ///        same way relative to each other, e.g. rotated buffer sets).
  /// \param args the arguments.
  /// \param stream the stream the copies are issued on (nothing synchronizes).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry: family, sources, byte model, workloads
  /// (core/entries/swap_blocks.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

namespace optimized {
/// \brief How the optimized version moves the bytes; kernels/swap_blocks/optimized.cu explains
/// each one and the rule that `automatic` follows.
enum class SwapStrategy {
  automatic,    ///< the rule of optimized.cu (what SwapBlocks::optimized() uses)
  memcpy_runs,  ///< in order; one cudaMemcpyAsync per run of consecutive (src, dst) block ids
  copy_kernel,  ///< one kernel launch per 4000 pairs (device or pinned host memory through UVA)
  memcpy_batch  ///< one cudaMemcpyBatchAsync for all runs (CUDA >= 13; not the legacy stream)
};

/// \brief "automatic", "memcpy_runs", "copy_kernel" or "memcpy_batch".
/// \param strategy the strategy to name.
/// \return its name.
std::string_view swap_strategy_name(SwapStrategy strategy);

/// \brief The strategy that `automatic` picks for these arguments (never `automatic`).
/// \param plan what SwapBlocks::validate() returned.
/// \param src source tensor, as validated.
/// \param dst destination tensor, as validated.
/// \return memcpy_runs or copy_kernel.
SwapStrategy choose_swap_strategy(const SwapBlocksPlan& plan, const TensorView& src,
                                  const TensorView& dst);

/// \brief Runs an already validated plan with a chosen strategy, so that benchmarks can compare
/// them. Same bytes as the CPU reference whenever it returns.
/// \param plan what SwapBlocks::validate() returned.
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
