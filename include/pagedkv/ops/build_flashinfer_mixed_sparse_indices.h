/// \file
/// \brief `build_flashinfer_mixed_sparse_indices`: for DeepSeek V4 on FlashInfer's sparse MLA
/// kernel, build one row of global cache slots per token of a decode-first mixed batch: the
/// sliding-window (SWA) slots in the first window_size columns, then the compressed / top-k
/// slots. Decode tokens copy precomputed indices; prefill tokens derive their window from their
/// position and translate their local top-k indices through the block tables.
///
/// This header is the op's one description. pagedkv's op writes into the two outputs it is
/// given (pagedkv.deepseek_v4_indices allocates them with upstream's width, window_size +
/// round_up(max(topk, Kd), 4), and signature).
///
/// Worked example (window_size 4, swa_block_size 4, compressed_block_size 2, compress_ratio 4,
/// topk 2; one decode token then one request of seq_len 6 with two prefill tokens, so
/// query_start_loc = [0, 1, 3]; swa_block_table row 1 = [7, 9], compressed_block_table row 1 =
/// [3]): the prefill token at position 5 sees the window positions 2 .. 5, slots
/// 7 × 4 + 2 = 30, 31, 9 × 4 + 0 = 36, 37, and min(6 / 4, 2) = 1 compressed token; its local
/// index 0 (the request has 6 / 4 = 1 compressed token) is slot 3 × 2 + 0 = 6. Its row is
/// [30, 31, 36, 37, 6, -1, -1, -1] and its length 4 + 1 = 5. The token at position 4 sees
/// the window 1 .. 4 and one compressed token too: [29, 30, 31, 36, 6, -1, -1, -1], length 5.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "pagedkv/impl.h"
#include "pagedkv/op.h"
#include "pagedkv/tensor_view.h"

namespace pagedkv {

/// \brief Everything the implementations need, derived once by
/// BuildFlashinferMixedSparseIndices::validate(). Strides count i32 elements.
struct BuildFlashinferMixedSparseIndicesPlan {
  std::int64_t num_decode = 0;          ///< Td = decode_swa_indices.size(0)
  std::int64_t num_prefill = 0;         ///< Tp = prefill_topk_indices.size(0)
  std::int64_t window = 0;              ///< W = window_size: SWA columns
  std::int64_t compressed_columns = 0;  ///< P = sparse_indices.size(1) - W
  std::int64_t output_stride = 0;       ///< sparse_indices.stride(0)
  std::int64_t decode_swa_stride = 0;   ///< decode_swa_indices.stride(0)
  std::int64_t decode_topk = 0;         ///< Kd: decode_compressed_indices.size(1), 0 if none
  std::int64_t decode_topk_stride = 0;  ///< decode_compressed_indices.stride(0)
  std::int64_t prefill_topk = 0;        ///< Kp = prefill_topk_indices.size(1)
  std::int64_t prefill_topk_stride = 0; ///< prefill_topk_indices.stride(0)
  std::int64_t num_requests = 0;        ///< R = seq_lens.size(0)
  std::int64_t swa_rows = 0;            ///< swa_block_table.size(0)
  std::int64_t swa_width = 0;           ///< swa_block_table.size(1)
  std::int64_t swa_stride = 0;          ///< swa_block_table.stride(0)
  std::int64_t swa_block_size = 0;      ///< tokens per SWA cache block
  std::int64_t compressed_rows = 0;     ///< rows of the compressed table (or the SWA table)
  std::int64_t compressed_width = 0;    ///< its columns
  std::int64_t compressed_stride = 0;   ///< its row pitch
  std::int64_t compressed_block_size = 0;  ///< compressed tokens per compressed cache block
  std::int64_t compress_ratio = 0;      ///< tokens per compressed token
  std::int64_t topk = 0;                ///< cap on a prefill token's compressed tokens
  bool decode_local = false;            ///< decode_compressed_indices are local indices
  bool has_decode_lens = false;         ///< decode_compressed_topk_lens was given
  bool has_decode_valid = false;        ///< decode_is_valid_token was given
  bool same_table = false;              ///< no compressed table: the SWA table serves both
  bool vector_rows = false;  ///< output rows 16-byte aligned, W and P multiples of 4 (optimized)
};

/// \brief build_flashinfer_mixed_sparse_indices: the op's arguments, its contract and its
/// three implementations.
struct BuildFlashinferMixedSparseIndices {
  /// \brief The upstream name.
  static constexpr const char* name = "build_flashinfer_mixed_sparse_indices";

  /// \brief The arguments, in upstream's order, then the two outputs upstream returns.
  struct Args {
    /// \name Arguments (documented in BuildFlashinferMixedSparseIndices::arguments)
    /// @{
    TensorView decode_swa_indices;           ///< see arguments()
    TensorView decode_compressed_indices;    ///< see arguments()
    TensorView decode_compressed_topk_lens;  ///< see arguments()
    TensorView prefill_topk_indices;         ///< see arguments()
    TensorView query_start_loc;              ///< see arguments()
    TensorView seq_lens;                     ///< see arguments()
    TensorView token_to_req_indices;         ///< see arguments()
    TensorView swa_block_table;              ///< see arguments()
    std::int64_t swa_block_size = 0;         ///< see arguments()
    TensorView compressed_block_table;       ///< see arguments()
    std::int64_t compressed_block_size = 0;  ///< see arguments()
    std::int64_t window_size = 0;            ///< see arguments()
    std::int64_t compress_ratio = 0;         ///< see arguments()
    std::int64_t topk = 0;                   ///< see arguments()
    bool decode_compressed_indices_are_local = false;  ///< see arguments()
    TensorView decode_is_valid_token;        ///< see arguments()
    TensorView sparse_indices;               ///< see arguments()
    TensorView sparse_topk_lens;             ///< see arguments()
    /// @}
  };

  /// \brief Each argument's kind and documentation, in order: the one place they are written.
  /// \tparam Arg a callable taking (member pointer, name, ArgKind, documentation).
  /// \param arg called once per argument.
  template <class Arg>
  static void arguments(Arg&& arg) {
    arg(&Args::decode_swa_indices, "decode_swa_indices", ArgKind::input,
        "[Td, window_size] i32, last dimension packed: the decode tokens' precomputed global "
        "SWA slots, copied as they are");
    arg(&Args::decode_compressed_indices, "decode_compressed_indices", ArgKind::optional_input,
        "[Td, Kd] i32, last dimension packed, or None (Kd = 0): the decode tokens' compressed "
        "indices, local (C4A) or global slots (C128A)");
    arg(&Args::decode_compressed_topk_lens, "decode_compressed_topk_lens",
        ArgKind::optional_input,
        "[>= Td] i32, contiguous, or None: compressed entries in use per decode token when the "
        "indices are global (0 .. Kd; None: Kd)");
    arg(&Args::prefill_topk_indices, "prefill_topk_indices", ArgKind::input,
        "[Tp, Kp] i32, last dimension packed: the prefill tokens' local compressed-token "
        "indices; a negative entry is empty");
    arg(&Args::query_start_loc, "query_start_loc", ArgKind::input,
        "[R + 1] i32, contiguous: the requests' first tokens in the batch, from 0, decode "
        "requests first");
    arg(&Args::seq_lens, "seq_lens", ArgKind::input,
        "[R] i32, contiguous: each request's sequence length, its queries included");
    arg(&Args::token_to_req_indices, "token_to_req_indices", ArgKind::input,
        "[>= Td + Tp] i32, contiguous: each token's request");
    arg(&Args::swa_block_table, "swa_block_table", ArgKind::input,
        "[>= R, max_blocks] i32, last dimension packed: the SWA cache blocks of each request");
    arg(&Args::swa_block_size, "swa_block_size", ArgKind::integer,
        "tokens per SWA cache block, 1 .. 4096");
    arg(&Args::compressed_block_table, "compressed_block_table", ArgKind::optional_input,
        "[>= R, max_blocks] i32, last dimension packed, or None (the SWA table is used): the "
        "compressed-K cache blocks of each request");
    arg(&Args::compressed_block_size, "compressed_block_size", ArgKind::integer,
        "compressed tokens per compressed cache block, 1 .. 4096");
    arg(&Args::window_size, "window_size", ArgKind::integer,
        "SWA columns (the window a query sees, itself included), 1 .. 4096");
    arg(&Args::compress_ratio, "compress_ratio", ArgKind::integer,
        "tokens per compressed token: 1 (SWA only), 4 (C4A) or 128 (C128A)");
    arg(&Args::topk, "topk", ArgKind::integer,
        "most compressed tokens a prefill token uses, 0 .. 65536");
    arg(&Args::decode_compressed_indices_are_local, "decode_compressed_indices_are_local",
        ArgKind::boolean,
        "true: decode_compressed_indices are local and translated like the prefill tokens'");
    arg(&Args::decode_is_valid_token, "decode_is_valid_token", ArgKind::optional_input,
        "[>= Td] bool, contiguous, or None: false for a CUDA-graph padding decode token; "
        "required when the decode indices are local");
    arg(&Args::sparse_indices, "sparse_indices", ArgKind::output,
        "[Td + Tp, window_size + P] i32, last dimension packed, P >= max(topk, Kd): per token "
        "its SWA slots, then its compressed slots, -1 where none");
    arg(&Args::sparse_topk_lens, "sparse_topk_lens", ArgKind::output,
        "[Td + Tp] i32, contiguous: window_size + the compressed entries in use");
  }

  /// \brief What validate() derives from the arguments.
  using Plan = BuildFlashinferMixedSparseIndicesPlan;

  /// \brief The contract, shared by the three implementations.
  ///
  /// Checks every argument for `impl` and returns the plan; throws InvalidArgument (naming the
  /// argument, the expected and the actual value) before anything is written. Td + Tp = 0 is a
  /// valid call that writes nothing.
  ///
  /// Upstream asserts the i32 dtypes, the 2-D shapes, decode_swa_indices.size(1) ==
  /// window_size and enough token_to_req_indices. This contract also checks the integer
  /// arguments' ranges, the outputs' shapes (at least max(topk, Kd) compressed columns), that
  /// the decode lengths and validity mask are given when they are needed, and, when the call
  /// does not defer its errors, the values: query_start_loc from 0 and never decreasing; each
  /// prefill token one of its request's query tokens, at a position >= 0; every window
  /// position a prefill token sees inside the SWA table with a block id >= 0; every local
  /// index a token uses a compressed token of its request (below seq_len / compress_ratio,
  /// inside the compressed table, block id >= 0); decode lengths in 0 .. Kd. Deferred calls
  /// skip the value checks; the kernels then write -1 for every entry that breaks them.
  /// \param args the arguments.
  /// \param impl the implementation that will run (decides the device every tensor must be on).
  /// \return the plan the implementation executes.
  static Plan validate(const Args& args, Impl impl);

  /// \brief CPU reference: a loop over the decode rows, then the prefill rows.
  /// \param plan what validate() returned.
  /// \param args the arguments (host memory).
  static void cpu(const Plan& plan, const Args& args);
  /// \brief Naive CUDA: one thread per token row, the CPU loop.
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void naive(const Plan& plan, const Args& args, cudaStream_t stream);
  /// \brief Optimized CUDA: one CTA per row, four columns per thread, 16-byte accesses (the
  /// kernel file header lists the tricks).
  /// \param plan what validate() returned.
  /// \param args the arguments (device memory).
  /// \param stream the CUDA stream the kernel runs on (nothing synchronizes after it).
  static void optimized(const Plan& plan, const Args& args, cudaStream_t stream);

  /// \brief The op's card in the registry (core/entries/build_flashinfer_mixed_sparse_indices.cpp).
  /// \return the card; the registry adds the name, the arguments and the entry points.
  static OpEntry card();
};

}  // namespace pagedkv
