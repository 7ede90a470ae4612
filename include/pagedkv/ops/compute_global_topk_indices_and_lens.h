/// \file
/// \brief `compute_global_topk_indices_and_lens`: turn each decode token's top-k list of
/// *local* compressed-token indices (positions inside its request's compressed sequence) into
/// *global* slots of the paged compressed-K cache, and count them (DeepSeek V4, C4A layers).
///
/// This header is the op's one description: its arguments, the plan that validation produces
/// and the three implementations. Upstream returns new tensors; pagedkv's op writes into the
/// two outputs it is given (pagedkv.deepseek_v4_indices allocates them, with upstream's
/// signature).
///
/// Worked example (block_size 64, block_table = [[10, 11, 12, 13]], one valid token whose
/// request is 0, topk_indices = [0, 64, -1, 130]): local 0 is slot 0 of block 10 = 640, local 64
/// slot 0 of block 11 = 704, -1 is an empty entry, local 130 slot 2 of block 12 = 770. The row
/// becomes [640, 704, 770, -1] and topk_lens = 3: the global slots first, in their order, then
/// -1. Had the token been masked (is_valid_token false), the row would be [-1, -1, -1, -1] and
/// its length 0.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once by
/// ComputeGlobalTopkIndicesAndLens::validate(). Strides count i32 elements.
struct ComputeGlobalTopkIndicesAndLensPlan {
  std::int64_t num_tokens = 0;          ///< T = topk_indices.size(0)
  std::int64_t topk = 0;                ///< K = topk_indices.size(1)
  std::int64_t topk_stride = 0;         ///< topk_indices.stride(0)
  std::int64_t output_stride = 0;       ///< global_topk_indices.stride(0)
  std::int64_t num_requests = 0;        ///< R = block_table.size(0)
  std::int64_t table_width = 0;         ///< block_table.size(1): blocks a request may use
  std::int64_t block_table_stride = 0;  ///< block_table.stride(0)
  std::int64_t block_size = 0;          ///< compressed tokens per cache block
  bool vector_rows = false;  ///< both index rows 16-byte aligned and K % 4 == 0 (optimized)
};

/// \brief compute_global_topk_indices_and_lens: the op's arguments, its contract and its three
/// implementations.
struct ComputeGlobalTopkIndicesAndLens {
  /// \brief The upstream name.
  static constexpr const char* name = "compute_global_topk_indices_and_lens";

  /// \brief The arguments, in upstream's order, then the two outputs upstream returns.
  struct Args {
    /// \name Arguments (documented in ComputeGlobalTopkIndicesAndLens::arguments)
    /// @{
    TensorView topk_indices;           ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    TensorView token_to_req_indices;   ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    TensorView block_table;            ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    std::int64_t block_size = 0;       ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    TensorView is_valid_token;         ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    TensorView global_topk_indices;    ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    TensorView topk_lens;              ///< see ComputeGlobalTopkIndicesAndLens::arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::topk_indices, "topk_indices", ArgKind::input,
        "[T, K] i32, last dimension packed: each token's local compressed-token indices "
        "(positions in its request's compressed sequence); a negative entry is empty");
    arg(&Args::token_to_req_indices, "token_to_req_indices", ArgKind::input,
        "[>= T] i32, contiguous: the request (row of block_table) of each token");
    arg(&Args::block_table, "block_table", ArgKind::input,
        "[R, max_blocks] i32, last dimension packed: the compressed-K cache blocks of each "
        "request, in order");
    arg(&Args::block_size, "block_size", ArgKind::integer,
        "compressed tokens per cache block (attention block size / compress ratio), 1 .. 4096");
    arg(&Args::is_valid_token, "is_valid_token", ArgKind::input,
        "[>= T] bool, contiguous: false for a CUDA-graph padding token (its row becomes -1 and "
        "its length 0)");
    arg(&Args::global_topk_indices, "global_topk_indices", ArgKind::output,
        "[T, K] i32, last dimension packed: each token's global slots (block id × block_size "
        "+ offset), packed to the left in their order, then -1");
    arg(&Args::topk_lens, "topk_lens", ArgKind::output,
        "[T] i32, contiguous: the number of global slots in each row (0 for a masked token)");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = ComputeGlobalTopkIndicesAndLensPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. T = 0 is a valid
  /// call that writes nothing.
  ///
  /// Upstream (vLLM's Triton kernel) checks nothing. This contract checks every dtype (i32
  /// indices, tables and outputs, a bool mask: an i64 tensor is refused, not reinterpreted),
  /// the shapes, block_size in 1 .. 4096, and, when the call does not defer its errors, the
  /// values of every valid token: its request a row of block_table, each non-negative local
  /// index inside the table's columns (index / block_size < max_blocks: the request's
  /// compressed length as far as this op can know it), the block id there non-negative and the
  /// slot an i32. When the call defers (a CUDA-graph capture, pagedkv.vllm_ops) these values
  /// are not read back; the kernels are hardened instead, as upstream's bounds-hardened
  /// revision is: an entry that breaks a rule becomes -1 and is not counted.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over tokens and their entries.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per token, the CPU loop.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one CTA per token, 16-byte index vectors and a block-wide scan that
  /// packs the slots (the kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/compute_global_topk_indices_and_lens.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
